//! Keeping the weights of the best epoch (`--restore-best`): after every epoch whose monitored
//! metric improves, copy the parameters; at the end — whatever stopped training (the last
//! epoch, early stopping, an interrupt) — put that copy back.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::callbacks::Monitor;
use crate::train::{Callback, CallbackState, Control, EpochRecord, Trainer};

/// The best epoch so far and its parameters (checkpointed with the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BestWeightsState {
    pub best: Option<f64>,
    /// 1-based; 0 before the first epoch ends.
    pub epoch: usize,
    pub params: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct BestWeights {
    pub monitor: Monitor,
    pub state: BestWeightsState,
}

impl BestWeights {
    pub fn new(monitor: Monitor) -> Self {
        BestWeights {
            monitor,
            state: BestWeightsState::default(),
        }
    }

    /// Records `params` as the best if `value` (the metric of 1-based `epoch`) improves.
    pub fn observe(&mut self, epoch: usize, value: f64, params: &[f32]) {
        if self.monitor.is_improvement(value, self.state.best) {
            self.state.best = Some(value);
            self.state.epoch = epoch;
            self.state.params.clear();
            self.state.params.extend_from_slice(params);
        }
    }

    /// Copies the best epoch's parameters into `params` and returns that epoch, or `None`
    /// (leaving `params` alone) if no epoch finished yet.
    pub fn restore(&self, params: &mut [f32]) -> Option<usize> {
        if self.state.best.is_none() || self.state.params.len() != params.len() {
            return None;
        }
        params.copy_from_slice(&self.state.params);
        Some(self.state.epoch)
    }
}

impl Callback for BestWeights {
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        false
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        if let Some(value) = self.monitor.metric.value(record) {
            self.observe(record.epoch, value, &trainer.params);
        }
        Ok(Control::Continue)
    }

    fn state_key(&self) -> Option<&'static str> {
        Some("best_weights")
    }

    /// The best value and epoch as JSON; the weights as a bit-exact tensor.
    fn checkpoint_state(&self) -> Option<CallbackState> {
        let mut state = CallbackState {
            values: serde_json::json!({ "best": self.state.best, "epoch": self.state.epoch }),
            tensors: Default::default(),
        };
        state
            .tensors
            .insert("params".to_string(), self.state.params.clone());
        Some(state)
    }

    fn restore_checkpoint_state(&mut self, state: &CallbackState) -> Result<()> {
        let invalid = || Error::model("checkpoint", "invalid best-weights state");
        let best = &state.values["best"];
        self.state = BestWeightsState {
            best: if best.is_null() {
                None
            } else {
                Some(best.as_f64().ok_or_else(invalid)?)
            },
            epoch: state.values["epoch"]
                .as_u64()
                .ok_or_else(invalid)?
                .try_into()
                .map_err(|_| invalid())?,
            params: state.tensors.get("params").cloned().ok_or_else(invalid)?,
        };
        Ok(())
    }
}
