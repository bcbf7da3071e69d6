//! `mnist-train compare`: the tutorial's optimizer family trained on the same data, seed and
//! budget (epochs), one variant after another, with per-epoch curves for a table, files and a plot.

pub mod plot;
pub mod report;

use std::num::NonZeroUsize;

use crate::data::{Dataset, DatasetKind};
use crate::error::Result;
use crate::nn::Architecture;
use crate::optim::OptimizerConfig;
use crate::report::tensorboard::{TensorBoard, TensorBoardSettings};
use crate::run::{self, Observers, RunSpec, Source};
use crate::train::{evaluate, BatchSize, EpochRecord, Progress, TrainConfig};

/// One way to train: an update rule, a batch size and a learning rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Stable identifier used in options and files, e.g. `momentum-sgd`.
    pub name: String,
    pub optimizer: OptimizerConfig,
    pub batch_size: BatchSize,
    pub learning_rate: f32,
}

/// The variants' names, in the order they run and appear.
pub const VARIANT_NAMES: [&str; 7] = [
    "full-batch-gd",
    "sgd",
    "mini-batch-gd",
    "momentum",
    "momentum-sgd",
    "momentum-full-batch",
    "adam",
];

/// The variants with their default learning rates: for each, the rate with the lowest final
/// training loss in a sweep on the default budget (20 epochs over 10,000 images, seed 42; the
/// grid and the results are in the README, `mnist-train compare`).
pub fn default_variants(mini_batch: usize, momentum: f32) -> Vec<Variant> {
    let sgd = OptimizerConfig::Sgd;
    let heavy_ball = OptimizerConfig::Momentum { momentum };
    let mini = BatchSize::Examples(mini_batch);
    let one = BatchSize::Examples(1);
    let full = BatchSize::Full;
    [
        ("full-batch-gd", sgd, full, 0.5),
        ("sgd", sgd, one, 0.01),
        ("mini-batch-gd", sgd, mini, 0.3),
        ("momentum", heavy_ball, mini, 0.03),
        ("momentum-sgd", heavy_ball, one, 0.001),
        ("momentum-full-batch", heavy_ball, full, 0.5),
        ("adam", OptimizerConfig::adam_default(), mini, 0.002),
    ]
    .into_iter()
    .map(|(name, optimizer, batch_size, learning_rate)| Variant {
        name: name.to_string(),
        optimizer,
        batch_size,
        learning_rate,
    })
    .collect()
}

impl Variant {
    /// e.g. `momentum (momentum 0.9), batch 32, lr 0.02`
    pub fn describe(&self) -> String {
        format!(
            "{}, batch {}, lr {}",
            self.optimizer.describe(),
            self.batch_size.label(),
            self.learning_rate
        )
    }
}

/// What every variant shares.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    pub architecture: Architecture,
    pub epochs: usize,
    pub seed: u64,
    pub test_batch_size: usize,
    /// Training threads (results do not depend on it).
    pub threads: usize,
    /// Which dataset the variants train on (data is passed in loaded).
    pub dataset: DatasetKind,
    /// TensorBoard event files: one run folder per variant (`DIR/<variant name>`).
    pub tensorboard: Option<TensorBoardSettings>,
}

impl CompareConfig {
    /// The run of `variant`: validated on the test set after every epoch, nothing saved.
    pub fn spec(&self, variant: &Variant) -> RunSpec {
        let training = TrainConfig {
            architecture: self.architecture.clone(),
            optimizer: variant.optimizer,
            learning_rate: variant.learning_rate,
            epochs: self.epochs,
            batch_size: variant.batch_size,
            seed: self.seed,
            ..TrainConfig::default()
        };
        RunSpec {
            test_batch_size: self.test_batch_size,
            validate_on_test_set: true,
            threads: NonZeroUsize::new(self.threads),
            ..RunSpec::new(training, self.dataset)
        }
    }
}

/// How one variant did.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantResult {
    pub variant: Variant,
    /// Per-epoch records; their `val_*` fields hold the **test-set** metrics after each epoch.
    pub history: Vec<EpochRecord>,
    pub figures: VariantFigures,
    /// Set when training diverged (non-finite loss); the metrics are then those reached before.
    pub diverged: Option<String>,
}

/// What a variant reached: the figures every variant is compared on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct VariantFigures {
    pub steps: u64,
    /// Loss and accuracy on the whole training set after training (dropout off), the same
    /// measure for every variant.
    pub final_train_loss: f64,
    pub final_train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// Time spent in optimization steps (the epochs' `seconds`, without evaluations).
    pub train_seconds: f64,
    pub samples_per_second: f64,
}

/// Trains every variant on `train` from the same seed, evaluating on `test` after every epoch.
pub fn run_variants(
    config: &CompareConfig,
    variants: &[Variant],
    train: &Dataset,
    test: &Dataset,
    mut progress: impl FnMut(usize, &Variant) -> Progress,
) -> Result<Vec<VariantResult>> {
    let mut results = Vec::with_capacity(variants.len());
    for (index, variant) in variants.iter().enumerate() {
        let mut progress = progress(index, variant);
        let mut tensorboard = match &config.tensorboard {
            Some(settings) => Some(TensorBoard::open(&TensorBoardSettings {
                dir: settings.dir.join(&variant.name),
                every_steps: settings.every_steps,
            })?),
            None => None,
        };
        let mut observers = Observers {
            keep_diverged: true,
            ..Observers::quiet(&mut progress)
        };
        if let Some(tensorboard) = &mut tensorboard {
            observers.sinks.push(tensorboard);
        }
        let outcome = run::execute(
            &config.spec(variant),
            Source::Loaded { train, test },
            None,
            observers,
        )?;
        let trainer = outcome.trainer;
        let final_train = evaluate(&trainer.mlp, &trainer.params, train, config.test_batch_size);
        let train_seconds: f64 = trainer.history.iter().map(|r| r.seconds).sum();
        let samples = train.len() as f64 * trainer.history.len() as f64;
        results.push(VariantResult {
            variant: variant.clone(),
            figures: VariantFigures {
                steps: trainer.optimizer.steps,
                final_train_loss: final_train.loss,
                final_train_accuracy: final_train.accuracy,
                test_loss: outcome.evaluation.loss,
                test_accuracy: outcome.evaluation.accuracy,
                train_seconds,
                samples_per_second: samples / train_seconds.max(1e-9),
            },
            history: trainer.history,
            diverged: outcome.diverged.map(|error| error.to_string()),
        });
    }
    Ok(results)
}
