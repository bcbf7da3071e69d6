//! `mnist-train train`: load data, train, save the model, evaluate on the test set.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};

use crate::cli::optimizer_args::{describe_optimizer, OptimizerArgs};
use crate::cli::performance::PerformanceArgs;
use crate::cli::resume::{self, CheckpointArgs, Safeguards};
use crate::cli::train_report::{TrainReportArgs, TrainSinks};
use crate::cli::validation_args::{ValidationArgs, ValidationPlan};
use crate::cli::{DataArgs, DatasetArg, OutputArgs};
use crate::data::{load_train_and_test, DatasetKind};
use crate::error::{Error, Result};
use crate::model_file::{Model, Normalization};
use crate::nn::layer_spec::{parse_layers, LayerSpec};
use crate::nn::{Architecture, Mlp};
use crate::train::{evaluate, BatchSize, Progress, Recipe, TrainConfig, Validation};

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
        (_, Some(LayerList(layers))) => Some(("--layers", Architecture::stack(layers.clone()))),
        (ArchName::Cnn, None) => Some(("--arch", Architecture::cnn())),
        (ArchName::Mlp, None) => None,
    };
    if let Some((option, architecture)) = stack {
        if hidden.is_some() {
            return Err(Error::config(
                "--hidden",
                format!("applies only to --arch mlp, not with {option}"),
            ));
        }
        if dropout.is_some() {
            return Err(Error::config("--dropout", format!("applies only to --arch mlp, not with {option} (put a dropout layer in --layers)")));
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
    /// Passes over the training set [default: 5; 8 with --arch cnn or --layers]
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Examples per step: a number (1 = stochastic GD) or "full" (full-batch GD) [default: 32; 64 with --arch cnn or --layers]
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
        let architecture = resolve_architecture(
            self.arch,
            self.layers.as_ref(),
            self.hidden.as_deref(),
            self.dropout,
        )?;
        let recipe = Recipe::for_architecture(&architecture);
        let epochs = self.epochs.unwrap_or(recipe.epochs);
        if epochs == 0 {
            return Err(Error::config("--epochs", "must be at least 1"));
        }
        let (optimizer, learning_rate, schedule) = self.optimizer.resolve(&recipe)?;
        let validation = self.validation.resolve()?;
        if self.limit == Some(0) {
            return Err(Error::config("--limit", "must be at least 1"));
        }
        if self.test_batch_size == 0 {
            return Err(Error::config("--test-batch-size", "must be at least 1"));
        }
        let dataset = DatasetKind::from(self.dataset);
        Ok(TrainJob {
            config: TrainConfig {
                architecture,
                optimizer,
                learning_rate,
                schedule,
                epochs,
                batch_size: self.batch_size.unwrap_or(recipe.batch_size),
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
