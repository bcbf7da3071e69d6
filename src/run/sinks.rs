//! A `train` run's reports: JSON lines, the CSV history, TensorBoard events, the curves, and the
//! summary line.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Result, Setting};
use crate::optim::privacy::PrivacyGuarantee;
use crate::optim::schedule::LrSchedule;
use crate::optim::OptimizerConfig;
use crate::plot::{save_figure, PlotFormat, TrainingCurves};
use crate::report::tensorboard::TensorBoardSettings;
use crate::report::{print_json_line, CsvHistory, HumanOutput, JsonLines, TensorBoard};
use crate::run::spec::{RunSpec, ValidationPlan};
use crate::train::{BatchSize, Callback, Evaluation, Progress, Trainer};

/// Which reports a `train` run writes besides the human-readable lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSpec {
    /// JSON lines on stdout: one per epoch, then a summary (human text goes to stderr).
    pub json: bool,
    /// A CSV file of per-epoch metrics, appended as training runs.
    pub history: Option<PathBuf>,
    /// Loss and accuracy curves drawn after training (SVG or PNG).
    pub plot: Option<PathBuf>,
    /// TensorBoard event files (epoch scalars and a running loss).
    pub tensorboard: Option<TensorBoardSettings>,
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
    pub fn open(args: &ReportSpec) -> Result<TrainSinks> {
        if let Some(path) = &args.plot {
            PlotFormat::from_path(Setting::Plot, path)?;
        }
        let history = match &args.history {
            Some(path) => Some(CsvHistory::open(path)?),
            None => None,
        };
        let tensorboard = match &args.tensorboard {
            Some(settings) => Some(TensorBoard::open(settings)?),
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
        let json = self.json.iter_mut().map(|json| json as &mut dyn Callback);
        let history = self.history.iter_mut().map(|csv| csv as &mut dyn Callback);
        let tensorboard = self
            .tensorboard
            .iter_mut()
            .map(|tb| tb as &mut dyn Callback);
        json.chain(history).chain(tensorboard).collect()
    }

    /// Reports the finished run: the test result as text, and the summary line with `--json`.
    pub fn finish(
        &self,
        spec: &RunSpec,
        trainer: &Trainer,
        evaluation: &Evaluation,
        privacy: Option<&PrivacyGuarantee>,
        progress: &Progress,
    ) -> Result<()> {
        self.human.line(&format!(
            "Test loss: {:.4} - test accuracy: {:.4} ({}/{})",
            evaluation.loss, evaluation.accuracy, evaluation.correct, evaluation.count
        ));
        if let Some(path) = self.tensorboard.as_ref().and_then(TensorBoard::path) {
            progress.info(&format!("Wrote TensorBoard events to {}", path.display()));
        }
        if let Some(privacy) = privacy {
            self.human
                .line(&format!("Privacy guarantee: {}", privacy.describe()));
        }
        if let Some(path) = &self.plot {
            let title = format!(
                "{} - {} epochs, batch {}, {} - test accuracy {:.4}",
                spec.dataset.name(),
                trainer.history.len(),
                spec.training.batch_size.label(),
                spec.training.optimizer.name(),
                evaluation.accuracy
            );
            save_figure(
                Setting::Plot,
                path,
                &TrainingCurves::single(title, &trainer.history),
            )?;
            progress.info(&format!("Saved plot to {}", path.display()));
        }
        if self.json.is_some() {
            print_json_line(&TrainSummaryJson::new(spec, trainer, evaluation, privacy))?;
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
    /// Private runs: the (ε, δ) guarantee and the accountant's parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyGuarantee>,
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
    /// Flattened: its keys sit in `config` itself, between `schedule` and `seed`.
    #[serde(flatten)]
    pub validation: ValidationJson,
    pub seed: u64,
    pub hidden: Vec<usize>,
    pub dropout: f32,
    /// The layer stack as `--layers` spells it (`null` for the MLP).
    pub layers: Option<String>,
    pub limit: Option<usize>,
    pub data_dir: String,
}

/// The run's [`ValidationPlan`], as keys of the summary's `config`.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationJson {
    pub validation_split: Option<f64>,
    /// Patience of `--early-stopping`, if on.
    pub early_stopping: Option<usize>,
    pub restore_best: bool,
}

impl From<&ValidationPlan> for ValidationJson {
    fn from(plan: &ValidationPlan) -> Self {
        ValidationJson {
            validation_split: plan.split,
            early_stopping: plan.early_stopping.map(|(_, patience)| patience),
            restore_best: plan.restore_best.is_some(),
        }
    }
}

impl TrainSummaryJson {
    pub fn new(
        spec: &RunSpec,
        trainer: &Trainer,
        evaluation: &Evaluation,
        privacy: Option<&PrivacyGuarantee>,
    ) -> Self {
        let config = &spec.training;
        TrainSummaryJson {
            kind: "summary",
            test_loss: evaluation.loss,
            test_accuracy: evaluation.accuracy,
            test_correct: evaluation.correct,
            test_count: evaluation.count,
            epochs_completed: trainer.history.len(),
            train_seconds: trainer.history.iter().map(|record| record.seconds).sum(),
            model: spec
                .output
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_default(),
            dataset: spec.dataset.name().to_string(),
            class_names: spec.dataset.class_names(),
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
                validation: ValidationJson::from(&spec.validation),
                seed: config.seed,
                hidden: config.architecture.hidden.clone(),
                dropout: config.architecture.dropout,
                layers: config
                    .architecture
                    .layers
                    .as_deref()
                    .map(crate::nn::layer_spec::format_layers),
                limit: spec.limit,
                data_dir: spec.data_dir.display().to_string(),
            },
            privacy: privacy.cloned(),
        }
    }
}
