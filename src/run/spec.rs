//! [`RunSpec`]: one plain description of a training run — what to train, on which data, what to
//! watch, where results and checkpoints go. The command line builds it (`train`, `bench`,
//! `compare`), a checkpoint stores it, and [`crate::run::execute`] carries it out.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::split::hold_out_validation;
use crate::data::{Dataset, DatasetKind};
use crate::error::Result;
use crate::optim::privacy::PrivacyPlan;
use crate::train::callbacks::{BestWeights, EarlyStopping, Monitor, TrainingControls};
use crate::train::{default_threads, Progress, TrainConfig};

/// How many of the newest checkpoints a run keeps when nothing else is said.
pub const DEFAULT_KEEP_CHECKPOINTS: usize = 2;

/// Examples per batch when evaluating, when nothing else is said.
pub const DEFAULT_TEST_BATCH_SIZE: usize = 1000;

/// A training run, validated: everything [`crate::run::execute`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// What decides the trained parameters: network, optimizer, schedule, epochs, batch, seed.
    pub training: TrainConfig,
    pub dataset: DatasetKind,
    /// The folder with the dataset's four files.
    pub data_dir: PathBuf,
    /// Train on the first N training images only.
    pub limit: Option<usize>,
    /// Examples per batch when evaluating.
    pub test_batch_size: usize,
    /// Validation split, early stopping and restore-best.
    pub validation: ValidationPlan,
    /// Measure the test set after every epoch (its metrics fill `val_*`); `compare` does.
    pub validate_on_test_set: bool,
    /// Where the trained model is saved. A run that saves a model is guarded: Ctrl-C writes a
    /// checkpoint. `None` (bench, compare): nothing is saved.
    pub output: Option<PathBuf>,
    pub checkpoints: CheckpointPolicy,
    /// Threads a step runs on (`None`: all cores). Results do not depend on it; not stored.
    pub threads: Option<NonZeroUsize>,
    /// Bytes the run may use (`None`: what the system reports available); runs estimated to
    /// need more are refused before allocating (see [`crate::run::budget`]). Not stored.
    pub memory_limit: Option<u64>,
    /// Private training as asked for. With a target ε, `training.privacy` is filled in by
    /// [`crate::run::execute`] once the training-set size is known (a resumed run has it from
    /// its checkpoint).
    pub privacy: Option<PrivacyPlan>,
}

impl RunSpec {
    /// A run of `training` on `dataset` from its default folder, with nothing else asked for.
    pub fn new(training: TrainConfig, dataset: DatasetKind) -> RunSpec {
        RunSpec {
            training,
            dataset,
            data_dir: dataset.default_dir(),
            limit: None,
            test_batch_size: DEFAULT_TEST_BATCH_SIZE,
            validation: ValidationPlan::default(),
            validate_on_test_set: false,
            output: None,
            checkpoints: CheckpointPolicy::default(),
            threads: None,
            memory_limit: None,
            privacy: None,
        }
    }

    /// The thread count a step runs on.
    pub fn thread_count(&self) -> usize {
        self.threads.map_or_else(default_threads, NonZeroUsize::get)
    }

    /// Where an interrupted run without a checkpoint folder saves its checkpoint:
    /// `<output>.interrupted.ckpt`.
    pub fn interrupted_path(&self) -> Option<PathBuf> {
        self.output.as_ref().map(|output| {
            let mut path = output.clone().into_os_string();
            path.push(".interrupted.ckpt");
            PathBuf::from(path)
        })
    }
}

/// Where and how often a run writes checkpoints (stored in checkpoints: a resume continues it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPolicy {
    /// The checkpoint folder; `None`: no checkpoints (except when interrupted).
    pub dir: Option<PathBuf>,
    /// Also write one every this many optimization steps.
    pub every_steps: Option<usize>,
    /// How many of the newest checkpoints to keep (plus the best one when validating).
    pub keep: usize,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            dir: None,
            every_steps: None,
            keep: DEFAULT_KEEP_CHECKPOINTS,
        }
    }
}

impl CheckpointPolicy {
    /// The checkpointer's settings, when the run checkpoints into a folder.
    pub fn settings(&self) -> Option<CheckpointSettings> {
        self.dir.clone().map(|dir| CheckpointSettings {
            dir,
            every_steps: self.every_steps,
            keep: self.keep,
        })
    }
}

/// Where and how often a checkpoint folder is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    pub dir: PathBuf,
    /// Also write one every this many optimization steps.
    pub every_steps: Option<usize>,
    /// How many of the newest checkpoints to keep (the best one is kept in addition).
    pub keep: usize,
}

/// Validated validation and early-stopping settings (checkpoints store them: they decide what
/// a resumed run trains on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationPlan {
    pub split: Option<f64>,
    /// The monitor and the patience.
    pub early_stopping: Option<(Monitor, usize)>,
    pub restore_best: Option<Monitor>,
}

impl ValidationPlan {
    /// Holds out the validation set if asked, saying how it was drawn.
    /// Returns (what to train on, what to validate on), or `None` when nothing is held out.
    pub fn hold_out(
        &self,
        dataset: &Dataset,
        seed: u64,
        progress: &Progress,
    ) -> Result<Option<(Dataset, Dataset)>> {
        let Some(fraction) = self.split else {
            return Ok(None);
        };
        let held = hold_out_validation(dataset, fraction, seed)?;
        let per_class: Vec<String> = held
            .validation_per_class
            .iter()
            .map(|count| count.to_string())
            .collect();
        progress.info(&format!(
            "Validation: held out {} of {} training images ({:.1}%), drawn at random within each class \
             (stratified) with seed {seed}; per class {}; training on {}",
            held.validation.len(),
            dataset.len(),
            100.0 * held.validation.len() as f64 / dataset.len() as f64,
            per_class.join(" "),
            held.train.len()
        ));
        Ok(Some((held.train, held.validation)))
    }

    /// The callbacks these settings ask for.
    pub fn controls(&self) -> TrainingControls {
        TrainingControls {
            early_stopping: self
                .early_stopping
                .map(|(monitor, patience)| EarlyStopping::new(monitor, patience)),
            best_weights: self.restore_best.map(BestWeights::new),
        }
    }
}
