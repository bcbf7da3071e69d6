//! Callbacks that watch the per-epoch metrics: early stopping and keeping the best weights.
//! Their state is plain serializable data so checkpoints can save and restore it.

pub mod best_weights;
pub mod early_stopping;

use serde::{Deserialize, Serialize};

use crate::train::{Callback, EpochRecord};

pub use best_weights::{BestWeights, BestWeightsState};
pub use early_stopping::{EarlyStopping, EarlyStoppingState};

/// A metric of the [`EpochRecord`] (Keras' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Loss,
    Accuracy,
    ValLoss,
    ValAccuracy,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::Accuracy => "accuracy",
            Metric::ValLoss => "val_loss",
            Metric::ValAccuracy => "val_accuracy",
        }
    }

    /// The metric's value in `record`, if the record has it (val_* need a validation set).
    pub fn value(self, record: &EpochRecord) -> Option<f64> {
        match self {
            Metric::Loss => Some(record.loss),
            Metric::Accuracy => Some(record.accuracy),
            Metric::ValLoss => record.val_loss,
            Metric::ValAccuracy => record.val_accuracy,
        }
    }

    pub fn needs_validation(self) -> bool {
        matches!(self, Metric::ValLoss | Metric::ValAccuracy)
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::ValAccuracy)
    }
}

/// Which metric to watch and how much it must change to count as better.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    pub metric: Metric,
    /// An improvement must exceed this (Keras' `min_delta`).
    pub min_delta: f64,
}

impl Monitor {
    /// Whether `current` beats `best` by more than `min_delta` (anything finite beats nothing).
    pub fn is_improvement(&self, current: f64, best: Option<f64>) -> bool {
        if !current.is_finite() {
            return false;
        }
        match best {
            None => true,
            Some(best) if self.metric.higher_is_better() => current > best + self.min_delta,
            Some(best) => current < best - self.min_delta,
        }
    }
}

impl Monitor {
    /// The best epoch of `history` (1-based) and its value, judged as the callbacks judge it
    /// epoch by epoch: an epoch is better when it improves on the best so far.
    pub fn best_epoch(&self, history: &[EpochRecord]) -> Option<(usize, f64)> {
        history
            .iter()
            .fold(None, |best, record| match self.metric.value(record) {
                Some(value) if self.is_improvement(value, best.map(|(_, v)| v)) => {
                    Some((record.epoch, value))
                }
                _ => best,
            })
    }
}

/// A run's optional early-stopping and best-weights callbacks, and what happens when it ends.
#[derive(Debug, Clone, Default)]
pub struct TrainingControls {
    pub early_stopping: Option<EarlyStopping>,
    pub best_weights: Option<BestWeights>,
}

impl TrainingControls {
    /// The active callbacks, to pass to [`crate::train::Trainer::fit`].
    pub fn callbacks(&mut self) -> Vec<&mut dyn Callback> {
        let early = self
            .early_stopping
            .iter_mut()
            .map(|c| c as &mut dyn Callback);
        let best = self.best_weights.iter_mut().map(|c| c as &mut dyn Callback);
        early.chain(best).collect()
    }

    /// Once training has ended, however it ended: puts the best epoch's weights into `params`
    /// if asked to. Returns lines that tell the user what happened.
    pub fn finish(&self, params: &mut [f32]) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(summary) = self.early_stopping.as_ref().and_then(|e| e.summary()) {
            lines.push(summary);
        }
        if let Some(best_weights) = &self.best_weights {
            lines.push(match best_weights.restore(params) {
                Some(epoch) => format!(
                    "Restored the weights of epoch {epoch} (best {} {:.4})",
                    best_weights.monitor.metric.name(),
                    best_weights.state.best.unwrap_or(f64::NAN)
                ),
                None => "No epoch finished; keeping the current weights".to_string(),
            });
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn improvement_respects_direction_and_min_delta() {
        let loss = Monitor {
            metric: Metric::ValLoss,
            min_delta: 0.01,
        };
        assert!(loss.is_improvement(0.5, None));
        assert!(loss.is_improvement(0.48, Some(0.5)));
        assert!(!loss.is_improvement(0.495, Some(0.5)));
        assert!(!loss.is_improvement(f64::NAN, None));
        let accuracy = Monitor {
            metric: Metric::ValAccuracy,
            min_delta: 0.0,
        };
        assert!(accuracy.is_improvement(0.91, Some(0.9)));
        assert!(!accuracy.is_improvement(0.9, Some(0.9)));
    }
}
