//! Optimizers over the flat parameter buffer. Each file holds one update rule as a plain function
//! over slices; [`Optimizer`] owns the state (step count and per-parameter slots such as Adam's
//! moments) so checkpoints can save and restore it uniformly.

pub mod adam;
pub mod privacy;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::ops::Range;

use serde::{Deserialize, Serialize};

pub use crate::kernels::UpdateRule;
use crate::kernels::{update_piece, WorkerPool};

/// Which update rule, with its hyperparameters (Keras defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Plain gradient descent: `p -= lr * g`.
    Sgd,
    /// Heavy-ball momentum.
    Momentum { momentum: f32 },
    /// Nesterov momentum (Keras' formulation).
    Nesterov { momentum: f32 },
    /// Adam, with decoupled (AdamW) weight decay when `weight_decay > 0`.
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
    /// RMSprop.
    Rmsprop { rho: f32, epsilon: f32 },
}

/// The update rules, without their hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    Momentum,
    Nesterov,
    Adam,
    Rmsprop,
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 5] = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Nesterov,
        OptimizerKind::Adam,
        OptimizerKind::Rmsprop,
    ];

    pub fn name(self) -> &'static str {
        OptimizerConfig::defaults(self).name()
    }
}

impl Default for OptimizerConfig {
    /// Adam with Keras' defaults.
    fn default() -> Self {
        OptimizerConfig::defaults(OptimizerKind::Adam)
    }
}

impl OptimizerConfig {
    /// The rule `kind` with Keras' default hyperparameters: the one place they are written
    /// (`train`, `bench` and `compare` start from them; options override single values).
    pub fn defaults(kind: OptimizerKind) -> Self {
        const MOMENTUM: f32 = 0.9;
        const EPSILON: f32 = 1e-7;
        match kind {
            OptimizerKind::Sgd => OptimizerConfig::Sgd,
            OptimizerKind::Momentum => OptimizerConfig::Momentum { momentum: MOMENTUM },
            OptimizerKind::Nesterov => OptimizerConfig::Nesterov { momentum: MOMENTUM },
            OptimizerKind::Adam => OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: EPSILON,
                weight_decay: 0.0,
            },
            OptimizerKind::Rmsprop => OptimizerConfig::Rmsprop {
                rho: 0.9,
                epsilon: EPSILON,
            },
        }
    }

    /// Adam with Keras' defaults.
    pub fn adam_default() -> Self {
        OptimizerConfig::default()
    }

    pub fn kind(&self) -> OptimizerKind {
        match self {
            OptimizerConfig::Sgd => OptimizerKind::Sgd,
            OptimizerConfig::Momentum { .. } => OptimizerKind::Momentum,
            OptimizerConfig::Nesterov { .. } => OptimizerKind::Nesterov,
            OptimizerConfig::Adam { .. } => OptimizerKind::Adam,
            OptimizerConfig::Rmsprop { .. } => OptimizerKind::Rmsprop,
        }
    }

    /// Keras' default learning rate for the rule: 0.001 for the adaptive ones, 0.01 for the
    /// SGD family.
    pub fn default_learning_rate(&self) -> f32 {
        match self {
            OptimizerConfig::Adam { .. } | OptimizerConfig::Rmsprop { .. } => 0.001,
            OptimizerConfig::Sgd
            | OptimizerConfig::Momentum { .. }
            | OptimizerConfig::Nesterov { .. } => 0.01,
        }
    }

    /// The rule and its hyperparameters, e.g. `momentum (momentum 0.9)`.
    pub fn describe(&self) -> String {
        match *self {
            OptimizerConfig::Sgd => "sgd".to_string(),
            OptimizerConfig::Momentum { momentum } => format!("momentum (momentum {momentum})"),
            OptimizerConfig::Nesterov { momentum } => format!("nesterov (momentum {momentum})"),
            OptimizerConfig::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => {
                let decay = if weight_decay > 0.0 {
                    format!(", decoupled weight decay {weight_decay}")
                } else {
                    String::new()
                };
                format!("adam (beta1 {beta1}, beta2 {beta2}, epsilon {epsilon:e}{decay})")
            }
            OptimizerConfig::Rmsprop { rho, epsilon } => {
                format!("rmsprop (rho {rho}, epsilon {epsilon:e})")
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd => "sgd",
            OptimizerConfig::Momentum { .. } => "momentum",
            OptimizerConfig::Nesterov { .. } => "nesterov",
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::Rmsprop { .. } => "rmsprop",
        }
    }

    /// How many per-parameter state vectors the rule keeps.
    pub fn slot_count(&self) -> usize {
        match self {
            OptimizerConfig::Sgd => 0,
            OptimizerConfig::Momentum { .. }
            | OptimizerConfig::Nesterov { .. }
            | OptimizerConfig::Rmsprop { .. } => 1,
            OptimizerConfig::Adam { .. } => 2,
        }
    }
}

/// An optimizer and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    /// Number of updates applied so far (Adam's bias correction uses it).
    pub steps: u64,
    /// Per-parameter state, each as long as the parameter buffer.
    pub slots: Vec<Vec<f32>>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, parameter_count: usize) -> Self {
        Optimizer {
            config,
            steps: 0,
            slots: vec![vec![0.0; parameter_count]; config.slot_count()],
        }
    }

    /// Applies one update to `params` given the gradient of the mean loss.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], learning_rate: f32) {
        let rule = self.begin_step(learning_rate);
        let mut slots: Vec<&mut [f32]> = self.slots.iter_mut().map(Vec::as_mut_slice).collect();
        update_piece(rule, params, grads, &mut slots);
    }

    /// Counts one more update and returns its rule with the step's scalars, for a caller that
    /// updates the buffer (and the same pieces of every slot) in pieces of its own.
    pub fn begin_step(&mut self, learning_rate: f32) -> UpdateRule {
        let rule = self.next_rule(learning_rate);
        self.steps += 1;
        rule
    }

    /// The rule the next [`Optimizer::begin_step`] with `learning_rate` will return, without
    /// counting the update: for a step that applies part of its update before it is committed.
    pub fn next_rule(&self, learning_rate: f32) -> UpdateRule {
        update_rule(self.config, self.steps + 1, learning_rate)
    }

    /// [`Optimizer::step`] with the buffer split into contiguous parts shared by the threads of
    /// `pool`. Every rule is element-wise and the kernels never fuse multiply-adds, so the result
    /// is bit-identical to `step` whatever the number of threads.
    pub fn step_parallel(
        &mut self,
        pool: &WorkerPool,
        params: &mut [f32],
        grads: &[f32],
        learning_rate: f32,
    ) {
        self.step_parallel_with(pool, params, learning_rate, |range, block| {
            block.copy_from_slice(&grads[range])
        });
    }

    /// [`Optimizer::step_parallel`] with the gradient produced block by block by
    /// `gradient(range, block)`, e.g. summed from per-shard gradients: each block is used while
    /// it is in the L1 cache and the whole gradient is never written out.
    pub fn step_parallel_with(
        &mut self,
        pool: &WorkerPool,
        params: &mut [f32],
        learning_rate: f32,
        gradient: impl Fn(Range<usize>, &mut [f32]) + Sync,
    ) {
        let rule = self.begin_step(learning_rate);
        // One part of the buffer: its range, its parameters and the same part of each slot.
        let run = |range: Range<usize>, params: &mut [f32], slots: &mut [&mut [f32]]| {
            let mut block = [0.0f32; GRADIENT_BLOCK];
            let mut start = 0;
            while start < params.len() {
                let end = (start + GRADIENT_BLOCK).min(params.len());
                let grads = &mut block[..end - start];
                gradient(range.start + start..range.start + end, grads);
                let slot_count = slots.len();
                let mut slot_blocks: [&mut [f32]; 2] = [&mut [], &mut []];
                for (slot_block, slot) in slot_blocks.iter_mut().zip(slots.iter_mut()) {
                    *slot_block = &mut slot[start..end];
                }
                let slot_blocks = &mut slot_blocks[..slot_count];
                update_piece(rule, &mut params[start..end], grads, slot_blocks);
                start = end;
            }
        };
        // The pool cuts the buffers itself (no per-step allocation).
        match self.slots.as_mut_slice() {
            [] => pool.for_each_part_mut([params], |range, [params]| run(range, params, &mut [])),
            [a] => pool.for_each_part_mut([params, a], |range, [params, a]| {
                run(range, params, &mut [a])
            }),
            [a, b] => pool.for_each_part_mut([params, a, b], |range, [params, a, b]| {
                run(range, params, &mut [a, b])
            }),
            _ => unreachable!("optimizers keep at most two slots"),
        }
    }
}

/// Gradient values produced at a time by [`Optimizer::step_parallel_with`] (16 KiB: L1-sized).
const GRADIENT_BLOCK: usize = 4096;

/// The rule of `config` for update number `steps` (1 for the first), with its scalars worked
/// out (Adam's bias-corrected rate). The element-wise rules are Keras' formulas, written once in
/// [`crate::kernels`] (SGD `p -= lr·g`; momentum and Nesterov; RMSprop with ε inside the root;
/// Adam, [`adam::adam`]).
fn update_rule(config: OptimizerConfig, steps: u64, learning_rate: f32) -> UpdateRule {
    match config {
        OptimizerConfig::Sgd => UpdateRule::Sgd { learning_rate },
        OptimizerConfig::Momentum { momentum } => UpdateRule::Momentum {
            learning_rate,
            momentum,
            nesterov: false,
        },
        OptimizerConfig::Nesterov { momentum } => UpdateRule::Momentum {
            learning_rate,
            momentum,
            nesterov: true,
        },
        OptimizerConfig::Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay,
        } => UpdateRule::Adam(
            adam::AdamStep {
                learning_rate,
                beta1,
                beta2,
                epsilon,
                weight_decay,
                step: steps,
            }
            .coefficients(),
        ),
        OptimizerConfig::Rmsprop { rho, epsilon } => UpdateRule::Rmsprop {
            learning_rate,
            rho,
            epsilon,
        },
    }
}
