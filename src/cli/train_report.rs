//! `train`'s reporting options (`--json`, `--history`, `--plot`, `--tensorboard`) and the sinks
//! they open.
//! Kept apart from `train.rs` so the training options and these outputs evolve independently.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::cli::train::TrainJob;
use crate::error::{Error, Result};
use crate::optim::schedule::LrSchedule;
use crate::optim::OptimizerConfig;
use crate::plot::{save_figure, PlotFormat, TrainingCurves};
use crate::report::tensorboard::TensorBoardSettings;
use crate::report::{print_json_line, CsvHistory, HumanOutput, JsonLines, TensorBoard};
use crate::train::{BatchSize, Callback, Evaluation, Progress, Trainer};

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

/// The per-epoch sinks the options asked for.
pub struct TrainSinks {
    json: Option<JsonLines>,
    history: Option<CsvHistory>,
    plot: Option<PathBuf>,
    tensorboard: Option<TensorBoard>,
    pub human: HumanOutput,
}

impl TrainSinks {
    /// Opens every sink before training starts, so a bad path fails before any work is done.
    pub fn open(args: &TrainReportArgs) -> Result<TrainSinks> {
        if let Some(path) = &args.plot {
            PlotFormat::from_path("--plot", path)?;
        }
        let history = match &args.history {
            Some(path) => Some(CsvHistory::open(path)?),
            None => None,
        };
        let tensorboard = match args.tensorboard.settings()? {
            Some(settings) => Some(TensorBoard::open(&settings)?),
            None => None,
        };
        Ok(TrainSinks {
            json: args.json.then_some(JsonLines),
            history,
            plot: args.plot.clone(),
            tensorboard,
            human: HumanOutput::new(args.json),
        })
    }

    /// The callbacks to hand to [`Trainer::fit`].
    pub fn callbacks(&mut self) -> Vec<&mut dyn Callback> {
        let mut callbacks: Vec<&mut dyn Callback> = Vec::new();
        if let Some(json) = &mut self.json {
            callbacks.push(json);
        }
        if let Some(history) = &mut self.history {
            callbacks.push(history);
        }
        if let Some(tensorboard) = &mut self.tensorboard {
            callbacks.push(tensorboard);
        }
        callbacks
    }

    /// Reports the finished run: the test result as text, and the summary line with `--json`.
    pub fn finish(
        &self,
        job: &TrainJob,
        trainer: &Trainer,
        evaluation: &Evaluation,
        progress: &Progress,
    ) -> Result<()> {
        self.human.line(&format!(
            "Test loss: {:.4} - test accuracy: {:.4} ({}/{})",
            evaluation.loss, evaluation.accuracy, evaluation.correct, evaluation.count
        ));
        if let Some(path) = self.tensorboard.as_ref().and_then(TensorBoard::path) {
            progress.info(&format!("Wrote TensorBoard events to {}", path.display()));
        }
        if let Some(path) = &self.plot {
            let title = format!(
                "{} - {} epochs, batch {}, {} - test accuracy {:.4}",
                job.dataset.name(),
                trainer.history.len(),
                match job.config.batch_size {
                    BatchSize::Examples(n) => n.to_string(),
                    BatchSize::Full => "full".to_string(),
                },
                job.config.optimizer.name(),
                evaluation.accuracy
            );
            save_figure(
                "--plot",
                path,
                &TrainingCurves::single(title, &trainer.history),
            )?;
            progress.info(&format!("Saved plot to {}", path.display()));
        }
        if self.json.is_some() {
            print_json_line(&TrainSummaryJson::new(job, trainer, evaluation))?;
        }
        Ok(())
    }
}

/// The `"type": "summary"` line ending `train --json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummaryJson {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub test_correct: usize,
    pub test_count: usize,
    pub epochs_completed: usize,
    /// Sum of the epochs' training time.
    pub train_seconds: f64,
    pub model: String,
    pub dataset: String,
    pub class_names: Vec<String>,
    pub config: TrainConfigJson,
}

/// The options that decided the run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfigJson {
    pub epochs: usize,
    /// A number, or `"full"`.
    pub batch_size: serde_json::Value,
    pub learning_rate: f32,
    pub optimizer: String,
    /// The optimizer with its hyperparameters, e.g. `{"name": "momentum", "momentum": 0.9}`.
    pub optimizer_settings: OptimizerConfig,
    /// The learning-rate schedule and warm-up.
    pub schedule: LrSchedule,
    pub validation_split: Option<f64>,
    /// Patience of `--early-stopping`, if on.
    pub early_stopping: Option<usize>,
    pub restore_best: bool,
    pub seed: u64,
    pub hidden: Vec<usize>,
    pub dropout: f32,
    pub limit: Option<usize>,
    pub data_dir: String,
}

impl TrainSummaryJson {
    pub fn new(job: &TrainJob, trainer: &Trainer, evaluation: &Evaluation) -> Self {
        let config = &job.config;
        TrainSummaryJson {
            kind: "summary",
            test_loss: evaluation.loss,
            test_accuracy: evaluation.accuracy,
            test_correct: evaluation.correct,
            test_count: evaluation.count,
            epochs_completed: trainer.history.len(),
            train_seconds: trainer.history.iter().map(|record| record.seconds).sum(),
            model: job.output.display().to_string(),
            dataset: job.dataset.name().to_string(),
            class_names: job.dataset.class_names(),
            config: TrainConfigJson {
                epochs: config.epochs,
                batch_size: match config.batch_size {
                    BatchSize::Examples(n) => serde_json::Value::from(n),
                    BatchSize::Full => serde_json::Value::from("full"),
                },
                learning_rate: config.learning_rate,
                optimizer: config.optimizer.name().to_string(),
                optimizer_settings: config.optimizer,
                schedule: config.schedule,
                validation_split: job.validation.split,
                early_stopping: job.validation.early_stopping.map(|(_, patience)| patience),
                restore_best: job.validation.restore_best.is_some(),
                seed: config.seed,
                hidden: config.architecture.hidden.clone(),
                dropout: config.architecture.dropout,
                limit: job.limit,
                data_dir: job.data_dir.display().to_string(),
            },
        }
    }
}
