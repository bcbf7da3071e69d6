//! One optimization step: the batch is split into a fixed set of shards, each shard's gradient
//! is computed on its own (in parallel, on a pool of persistent worker threads), and the shard
//! gradients are summed in shard order. The split and the order depend only on the batch size,
//! never on the thread count, so results are bit-identical however many threads compute the
//! shards.

use std::ops::Range;

use super::column_step::ColumnEngine;
pub use super::shards::StepBatch;
use super::shards::{poisson_shard_count, shard_buffers, shard_count, split_range, sum_in_order};
use crate::data::{gather_normalized, prefetch_images};
use crate::kernels::{add_assign, WorkerPool};
use crate::nn::{GradientSink, Mlp, Workspace};
use crate::optim::privacy::noise::fill_gaussian;
use crate::optim::{Optimizer, UpdateRule};
use crate::rng::{stream, Stream};

/// What one shard needs to compute its gradient.
pub struct ShardJob<'a> {
    /// The step, narrowed to the shard's rows.
    pub rows: StepBatch<'a>,
    /// 1 / (rows in the whole batch): shard gradients then sum to the batch-mean gradient.
    pub grad_scale: f32,
    pub shard_index: usize,
    /// Private training: clip every example's gradient to this norm (before `grad_scale`).
    pub clip_norm: Option<f32>,
}

/// Computes one shard's gradient into `grads` (overwritten). Returns (loss sum, correct).
/// Dropout masks come from a stream named by (seed, step, shard): independent of which thread
/// runs the shard, and reproducible on resume.
pub fn compute_shard(job: &ShardJob, workspace: &mut Workspace, grads: &mut [f32]) -> (f64, usize) {
    let step = &job.rows;
    let mut dropout_rng = stream(
        step.seed,
        Stream::Dropout,
        step.global_step,
        job.shard_index as u64,
    );
    let inputs = step.mlp.architecture.inputs;
    let (mut loss_sum, mut correct) = (0.0, 0);
    for (chunk_index, chunk) in step.indices.chunks(workspace.capacity).enumerate() {
        let rows = chunk.len();
        gather_normalized(
            step.dataset,
            chunk,
            &mut workspace.inputs[..rows * inputs],
            &mut workspace.labels[..rows],
        );
        if chunk_index == 0 {
            prefetch_images(step.dataset, step.next_indices);
        }
        let gradient = GradientSink {
            grads: &mut *grads,
            scale: job.grad_scale,
            accumulate: chunk_index > 0,
        };
        let (mlp, params, rng) = (step.mlp, step.params, &mut dropout_rng);
        let (chunk_loss, chunk_correct) = match job.clip_norm {
            Some(clip) => mlp.train_chunk_clipped(params, workspace, rows, clip, rng, gradient),
            None => mlp.train_chunk(params, workspace, rows, rng, gradient),
        };
        loss_sum += chunk_loss;
        correct += chunk_correct;
    }
    if step.indices.is_empty() {
        grads.fill(0.0);
    }
    (loss_sum, correct)
}

/// One shard's buffers and results.
struct Shard {
    workspace: Workspace,
    grads: Vec<f32>,
    loss_sum: f64,
    correct: usize,
}

impl Shard {
    fn new(mlp: &Mlp, capacity: usize, parameter_count: usize) -> Shard {
        Shard {
            workspace: mlp.workspace(capacity),
            grads: vec![0.0; parameter_count],
            loss_sum: 0.0,
            correct: 0,
        }
    }
}

/// Computes steps for one training run: the worker threads (created once, with the engine) and
/// every buffer a step needs (allocated once for the largest batch), so steps never allocate
/// large buffers or start threads.
pub struct StepEngine {
    pool: WorkerPool,
    shards: Vec<Shard>,
    /// Shards used by the last [`StepEngine::gradient`] call.
    active_shards: usize,
    /// Private training: the step's Gaussian noise, [parameters] (kept between steps).
    noise: Vec<f32>,
    /// Whether the last step was private (its gradient includes `noise`).
    noisy: bool,
    /// The one-hidden-layer MLP's step on several threads: hidden units split between threads
    /// (bit-identical to the sharded step; see [`ColumnEngine`]).
    columns: Option<ColumnEngine>,
    /// Whether the last step ran on `columns`.
    columns_ran: bool,
}

/// Parameters per block of noise: each block has its own random stream, so the noise depends on
/// (seed, step) only, never on how many threads draw it.
pub const NOISE_BLOCK: usize = 16 * 1024;

/// What makes a step private: per-example clipping and Gaussian noise (DP-SGD).
#[derive(Debug, Clone, Copy)]
pub struct PrivateStep {
    /// C: each example's gradient is clipped to this norm.
    pub clip_norm: f32,
    /// σ: the noise's standard deviation is σ·C.
    pub noise_multiplier: f64,
    /// The sum of clipped gradients plus noise is divided by this (q·N, fixed, so that the
    /// divisor reveals nothing about the sampled batch).
    pub expected_batch: f64,
}

impl StepEngine {
    /// An engine for batches of up to `batch_size` rows, on `threads` threads (the caller's
    /// included). More threads than shards would idle, so at most `shard_count` are started.
    pub fn new(mlp: &Mlp, batch_size: usize, threads: usize) -> Self {
        let (_, capacity) = shard_buffers(batch_size);
        StepEngine::with_shard_capacity(mlp, batch_size, threads, capacity)
    }

    /// [`StepEngine::new`] with shard workspaces of `capacity` rows (private training:
    /// [`super::shards::poisson_shard_capacity`]).
    pub fn with_shard_capacity(
        mlp: &Mlp,
        batch_size: usize,
        threads: usize,
        capacity: usize,
    ) -> Self {
        let (shard_count, _) = shard_buffers(batch_size);
        let parameter_count = mlp.parameter_count();
        let columns = ColumnEngine::new(mlp, batch_size, threads);
        let useful_threads = shard_count.max(columns.as_ref().map_or(1, ColumnEngine::parts));
        StepEngine {
            pool: WorkerPool::new(threads.clamp(1, useful_threads)),
            shards: (0..shard_count)
                .map(|_| Shard::new(mlp, capacity, parameter_count))
                .collect(),
            active_shards: 0,
            noise: Vec::new(),
            noisy: false,
            columns,
            columns_ran: false,
        }
    }

    /// Whether steps split hidden units between threads (after [`StepEngine::load_state`]).
    pub fn splits_columns(&self) -> bool {
        self.columns.is_some()
    }

    /// Hands the run's state to the engine for non-private steps: the column-split step keeps
    /// each thread's W1 columns and their optimizer state in its own contiguous block. From the
    /// next step on, `params` and `optimizer` hold a stale W1 until
    /// [`StepEngine::publish_state`]. Without this call every step is sharded.
    pub fn load_state(&mut self, params: &[f32], optimizer: &Optimizer) {
        if let Some(columns) = &mut self.columns {
            columns.load(params, &optimizer.slots);
        }
    }

    /// Writes the state the engine holds back into `params` and `optimizer`: before anything
    /// else reads them.
    pub fn publish_state(&self, params: &mut [f32], optimizer: &mut Optimizer) {
        if let Some(columns) = &self.columns {
            columns.publish(params, &mut optimizer.slots);
        }
    }

    /// Threads the engine runs on.
    pub fn threads(&self) -> usize {
        self.pool.thread_count()
    }

    /// Computes the shard gradients of `step`'s batch (their sum is the batch-mean gradient; see
    /// [`StepEngine::apply`] and [`StepEngine::batch_gradient`]). Returns (loss sum, correct).
    pub fn gradient(&mut self, step: &StepBatch) -> (f64, usize) {
        self.gradient_updating(step, None)
    }

    /// [`StepEngine::gradient`] for a step that [`StepEngine::apply`] will finish with `rule`
    /// (the optimizer's [`Optimizer::next_rule`]): the column-split step updates W1 with it in
    /// the same jobs (unless the loss is not finite), saving a job per step. Results are the
    /// same bits as `gradient` then `apply`.
    pub fn gradient_then_update(&mut self, step: &StepBatch, rule: UpdateRule) -> (f64, usize) {
        self.gradient_updating(step, Some(rule))
    }

    fn gradient_updating(&mut self, step: &StepBatch, rule: Option<UpdateRule>) -> (f64, usize) {
        if let Some(columns) = self.columns.as_mut().filter(|c| c.is_loaded()) {
            self.noisy = false;
            self.columns_ran = true;
            return columns.gradient(&self.pool, step, rule);
        }
        let grad_scale = 1.0 / step.indices.len() as f32;
        let shards = shard_count(step.indices.len());
        self.shard_gradients(step, shards, grad_scale, None)
    }

    /// [`StepEngine::gradient`] for DP-SGD: the sum of clipped per-example gradients over the
    /// (Poisson-sampled) batch, divided by the expected batch size, plus Gaussian noise of
    /// standard deviation σ·C / expected batch drawn from (seed, step).
    pub fn private_gradient(&mut self, step: &StepBatch, private: PrivateStep) -> (f64, usize) {
        let grad_scale = (1.0 / private.expected_batch) as f32;
        let expected = private.expected_batch.round() as usize;
        let shards = poisson_shard_count(expected, step.indices.len());
        let result = self.shard_gradients(step, shards, grad_scale, Some(private.clip_norm));
        let std_dev =
            private.noise_multiplier * f64::from(private.clip_norm) / private.expected_batch;
        self.draw_noise(step.params.len(), std_dev, step.seed, step.global_step);
        result
    }

    /// Fills the noise buffer with N(0, std_dev²) per parameter, block by block in parallel.
    fn draw_noise(&mut self, parameters: usize, std_dev: f64, seed: u64, global_step: u64) {
        // Every element is overwritten: no clearing between steps.
        self.noise.resize(parameters, 0.0);
        self.noisy = true;
        let mut blocks: Vec<&mut [f32]> = self.noise.chunks_mut(NOISE_BLOCK).collect();
        self.pool.for_each_mut(&mut blocks, |block_index, block| {
            let mut rng = stream(seed, Stream::DpNoise, global_step, block_index as u64);
            fill_gaussian(block, std_dev, &mut rng);
        });
    }

    fn shard_gradients(
        &mut self,
        step: &StepBatch,
        shard_count: usize,
        grad_scale: f32,
        clip_norm: Option<f32>,
    ) -> (f64, usize) {
        assert!(
            !self.columns.as_ref().is_some_and(ColumnEngine::is_loaded),
            "a sharded step while the column-split step holds the run's W1"
        );
        self.noisy = false;
        self.columns_ran = false;
        let batch = step.indices;
        // A Poisson-sampled batch can exceed the size the engine was made for: add shards.
        while self.shards.len() < shard_count {
            let first = &self.shards[0];
            let shard = Shard::new(step.mlp, first.workspace.capacity, first.grads.len());
            self.shards.push(shard);
        }
        self.active_shards = shard_count;
        let shards = &mut self.shards[..shard_count];
        self.pool.for_each_mut(shards, |shard_index, shard| {
            let job = ShardJob {
                rows: StepBatch {
                    indices: &batch[split_range(batch.len(), shard_count, shard_index)],
                    next_indices: &step.next_indices
                        [split_range(step.next_indices.len(), shard_count, shard_index)],
                    ..*step
                },
                grad_scale,
                shard_index,
                clip_norm,
            };
            (shard.loss_sum, shard.correct) =
                compute_shard(&job, &mut shard.workspace, &mut shard.grads);
        });
        self.shards[..shard_count]
            .iter()
            .fold((0.0, 0), |(loss, correct), shard| {
                (loss + shard.loss_sum, correct + shard.correct)
            })
    }

    /// Applies `optimizer` to `params` with the gradient of the last [`StepEngine::gradient`]:
    /// the shard gradients are summed block by block inside the optimizer's parallel pass.
    pub fn apply(&mut self, optimizer: &mut Optimizer, params: &mut [f32], learning_rate: f32) {
        if let (true, Some(columns)) = (self.columns_ran, &mut self.columns) {
            columns.apply(&self.pool, optimizer, params, learning_rate);
            return;
        }
        let shards = &self.shards[..self.active_shards];
        let noise: &[f32] = if self.noisy { &self.noise } else { &[] };
        optimizer.step_parallel_with(&self.pool, params, learning_rate, |range, block| {
            sum_shard_gradients(shards, range.clone(), block);
            if !noise.is_empty() {
                add_assign(block, &noise[range]);
            }
        });
    }

    /// The gradient of the last [`StepEngine::gradient`] (or [`StepEngine::private_gradient`],
    /// noise included) call, written to `grads`.
    pub fn batch_gradient(&self, grads: &mut [f32]) {
        if let (true, Some(columns)) = (self.columns_ran, &self.columns) {
            columns.batch_gradient(grads);
            return;
        }
        sum_shard_gradients(&self.shards[..self.active_shards], 0..grads.len(), grads);
        if self.noisy {
            add_assign(grads, &self.noise);
        }
    }
}

/// out = Σ shard gradients over `range`, always added in shard order (((g0 + g1) + g2) + …).
fn sum_shard_gradients(shards: &[Shard], range: Range<usize>, out: &mut [f32]) {
    sum_in_order(shards.iter().map(|shard| &shard.grads[range.clone()]), out);
}
