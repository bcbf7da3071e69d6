//! `mnist-train train`: load data, train, save the model, evaluate on the test set.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::memory_args::MemoryArgs;
use crate::cli::optimizer_args::{OptimizerArgs, ScheduleName};
use crate::cli::performance::PerformanceArgs;
use crate::cli::privacy_args::{check_monitor, PrivacyArgs};
use crate::cli::resume::{self, CheckpointArgs};
use crate::cli::validation_args::ValidationArgs;
use crate::cli::{DataArgs, DatasetArg, OutputArgs};
use crate::data::DatasetKind;
use crate::error::{Error, Result, Setting};
use crate::nn::layer_spec::{parse_layers, LayerSpec};
use crate::nn::{Architecture, Mlp};
use crate::optim::privacy::{recipe, DpConfig, NoisePlan};
use crate::report::tensorboard::TensorBoardSettings;
use crate::run::preflight::{self, OutputLocks};
use crate::run::sinks::{ReportSpec, TrainSinks};
use crate::run::{self, budget, Observers, RunSpec, Source};
use crate::train::{BatchSize, Progress, Recipe, TrainConfig};

/// `--arch`: the named networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchName {
    /// The Keras tutorial's MLP, shaped by --hidden and --dropout (flatten,dense128,relu,dropout0.2,dense10)
    Mlp,
    /// Keras' mnist_convnet (conv32x3,relu,pool2,conv64x3,relu,pool2,flatten,dropout0.5,dense10)
    Cnn,
}

/// A `--layers` value: the parsed stack.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerList(pub Vec<LayerSpec>);

fn parse_layer_list(value: &str) -> std::result::Result<LayerList, String> {
    parse_layers(value).map(LayerList)
}

/// The network `--arch`/`--layers`/`--hidden`/`--dropout` ask for; errors name the option.
pub fn resolve_architecture(
    arch: ArchName,
    layers: Option<&LayerList>,
    hidden: Option<&[usize]>,
    dropout: Option<f32>,
) -> Result<Architecture> {
    let stack = match (arch, layers) {
        (_, Some(LayerList(layers))) => {
            Some(("--layers", "--layers", Architecture::stack(layers.clone())))
        }
        (ArchName::Cnn, None) => Some(("--arch", "--arch cnn", Architecture::cnn())),
        (ArchName::Mlp, None) => None,
    };
    if let Some((option, chosen_by, architecture)) = stack {
        if hidden.is_some() {
            return Err(Error::config(
                "--hidden",
                format!("applies only to --arch mlp, not with {chosen_by}"),
            ));
        }
        if dropout.is_some() {
            return Err(Error::config("--dropout", format!("applies only to --arch mlp, not with {chosen_by} (put a dropout layer in --layers)")));
        }
        Mlp::try_new(architecture.clone()).map_err(|message| Error::config(option, message))?;
        return Ok(architecture);
    }
    let dropout = dropout.unwrap_or(Architecture::tutorial().dropout);
    if !(0.0..1.0).contains(&dropout) {
        return Err(Error::config("--dropout", "must be in [0, 1)"));
    }
    let hidden = hidden.map_or_else(|| Architecture::tutorial().hidden, <[usize]>::to_vec);
    if hidden.is_empty() || hidden.iter().any(|&w| w == 0 || w > 65536) {
        return Err(Error::config(
            "--hidden",
            "every hidden layer width must be between 1 and 65536",
        ));
    }
    Ok(Architecture {
        hidden,
        dropout,
        ..Architecture::tutorial()
    })
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Passes over the training set (--arch cnn and --layers: 8) [default: 5]
    #[arg(long, allow_negative_numbers = true, value_parser = crate::cli::at_least_one::<usize>)]
    pub epochs: Option<usize>,
    /// Examples per step: a number (1 = stochastic GD) or "full" (full-batch GD) (--arch cnn and --layers: 64) [default: 32]
    #[arg(long, value_parser = parse_batch_size, allow_negative_numbers = true)]
    pub batch_size: Option<BatchSize>,
    /// Seed for initialization, shuffling and dropout; the same seed gives the same model
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    pub seed: u64,
    /// The network: the tutorial MLP or Keras' convnet (README: "Convolutional network")
    #[arg(long, value_enum, default_value_t = ArchName::Mlp)]
    pub arch: ArchName,
    /// Any sequential stack instead, e.g. conv32x3,relu,pool2,flatten,dense10 (layers: convFxK, relu, poolP, flatten, dropoutR, denseN)
    #[arg(long, value_name = "SPEC", value_parser = parse_layer_list, conflicts_with = "arch")]
    pub layers: Option<LayerList>,
    /// Widths of the MLP's hidden layers, comma-separated (e.g. 256,128) [default: 128]
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub hidden: Option<Vec<usize>>,
    /// Dropout rate after each of the MLP's hidden layers, in [0, 1) [default: 0.2]
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f32>,
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
            tensorboard: self.tensorboard.settings(),
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
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = crate::cli::at_least_one::<u64>)]
    pub tensorboard_every: u64,
}

impl TensorBoardArgs {
    /// The settings (checked while parsing), or `None` without `--tensorboard`.
    pub fn settings(&self) -> Option<TensorBoardSettings> {
        self.tensorboard.clone().map(|dir| TensorBoardSettings {
            dir,
            every_steps: self.tensorboard_every,
        })
    }
}

impl TrainArgs {
    /// Checks every option and builds the run; errors name the option.
    pub fn to_spec(&self) -> Result<RunSpec> {
        let architecture = resolve_architecture(
            self.arch,
            self.layers.as_ref(),
            self.hidden.as_deref(),
            self.dropout,
        )?;
        let recipe = Recipe::for_architecture(&architecture);
        let epochs = self.epochs.unwrap_or(recipe.epochs);
        let (optimizer, learning_rate, schedule) = self.optimizer.resolve(&recipe)?;
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
        let dataset = DatasetKind::from(self.dataset);
        let training = TrainConfig {
            architecture,
            optimizer,
            learning_rate,
            schedule,
            epochs,
            batch_size: self.batch_size.unwrap_or(recipe.batch_size),
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
/// give take the private recipe's values for that budget.
pub fn apply_recipe(args: &mut TrainArgs) {
    let Some(target) = args.privacy.dp_target_epsilon else {
        return;
    };
    let budget = recipe::for_target(target);
    let given = |id: &str| args.checkpoints.given.contains(id);
    let (epochs, batch, dropout, optimizer, rate, momentum, schedule, clip) = (
        !given("epochs"),
        !given("batch_size"),
        !given("dropout"),
        !given("optimizer"),
        !given("learning_rate"),
        !given("momentum"),
        !given("lr_schedule"),
        !given("dp_clip_norm"),
    );
    if epochs {
        args.epochs = Some(budget.epochs);
    }
    if batch {
        args.batch_size = Some(crate::train::BatchSize::Examples(recipe::BATCH_SIZE));
    }
    // The MLP's dropout only (--dropout does not apply to a layer stack).
    let mlp = args.layers.is_none() && args.arch == ArchName::Mlp;
    if dropout && mlp {
        args.dropout = Some(recipe::DROPOUT);
    }
    if optimizer {
        args.optimizer.optimizer = crate::cli::optimizer_args::OptimizerName::Momentum;
        if rate {
            args.optimizer.learning_rate = Some(budget.learning_rate);
        }
        if momentum {
            args.optimizer.momentum = Some(recipe::MOMENTUM);
        }
    }
    if schedule {
        args.optimizer.schedule.lr_schedule = Some(ScheduleName::Cosine);
    }
    if clip {
        args.privacy.dp_clip_norm = Some(budget.clip_norm);
    }
}
