//! `mnist-train train`: load data, train, save the model, evaluate on the test set.

use std::path::PathBuf;

use clap::Args;

use crate::cli::memory_args::MemoryArgs;
use crate::cli::optimizer_args::{OptimizerArgs, ScheduleName};
use crate::cli::performance::PerformanceArgs;
use crate::cli::privacy_args::{check_monitor, PrivacyArgs};
use crate::cli::resume::{self, CheckpointArgs};
use crate::cli::validation_args::ValidationArgs;
use crate::cli::{DataArgs, DatasetArg, OutputArgs};
use crate::data::DatasetKind;
use crate::error::{Error, Result, Setting};
use crate::nn::Architecture;
use crate::optim::privacy::{recipe, DpConfig, NoisePlan};
use crate::report::tensorboard::TensorBoardSettings;
use crate::run::preflight::{self, OutputLocks};
use crate::run::sinks::{ReportSpec, TrainSinks};
use crate::run::{self, budget, Observers, RunSpec, Source};
use crate::train::{BatchSize, Progress, TrainConfig};

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Passes over the training set
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = crate::cli::at_least_one::<usize>)]
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
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = crate::cli::at_least_one::<usize>)]
    pub limit: Option<usize>,
    /// Examples per batch when evaluating
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = crate::cli::at_least_one::<usize>)]
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
    pub privacy: PrivacyArgs,
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

/// `train`'s reporting options.
#[derive(Debug, Clone, Default, Args)]
pub struct TrainReportArgs {
    /// Print JSON lines on stdout: one per epoch, then a summary (human text goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// Append per-epoch metrics to this CSV file as training runs (created with a header if new)
    #[arg(long, value_name = "PATH.csv")]
    pub history: Option<PathBuf>,
    /// After training, draw loss and accuracy curves (train and validation) to this SVG or PNG file
    #[arg(long, value_name = "PATH.svg|PATH.png")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub tensorboard: TensorBoardArgs,
}

impl TrainReportArgs {
    pub fn to_spec(&self) -> Result<ReportSpec> {
        Ok(ReportSpec {
            json: self.json,
            history: self.history.clone(),
            plot: self.plot.clone(),
            tensorboard: self.tensorboard.settings()?,
        })
    }
}

/// `--tensorboard`, shared by train and compare.
#[derive(Debug, Clone, Default, Args)]
pub struct TensorBoardArgs {
    /// Write TensorBoard event files into DIR (created if missing): the epoch metrics and a running
    /// loss; view with `tensorboard --logdir DIR`. A resumed run continues the same folder
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Log the running loss to TensorBoard every N optimization steps
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub tensorboard_every: u64,
}

impl TensorBoardArgs {
    /// The checked options, or `None` without `--tensorboard`.
    pub fn settings(&self) -> Result<Option<TensorBoardSettings>> {
        if self.tensorboard_every == 0 {
            return Err(Error::config("--tensorboard-every", "must be at least 1"));
        }
        Ok(self.tensorboard.clone().map(|dir| TensorBoardSettings {
            dir,
            every_steps: self.tensorboard_every,
        }))
    }
}

impl TrainArgs {
    /// Checks every option and builds the run; errors name the option.
    pub fn to_spec(&self) -> Result<RunSpec> {
        let (optimizer, learning_rate, schedule) = self.optimizer.resolve()?;
        let validation = self.validation.resolve()?;
        let privacy = self.privacy.resolve()?;
        if privacy.is_some() {
            if let Some((monitor, _)) = &validation.early_stopping {
                check_monitor("--early-stopping", monitor)?;
            }
            if let Some(monitor) = &validation.restore_best {
                check_monitor("--restore-best", monitor)?;
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("--dropout", "must be in [0, 1)"));
        }
        if self.hidden.is_empty() || self.hidden.iter().any(|&w| w == 0 || w > 65536) {
            return Err(Error::config(
                "--hidden",
                "every hidden layer width must be between 1 and 65536",
            ));
        }
        let dataset = DatasetKind::from(self.dataset);
        let architecture = Architecture {
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            ..Architecture::tutorial()
        };
        let training = TrainConfig {
            architecture,
            optimizer,
            learning_rate,
            schedule,
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            privacy: privacy.and_then(|plan| match plan.noise {
                NoisePlan::Multiplier(noise_multiplier) => Some(DpConfig {
                    noise_multiplier,
                    clip_norm: plan.clip_norm,
                    delta: plan.delta,
                }),
                NoisePlan::TargetEpsilon(_) => None,
            }),
        };
        Ok(RunSpec {
            data_dir: self.data.dir_for(dataset),
            limit: self.limit,
            test_batch_size: self.test_batch_size,
            validation,
            output: Some(self.output.clone()),
            checkpoints: self.checkpoints.policy(),
            memory_limit: self.memory.max_memory,
            privacy,
            ..RunSpec::new(training, dataset)
        })
    }
}

pub fn run(mut args: TrainArgs) -> Result<()> {
    apply_recipe(&mut args);
    let mut spec = args
        .to_spec()
        .map_err(|error| resume::explain(error, &args.checkpoints))?;
    // A folder being resumed is locked before it is read: while another run writes it, say so.
    let mut locks = OutputLocks::default();
    if let Some(dir) = args
        .checkpoints
        .resume
        .as_ref()
        .filter(|path| path.is_dir())
    {
        locks.folder(dir, Setting::Resume)?;
    }
    let resume = resume::prepare(&args.checkpoints, &mut spec)?;
    budget::check_training(&spec, None)?;
    if spec.checkpoints.every_steps.is_some() && spec.checkpoints.dir.is_none() {
        return Err(Error::config(
            "--checkpoint-every",
            "needs --checkpoint-dir (where to write the checkpoints)",
        ));
    }
    preflight::check_run_outputs(&spec, resume.is_some(), &mut locks)?;
    let mut sinks = TrainSinks::open(&args.report.to_spec()?)?;
    spec.threads = std::num::NonZeroUsize::new(args.performance.threads());
    args.performance.select_kernel()?;
    let mut progress = Progress::new(args.output_args.progress_mode(), spec.training.epochs);
    let observers = Observers {
        progress: &mut progress,
        sinks: sinks.callbacks(),
        announce: true,
        keep_diverged: false,
    };
    let outcome = run::execute(&spec, Source::Load, resume.as_ref(), observers)?;
    sinks.finish(
        &spec,
        &outcome.trainer,
        &outcome.evaluation,
        outcome.privacy.as_ref(),
        &progress,
    )?;
    if let Some(output) = &spec.output {
        progress.info(&format!("Saved model to {}", output.display()));
    }
    Ok(())
}

/// With `--dp-target-epsilon` alone (no `--dp-noise-multiplier`), the options the user did not
/// give take the private recipe's values.
pub fn apply_recipe(args: &mut TrainArgs) {
    if args.privacy.dp_target_epsilon.is_none() {
        return;
    }
    let given = |id: &str| args.checkpoints.given.contains(id);
    let (epochs, batch, dropout, optimizer, rate, momentum, schedule) = (
        !given("epochs"),
        !given("batch_size"),
        !given("dropout"),
        !given("optimizer"),
        !given("learning_rate"),
        !given("momentum"),
        !given("lr_schedule"),
    );
    if epochs {
        args.epochs = recipe::EPOCHS;
    }
    if batch {
        args.batch_size = crate::train::BatchSize::Examples(recipe::BATCH_SIZE);
    }
    if dropout {
        args.dropout = recipe::DROPOUT;
    }
    if optimizer {
        args.optimizer.optimizer = crate::cli::optimizer_args::OptimizerName::Momentum;
        if rate {
            args.optimizer.learning_rate = Some(recipe::LEARNING_RATE);
        }
        if momentum {
            args.optimizer.momentum = Some(recipe::MOMENTUM);
        }
    }
    if schedule {
        args.optimizer.lr_schedule = ScheduleName::Cosine;
    }
}
