//! `train`'s options for holding out a validation set, early stopping and keeping the best epoch.

use clap::{Args, ValueEnum};

use crate::cli::refuse_given_without;
use crate::error::{Error, Result};
use crate::run::ValidationPlan;
use crate::train::callbacks::{Metric, Monitor};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Validation and early stopping")]
pub struct ValidationArgs {
    /// Hold out this fraction of the training images (after --limit) for validation: a random
    /// sample drawn from --seed, stratified by class; val_loss and val_accuracy are reported
    /// every epoch
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub validation_split: Option<f64>,
    /// Stop when the monitored metric has not improved for PATIENCE epochs in a row
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// Smallest change of the monitored metric that counts as an improvement [default: 0]
    #[arg(long, value_name = "DELTA", allow_hyphen_values = true)]
    pub min_delta: Option<f64>,
    /// Metric watched by --early-stopping and --restore-best [default: val_loss]
    #[arg(long, value_enum)]
    pub monitor: Option<MetricArg>,
    /// Keep (and save) the weights of the epoch with the best monitored metric, whatever
    /// stopped training
    #[arg(long)]
    pub restore_best: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    #[value(name = "val_loss")]
    ValLoss,
    #[value(name = "val_accuracy")]
    ValAccuracy,
    #[value(name = "loss")]
    Loss,
    #[value(name = "accuracy")]
    Accuracy,
}

impl From<MetricArg> for Metric {
    fn from(value: MetricArg) -> Self {
        match value {
            MetricArg::ValLoss => Metric::ValLoss,
            MetricArg::ValAccuracy => Metric::ValAccuracy,
            MetricArg::Loss => Metric::Loss,
            MetricArg::Accuracy => Metric::Accuracy,
        }
    }
}

impl ValidationArgs {
    /// Checks the values and their combinations; errors name the option.
    pub fn resolve(&self) -> Result<ValidationPlan> {
        if let Some(fraction) = self.validation_split {
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(Error::config(
                    "--validation-split",
                    format!("must be a fraction in (0, 1), got {fraction}"),
                ));
            }
        }
        let watching = self.early_stopping.is_some() || self.restore_best;
        if !watching {
            let given = [
                ("--monitor", self.monitor.is_some()),
                ("--min-delta", self.min_delta.is_some()),
            ];
            refuse_given_without(&given, "--early-stopping or --restore-best")?;
        }
        let min_delta = self.min_delta.unwrap_or(0.0);
        if !(min_delta.is_finite() && min_delta >= 0.0) {
            return Err(Error::config(
                "--min-delta",
                format!("must be zero or positive, got {min_delta}"),
            ));
        }
        let monitor = Monitor {
            metric: self.monitor.map_or(Metric::ValLoss, Metric::from),
            min_delta,
        };
        if watching && monitor.metric.needs_validation() && self.validation_split.is_none() {
            let option = if self.early_stopping.is_some() {
                "--early-stopping"
            } else {
                "--restore-best"
            };
            return Err(Error::config(
                option,
                format!(
                    "monitors {}, which needs --validation-split (or choose --monitor loss)",
                    monitor.metric.name()
                ),
            ));
        }
        Ok(ValidationPlan {
            split: self.validation_split,
            early_stopping: self.early_stopping.map(|patience| (monitor, patience)),
            restore_best: self.restore_best.then_some(monitor),
        })
    }
}
