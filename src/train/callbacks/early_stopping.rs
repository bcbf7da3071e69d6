//! Early stopping (Keras' `EarlyStopping`): stop when the monitored metric has not improved for
//! `patience` epochs in a row.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::callbacks::Monitor;
use crate::train::{Callback, CallbackState, Control, EpochRecord, Trainer};

/// What early stopping remembers between epochs (checkpointed with the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    /// The best value seen so far, and its 1-based epoch.
    pub best: Option<f64>,
    pub best_epoch: usize,
    /// Epochs since the last improvement.
    pub wait: usize,
    /// The epoch after which training was stopped, once it has been.
    pub stopped_epoch: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct EarlyStopping {
    pub monitor: Monitor,
    pub patience: usize,
    pub state: EarlyStoppingState,
}

impl EarlyStopping {
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping {
            monitor,
            patience,
            state: EarlyStoppingState::default(),
        }
    }

    /// Feeds the metric of 1-based `epoch`; says whether to stop.
    pub fn observe(&mut self, epoch: usize, value: f64) -> Control {
        let state = &mut self.state;
        if self.monitor.is_improvement(value, state.best) {
            state.best = Some(value);
            state.best_epoch = epoch;
            state.wait = 0;
            return Control::Continue;
        }
        state.wait += 1;
        if state.wait >= self.patience {
            state.stopped_epoch = Some(epoch);
            return Control::Stop;
        }
        Control::Continue
    }

    /// A one-line account of why training stopped, if it stopped early.
    pub fn summary(&self) -> Option<String> {
        let stopped = self.state.stopped_epoch?;
        Some(format!(
            "Early stopping after epoch {stopped}: {} did not improve by more than {} for {} epoch(s); best {:.4} at epoch {}",
            self.monitor.metric.name(),
            self.monitor.min_delta,
            self.state.wait,
            self.state.best.unwrap_or(f64::NAN),
            self.state.best_epoch
        ))
    }
}

impl Callback for EarlyStopping {
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        false
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        let Some(value) = self.monitor.metric.value(record) else {
            return Ok(Control::Continue);
        };
        let control = self.observe(record.epoch, value);
        if record.epoch >= trainer.config.epochs {
            // The run ends here anyway: that is not an early stop.
            self.state.stopped_epoch = None;
        }
        Ok(control)
    }

    fn state_key(&self) -> Option<&'static str> {
        Some("early_stopping")
    }

    fn checkpoint_state(&self) -> Option<CallbackState> {
        Some(CallbackState {
            values: serde_json::to_value(&self.state).ok()?,
            tensors: Default::default(),
        })
    }

    fn restore_checkpoint_state(&mut self, state: &CallbackState) -> Result<()> {
        self.state = serde_json::from_value(state.values.clone()).map_err(|e| {
            Error::model("checkpoint", format!("invalid early stopping state: {e}"))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::callbacks::Metric;

    fn run(losses: &[f64], patience: usize, min_delta: f64) -> (Option<usize>, usize) {
        let mut early = EarlyStopping::new(
            Monitor {
                metric: Metric::ValLoss,
                min_delta,
            },
            patience,
        );
        for (index, &loss) in losses.iter().enumerate() {
            if early.observe(index + 1, loss) == Control::Stop {
                return (Some(index + 1), early.state.best_epoch);
            }
        }
        (None, early.state.best_epoch)
    }

    #[test]
    fn stops_after_patience_epochs_without_improvement() {
        // Best at epoch 3; epochs 4 and 5 do not improve: patience 2 stops after epoch 5.
        let losses = [0.9, 0.7, 0.5, 0.55, 0.6, 0.4, 0.3];
        assert_eq!(run(&losses, 2, 0.0), (Some(5), 3));
        assert_eq!(run(&losses, 1, 0.0), (Some(4), 3));
        // Patience 3 survives the bump and sees epoch 6 improve; never stops.
        assert_eq!(run(&losses, 3, 0.0), (None, 7));
    }

    #[test]
    fn an_improvement_resets_the_wait() {
        let losses = [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.86];
        assert_eq!(run(&losses, 2, 0.0), (Some(7), 5));
    }

    #[test]
    fn improvements_smaller_than_min_delta_do_not_count() {
        // Each epoch improves by 0.004 only; with min_delta 0.01 nothing after epoch 1 counts.
        let losses = [0.5, 0.496, 0.492, 0.488];
        assert_eq!(run(&losses, 2, 0.01), (Some(3), 1));
        assert_eq!(run(&losses, 2, 0.0), (None, 4));
    }

    #[test]
    fn patience_zero_stops_at_the_first_non_improvement() {
        assert_eq!(run(&[0.5, 0.4, 0.45, 0.3], 0, 0.0), (Some(3), 2));
    }
}
