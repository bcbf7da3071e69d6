//! `mnist-train train`: load data, train, save the model, evaluate on the test set.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::cli::memory_args::{training_estimate, MemoryArgs};
use crate::cli::optimizer_args::{describe_optimizer, OptimizerArgs};
use crate::cli::performance::PerformanceArgs;
use crate::cli::resume::{self, CheckpointArgs, Safeguards};
use crate::cli::train_report::{TrainReportArgs, TrainSinks};
use crate::cli::validation_args::{ValidationArgs, ValidationPlan};
use crate::cli::{DataArgs, DatasetArg, OutputArgs};
use crate::data::{load_train_and_test, DatasetKind};
use crate::error::{Error, Result};
use crate::model_file::{Model, Normalization};
use crate::nn::Architecture;
use crate::train::{evaluate, BatchSize, Progress, TrainConfig, Validation};

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Passes over the training set
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub epochs: usize,
    /// Examples per step: a number (1 = stochastic GD) or "full" (full-batch GD)
    #[arg(long, default_value = "32", value_parser = parse_batch_size, allow_negative_numbers = true)]
    pub batch_size: BatchSize,
    /// Seed for initialization, shuffling and dropout; the same seed gives the same model
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    pub seed: u64,
    /// Widths of the hidden layers, comma-separated (e.g. 256,128)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "128",
        allow_negative_numbers = true
    )]
    pub hidden: Vec<usize>,
    /// Dropout rate after each hidden layer, in [0, 1)
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    pub dropout: f32,
    /// Train on the first N training images only (quick tries and tests)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Examples per batch when evaluating
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    pub test_batch_size: usize,
    /// Which dataset to train on
    #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to save the trained model
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub output: PathBuf,
    #[command(flatten)]
    pub output_args: OutputArgs,
    #[command(flatten)]
    pub report: TrainReportArgs,
    #[command(flatten)]
    pub optimizer: OptimizerArgs,
    #[command(flatten)]
    pub validation: ValidationArgs,
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
    #[command(flatten)]
    pub performance: PerformanceArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// `"full"` or a positive integer.
pub fn parse_batch_size(value: &str) -> std::result::Result<BatchSize, String> {
    if value.eq_ignore_ascii_case("full") {
        return Ok(BatchSize::Full);
    }
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (or \"full\")".to_string()),
        Ok(n) => Ok(BatchSize::Examples(n)),
        Err(_) => Err("expected a positive number or \"full\"".to_string()),
    }
}

/// A validated training job.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub config: TrainConfig,
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    pub limit: Option<usize>,
    pub test_batch_size: usize,
    pub output: PathBuf,
    pub validation: ValidationPlan,
}

impl TrainArgs {
    /// Checks every option and builds the job; errors name the option.
    pub fn validate(&self) -> Result<TrainJob> {
        if self.epochs == 0 {
            return Err(Error::config("--epochs", "must be at least 1"));
        }
        let (optimizer, learning_rate, schedule) = self.optimizer.resolve()?;
        let validation = self.validation.resolve()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("--dropout", "must be in [0, 1)"));
        }
        if self.hidden.is_empty() || self.hidden.iter().any(|&w| w == 0 || w > 65536) {
            return Err(Error::config(
                "--hidden",
                "every hidden layer width must be between 1 and 65536",
            ));
        }
        if self.limit == Some(0) {
            return Err(Error::config("--limit", "must be at least 1"));
        }
        if self.test_batch_size == 0 {
            return Err(Error::config("--test-batch-size", "must be at least 1"));
        }
        let dataset = DatasetKind::from(self.dataset);
        let architecture = Architecture {
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            ..Architecture::tutorial()
        };
        Ok(TrainJob {
            config: TrainConfig {
                architecture,
                optimizer,
                learning_rate,
                schedule,
                epochs: self.epochs,
                batch_size: self.batch_size,
                seed: self.seed,
            },
            dataset,
            data_dir: self.data.dir_for(dataset),
            limit: self.limit,
            test_batch_size: self.test_batch_size,
            output: self.output.clone(),
            validation,
        })
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut job = args
        .validate()
        .map_err(|error| resume::explain(error, &args.checkpoints))?;
    let plan = resume::prepare(&args.checkpoints, &mut job)?;
    args.memory.check(training_estimate(&job, None))?;
    let mut sinks = TrainSinks::open(&args.report)?;
    let threads = args.performance.threads()?;
    args.performance.select_kernel()?;
    let mut progress = Progress::new(args.output_args.progress_mode(), job.config.epochs);

    let load_started = Instant::now();
    let (mut train_set, test_set) = load_train_and_test(&job.data_dir, job.dataset)?;
    if let Some(limit) = job.limit {
        train_set.truncate(limit);
    }
    progress.info(&format!(
        "Loaded {} from {}: {} training and {} test images ({:.2}s)",
        job.dataset.name(),
        job.data_dir.display(),
        train_set.len(),
        test_set.len(),
        load_started.elapsed().as_secs_f64()
    ));

    let (train_set, validation_set) =
        job.validation
            .hold_out(train_set, job.config.seed, &progress)?;
    let evaluated = test_set
        .len()
        .max(validation_set.as_ref().map_or(0, |v| v.len()));
    args.memory
        .check(training_estimate(&job, Some((train_set.len(), evaluated))))?;
    progress.info(&describe_optimizer(&job.config));

    let mut trainer = plan.trainer(&job, &train_set, &progress)?;
    trainer.threads = threads;
    let mut controls = job.validation.controls();
    let validation = validation_set.as_ref().map(|data| Validation {
        data,
        batch_size: job.test_batch_size,
    });
    let mut safeguards = Safeguards::install(&plan, &job, &train_set)?;
    let mut callbacks = sinks.callbacks();
    callbacks.extend(controls.callbacks());
    // Last, so the checkpoints it writes include the other callbacks' state of this epoch.
    callbacks.push(&mut safeguards);
    trainer.fit_with_validation(&train_set, validation, &mut progress, &mut callbacks)?;
    drop(callbacks);
    safeguards.finish(&trainer)?;
    for line in controls.finish(&mut trainer.params) {
        progress.info(&line);
    }

    let model = Model {
        architecture: job.config.architecture.clone(),
        normalization: Normalization::default(),
        dataset: job.dataset.name().to_string(),
        class_names: train_set.class_names.clone(),
        parameters: trainer.params.clone(),
    };
    model
        .save(&job.output)
        .map_err(|error| plan.explain_save_failure(error))?;
    plan.finish();

    let evaluation = evaluate(
        &trainer.mlp,
        &trainer.params,
        &test_set,
        job.test_batch_size,
    );
    sinks.finish(&job, &trainer, &evaluation, &progress)?;
    progress.info(&format!("Saved model to {}", job.output.display()));
    Ok(())
}
