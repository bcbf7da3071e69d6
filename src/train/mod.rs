//! The training loop and what it reports.

pub mod callbacks;
pub mod checkpointer;
pub mod evaluate;
pub mod interrupt;
pub mod memory;
pub mod metrics;
pub mod progress;
pub mod step;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{epoch_permutation, Dataset};
use crate::error::{Error, Result, Setting};
use crate::kernels::DenormalGuard;
use crate::nn::{Architecture, Mlp};
use crate::optim::schedule::LrSchedule;
use crate::optim::{Optimizer, OptimizerConfig};

pub use evaluate::evaluate;
pub use metrics::{EpochRecord, Evaluation};
pub use progress::{Progress, ProgressMode};
use step::StepEngine;

/// Examples per optimization step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchSize {
    Examples(usize),
    /// The whole training set per step (full-batch gradient descent).
    Full,
}

impl BatchSize {
    /// `32`, or `full`: as it is typed and shown in tables.
    pub fn label(self) -> String {
        match self {
            BatchSize::Examples(n) => n.to_string(),
            BatchSize::Full => "full".to_string(),
        }
    }

    pub fn resolve(self, example_count: usize) -> usize {
        match self {
            BatchSize::Examples(n) => n.min(example_count).max(1),
            BatchSize::Full => example_count.max(1),
        }
    }
}

/// Everything that determines a training run's result. Checkpoints store it whole, so a resumed
/// run continues with exactly these settings (new fields are saved automatically).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub architecture: Architecture,
    pub optimizer: OptimizerConfig,
    /// The base learning rate; `schedule` derives each step's rate from it.
    pub learning_rate: f32,
    pub schedule: LrSchedule,
    pub epochs: usize,
    pub batch_size: BatchSize,
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The Keras tutorial: Adam (lr 0.001), 5 epochs, batch 32.
    fn default() -> Self {
        TrainConfig {
            architecture: Architecture::tutorial(),
            optimizer: OptimizerConfig::default(),
            learning_rate: OptimizerConfig::default().default_learning_rate(),
            schedule: LrSchedule::default(),
            epochs: 5,
            batch_size: BatchSize::Examples(32),
            seed: 42,
        }
    }
}

/// Sums over the steps taken so far in the current epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningMetrics {
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
}

/// What a callback asks the loop to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop training cleanly after this step or epoch (early stopping, an interrupt).
    Stop,
}

/// What a callback needs stored in checkpoints to continue exactly after a resume, e.g. early
/// stopping's best metric and patience counter (`values`) and restore-best's weights (`tensors`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallbackState {
    pub values: serde_json::Value,
    /// Saved as f32 tensors in the checkpoint's data section, bit-exact.
    pub tensors: BTreeMap<String, Vec<f32>>,
}

/// Hooks into the training loop. Every sink of per-epoch metrics (JSON lines, CSV history,
/// checkpoints, early stopping) is a callback fed the same [`EpochRecord`].
pub trait Callback {
    /// After each optimization step; `trainer.step_in_epoch` steps of the current epoch are done.
    fn on_step_end(&mut self, _trainer: &Trainer) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// After each epoch, once its record is in `trainer.history`.
    fn on_epoch_end(&mut self, _trainer: &Trainer, _record: &EpochRecord) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// A stable name under which checkpoints store this callback's state; `None` = stateless.
    fn state_key(&self) -> Option<&'static str> {
        None
    }
    /// The state to checkpoint. It is sampled into `Trainer::callback_state` right after this
    /// callback's `on_epoch_end`, so a checkpoint written by a later callback in the list (put the
    /// checkpointer last) includes this epoch's state.
    fn checkpoint_state(&self) -> Option<CallbackState> {
        None
    }
    /// Called when `fit` starts with the state a resumed checkpoint stored under `state_key`.
    fn restore_checkpoint_state(&mut self, _state: &CallbackState) -> Result<()> {
        Ok(())
    }
}

/// Data held out to measure the model after every epoch (`val_loss`, `val_accuracy`).
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    pub data: &'a Dataset,
    /// Examples per batch when evaluating.
    pub batch_size: usize,
}

/// A training run's state: everything needed to continue it.
pub struct Trainer {
    pub config: TrainConfig,
    pub mlp: Mlp,
    pub params: Vec<f32>,
    /// Threads a step runs on (default: all cores). Results do not depend on it.
    pub threads: usize,
    pub optimizer: Optimizer,
    /// Epochs completed so far.
    pub epoch: usize,
    /// Steps completed in the current (unfinished) epoch.
    pub step_in_epoch: usize,
    /// Running sums of the current epoch, so a run resumed mid-epoch reports the same record.
    pub running: RunningMetrics,
    pub history: Vec<EpochRecord>,
    /// Callbacks' checkpointed state by [`Callback::state_key`] (restored from a checkpoint on resume).
    pub callback_state: BTreeMap<String, CallbackState>,
}

impl Trainer {
    /// A fresh run: parameters initialized from the seed.
    pub fn new(config: TrainConfig) -> Self {
        let mlp = Mlp::new(config.architecture.clone());
        let params = mlp.initial_parameters(config.seed);
        let optimizer = Optimizer::new(config.optimizer, params.len());
        Trainer {
            config,
            mlp,
            params,
            threads: default_threads(),
            optimizer,
            epoch: 0,
            step_in_epoch: 0,
            running: RunningMetrics::default(),
            history: Vec::new(),
            callback_state: BTreeMap::new(),
        }
    }

    /// Runs the remaining epochs on `train`, reporting to `progress` and `callbacks`.
    pub fn fit(
        &mut self,
        train: &Dataset,
        progress: &mut Progress,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<()> {
        self.fit_with_validation(train, None, progress, callbacks)
    }

    /// [`Trainer::fit`], also evaluating on `validation` (if any) after every epoch.
    pub fn fit_with_validation(
        &mut self,
        train: &Dataset,
        validation: Option<Validation>,
        progress: &mut Progress,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<()> {
        if train.is_empty() {
            return Err(Error::setting(
                Setting::Limit,
                "no training examples to train on",
            ));
        }
        let batch_size = self.config.batch_size.resolve(train.len());
        let steps_per_epoch = train.len().div_ceil(batch_size);
        let mut engine = StepEngine::new(&self.mlp, batch_size, self.threads);
        let _flush_denormals = DenormalGuard::new();
        for callback in callbacks.iter_mut() {
            if let Some(state) = callback
                .state_key()
                .and_then(|key| self.callback_state.get(key))
            {
                callback.restore_checkpoint_state(state)?;
            }
        }
        while self.epoch < self.config.epochs {
            let epoch = self.epoch;
            let (schedule, base_rate, epochs) = (
                self.config.schedule,
                self.config.learning_rate,
                self.config.epochs,
            );
            let learning_rate_at = move |step: usize| {
                let global_step = (epoch * steps_per_epoch + step) as u64;
                schedule.learning_rate(base_rate, global_step, steps_per_epoch, epochs)
            };
            // Reported in the epoch's record: the rate of its last step.
            let learning_rate = learning_rate_at(steps_per_epoch - 1);
            let order = epoch_permutation(train.len(), self.config.seed, epoch);
            progress.start_epoch(epoch + 1, steps_per_epoch);
            let started = Instant::now();
            for (step, batch) in order.chunks(batch_size).enumerate() {
                // A resumed run skips the steps its checkpoint already took.
                if step < self.step_in_epoch {
                    continue;
                }
                let global_step = (epoch * steps_per_epoch + step) as u64;
                let (batch_loss, batch_correct) = engine.gradient(
                    &self.mlp,
                    &self.params,
                    train,
                    batch,
                    self.config.seed,
                    global_step,
                );
                if !batch_loss.is_finite() {
                    return Err(Error::NonFinite {
                        epoch: epoch + 1,
                        step: step + 1,
                        value: batch_loss as f32,
                    });
                }
                engine.apply(
                    &mut self.optimizer,
                    &mut self.params,
                    learning_rate_at(step),
                );
                self.running.loss_sum += batch_loss;
                self.running.correct += batch_correct;
                self.running.seen += batch.len();
                progress.update_step(
                    step + 1,
                    self.running.loss_sum / self.running.seen as f64,
                    self.running.correct as f64 / self.running.seen as f64,
                );
                self.step_in_epoch = step + 1;
                if run_callbacks(callbacks, |callback| callback.on_step_end(self))? == Control::Stop
                {
                    return Ok(());
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let RunningMetrics {
                loss_sum,
                correct,
                seen,
            } = std::mem::take(&mut self.running);
            let validated =
                validation.map(|v| evaluate(&self.mlp, &self.params, v.data, v.batch_size));
            let record = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                val_loss: validated.as_ref().map(|v| v.loss),
                val_accuracy: validated.as_ref().map(|v| v.accuracy),
                learning_rate,
                seconds,
                samples_per_second: seen as f64 / seconds.max(1e-9),
            };
            progress.end_epoch(&record);
            self.history.push(record.clone());
            self.epoch += 1;
            self.step_in_epoch = 0;
            let mut control = Control::Continue;
            for callback in callbacks.iter_mut() {
                if callback.on_epoch_end(self, &record)? == Control::Stop {
                    control = Control::Stop;
                }
                if let (Some(key), Some(state)) =
                    (callback.state_key(), callback.checkpoint_state())
                {
                    self.callback_state.insert(key.to_string(), state);
                }
            }
            if control == Control::Stop {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// All cores the OS lets us use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Calls every callback (all of them, even after one asks to stop) and combines their answers.
fn run_callbacks(
    callbacks: &mut [&mut dyn Callback],
    mut call: impl FnMut(&mut dyn Callback) -> Result<Control>,
) -> Result<Control> {
    let mut control = Control::Continue;
    for callback in callbacks.iter_mut() {
        if call(&mut **callback)? == Control::Stop {
            control = Control::Stop;
        }
    }
    Ok(control)
}
