//! The training loop and what it reports.

pub mod callbacks;
pub mod checkpointer;
pub mod column_step;
pub mod evaluate;
pub mod interrupt;
pub mod memory;
pub mod metrics;
pub mod progress;
pub mod recipe;
pub mod shards;
pub mod step;
#[cfg(test)]
mod step_agreement;
#[cfg(test)]
mod step_allocations;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{epoch_permutation, Dataset};
use crate::error::{Error, Result, Setting};
use crate::kernels::DenormalGuard;
use crate::nn::{Architecture, Mlp};
use crate::optim::privacy::sampling::poisson_batch;
use crate::optim::privacy::{DpConfig, PrivacyGuarantee, RunLength};
use crate::optim::schedule::LrSchedule;
use crate::optim::{Optimizer, OptimizerConfig};

pub use evaluate::evaluate;
pub use metrics::{EpochRecord, Evaluation};
pub use progress::{Progress, ProgressMode};
pub use recipe::Recipe;
use shards::{poisson_shard_capacity, shard_buffers};
use step::{PrivateStep, StepBatch, StepEngine};

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
    /// DP-SGD (per-example clipping, noise, Poisson sampling of rate batch/N); `None` = ordinary
    /// training. Absent from files written before private training existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<DpConfig>,
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
            privacy: None,
        }
    }
}

impl TrainConfig {
    /// The run's length as the privacy accountant counts it, on `example_count` examples.
    pub fn run_length(&self, example_count: usize) -> RunLength {
        let (sampling_rate, steps_per_epoch) = self.sampling(example_count);
        RunLength {
            sampling_rate,
            steps_per_epoch,
            epochs: self.epochs,
        }
    }

    /// (sampling rate q = batch / N, steps per epoch) on `example_count` examples. Private runs
    /// sample each step's batch with rate q; ordinary runs go through a permutation in batches.
    pub fn sampling(&self, example_count: usize) -> (f64, usize) {
        let batch_size = self.batch_size.resolve(example_count);
        (
            batch_size as f64 / example_count.max(1) as f64,
            example_count.div_ceil(batch_size),
        )
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

/// When a callback runs among the others, each step and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallbackPhase {
    /// Sinks and monitors (JSON lines, CSV history, early stopping, best weights).
    Observe,
    /// What saves the run's state (checkpoints): after every observer, so the state it saves is
    /// this epoch's.
    Persist,
}

/// Hooks into the training loop. Every sink of per-epoch metrics (JSON lines, CSV history,
/// checkpoints, early stopping) is a callback fed the same [`EpochRecord`].
pub trait Callback {
    /// After each optimization step; `trainer.step_in_epoch` steps of the current epoch are done.
    fn on_step_end(&mut self, _trainer: &Trainer) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// Whether this step's `on_step_end` reads `trainer.params` or the optimizer's slots. Between
    /// such reads the training step may keep part of them in its own layout (and write them
    /// back only when asked), so a callback that does not read them says so; the default is
    /// the safe answer. At the end of an epoch they are always up to date.
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        true
    }
    /// After each epoch, once its record is in `trainer.history`.
    fn on_epoch_end(&mut self, _trainer: &Trainer, _record: &EpochRecord) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// When it runs; `fit` runs every [`CallbackPhase::Observe`] callback before any
    /// [`CallbackPhase::Persist`] one, in the order given within a phase.
    fn phase(&self) -> CallbackPhase {
        CallbackPhase::Observe
    }
    /// A stable name under which checkpoints store this callback's state; `None` = stateless.
    fn state_key(&self) -> Option<&'static str> {
        None
    }
    /// The state to checkpoint. It is sampled into `Trainer::callback_state` right after this
    /// callback's `on_epoch_end`, so a checkpoint written in the [`CallbackPhase::Persist`] phase
    /// includes this epoch's state.
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

    /// The privacy guarantee of the steps taken so far on a training set of `example_count`
    /// examples; `None` for an ordinary run.
    pub fn privacy_guarantee(&self, example_count: usize) -> Option<PrivacyGuarantee> {
        let privacy = self.config.privacy?;
        let (sampling_rate, steps_per_epoch) = self.config.sampling(example_count);
        let steps = (self.epoch * steps_per_epoch + self.step_in_epoch) as u64;
        Some(privacy.guarantee(sampling_rate, steps))
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
        let (sampling_rate, steps_per_epoch) = self.config.sampling(train.len());
        let mut batch: Vec<u32> = Vec::with_capacity(batch_size);
        callbacks.sort_by_key(|callback| callback.phase());
        let capacity = match self.config.privacy {
            Some(_) => poisson_shard_capacity(batch_size),
            None => shard_buffers(batch_size).1,
        };
        let mut engine =
            StepEngine::with_shard_capacity(&self.mlp, batch_size, self.threads, capacity);
        if self.config.privacy.is_none() {
            // From here on the engine may hold part of the state: published below before
            // anything else reads `self.params` or `self.optimizer`.
            engine.load_state(&self.params, &self.optimizer);
        }
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
            // Private runs draw a Poisson sample per step instead of walking a permutation.
            let order = match self.config.privacy {
                None => epoch_permutation(train.len(), self.config.seed, epoch),
                Some(_) => Vec::new(),
            };
            progress.start_epoch(epoch + 1, steps_per_epoch);
            let started = Instant::now();
            // The permutation's rows for a step of the epoch.
            let rows_of_step =
                |step: usize| &order[step * batch_size..((step + 1) * batch_size).min(order.len())];
            for step in self.step_in_epoch..steps_per_epoch {
                // A resumed run starts after the steps its checkpoint already took.
                let global_step = (epoch * steps_per_epoch + step) as u64;
                match self.config.privacy {
                    None => {
                        batch.clear();
                        batch.extend_from_slice(rows_of_step(step));
                    }
                    Some(_) => poisson_batch(
                        train.len(),
                        sampling_rate,
                        self.config.seed,
                        global_step,
                        &mut batch,
                    ),
                }
                // A permutation says which rows the next step of the epoch reads.
                let next_indices = match self.config.privacy {
                    None if step + 1 < steps_per_epoch => rows_of_step(step + 1),
                    _ => &[],
                };
                let step_batch = StepBatch {
                    mlp: &self.mlp,
                    params: &self.params,
                    dataset: train,
                    indices: &batch,
                    next_indices,
                    seed: self.config.seed,
                    global_step,
                };
                let (batch_loss, batch_correct) = match self.config.privacy {
                    None => engine.gradient_then_update(
                        &step_batch,
                        self.optimizer.next_rule(learning_rate_at(step)),
                    ),
                    Some(privacy) => engine.private_gradient(
                        &step_batch,
                        PrivateStep {
                            clip_norm: privacy.clip_norm,
                            noise_multiplier: privacy.noise_multiplier,
                            expected_batch: sampling_rate * train.len() as f64,
                        },
                    ),
                };
                if !batch_loss.is_finite() {
                    engine.publish_state(&mut self.params, &mut self.optimizer);
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
                // max(1): a Poisson sample can be empty.
                let seen = self.running.seen.max(1) as f64;
                progress.update_step(
                    step + 1,
                    self.running.loss_sum / seen,
                    self.running.correct as f64 / seen,
                );
                self.step_in_epoch = step + 1;
                if callbacks.iter().any(|c| c.reads_state_after_step(self)) {
                    engine.publish_state(&mut self.params, &mut self.optimizer);
                }
                let control = run_callbacks(callbacks, |callback| callback.on_step_end(self));
                if !matches!(control, Ok(Control::Continue)) {
                    engine.publish_state(&mut self.params, &mut self.optimizer);
                    return control.map(|_| ());
                }
            }
            engine.publish_state(&mut self.params, &mut self.optimizer);
            let seconds = started.elapsed().as_secs_f64();
            let RunningMetrics {
                loss_sum,
                correct,
                seen,
            } = std::mem::take(&mut self.running);
            let validated =
                validation.map(|v| evaluate(&self.mlp, &self.params, v.data, v.batch_size));
            let seen = seen.max(1);
            self.step_in_epoch = steps_per_epoch;
            let epsilon = self
                .privacy_guarantee(train.len())
                .map(|guarantee| guarantee.epsilon);
            let record = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                epsilon,
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
