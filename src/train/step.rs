//! One optimization step: the batch is split into a fixed set of shards, each shard's gradient
//! is computed on its own, and the shard gradients are summed in shard order. The split and the
//! order depend only on the batch size, never on the thread count, so results are bit-identical
//! however many threads compute the shards.

use std::ops::Range;

use crate::data::{gather_normalized, Dataset};
use crate::nn::{Mlp, Workspace};
use crate::rng::{stream, Stream};

/// Rows per shard at least; smaller shards cost more in overhead than they gain in parallelism.
pub const MIN_SHARD_ROWS: usize = 16;
/// At most this many shards per batch (the shard gradient buffers are the memory cost).
pub const MAX_SHARDS: usize = 8;
/// A shard larger than this is processed in chunks of this many rows, accumulating gradients,
/// so full-batch training never materializes activations for the whole dataset.
pub const CHUNK_ROWS: usize = 256;

/// How a batch of `batch_len` rows is split: contiguous, near-equal ranges.
pub fn shard_ranges(batch_len: usize) -> Vec<Range<usize>> {
    let shard_count = batch_len.div_ceil(MIN_SHARD_ROWS).clamp(1, MAX_SHARDS);
    let base = batch_len / shard_count;
    let extra = batch_len % shard_count;
    let mut start = 0;
    (0..shard_count)
        .map(|shard| {
            let len = base + usize::from(shard < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// What one shard needs to compute its gradient.
pub struct ShardJob<'a> {
    pub mlp: &'a Mlp,
    pub params: &'a [f32],
    pub dataset: &'a Dataset,
    /// The shard's rows (dataset indices).
    pub indices: &'a [u32],
    /// 1 / (rows in the whole batch): shard gradients then sum to the batch-mean gradient.
    pub grad_scale: f32,
    pub seed: u64,
    pub global_step: u64,
    pub shard_index: usize,
}

/// Computes one shard's gradient into `grads` (overwritten). Returns (loss sum, correct).
pub fn compute_shard(job: &ShardJob, workspace: &mut Workspace, grads: &mut [f32]) -> (f64, usize) {
    grads.fill(0.0);
    let mut dropout_rng = stream(
        job.seed,
        Stream::Dropout,
        job.global_step,
        job.shard_index as u64,
    );
    let inputs = job.mlp.architecture.inputs;
    let (mut loss_sum, mut correct) = (0.0, 0);
    for chunk in job.indices.chunks(workspace.capacity) {
        let rows = chunk.len();
        gather_normalized(
            job.dataset,
            chunk,
            &mut workspace.inputs[..rows * inputs],
            &mut workspace.labels[..rows],
        );
        let (chunk_loss, chunk_correct) = job.mlp.train_chunk(
            job.params,
            workspace,
            rows,
            job.grad_scale,
            &mut dropout_rng,
            grads,
        );
        loss_sum += chunk_loss;
        correct += chunk_correct;
    }
    (loss_sum, correct)
}

/// Per-shard buffers, allocated once for the largest batch.
pub struct StepBuffers {
    pub workspaces: Vec<Workspace>,
    pub shard_grads: Vec<Vec<f32>>,
    /// The batch-mean gradient, summed from the shards.
    pub grads: Vec<f32>,
}

impl StepBuffers {
    pub fn new(mlp: &Mlp, batch_size: usize) -> Self {
        let shards = shard_ranges(batch_size);
        let capacity = shards[0].len().clamp(1, CHUNK_ROWS);
        let parameter_count = mlp.parameter_count();
        StepBuffers {
            workspaces: (0..shards.len()).map(|_| mlp.workspace(capacity)).collect(),
            shard_grads: vec![vec![0.0; parameter_count]; shards.len()],
            grads: vec![0.0; parameter_count],
        }
    }
}

/// Computes the batch-mean gradient of `batch` into `buffers.grads`. Returns (loss sum, correct).
pub fn batch_gradient(
    mlp: &Mlp,
    params: &[f32],
    dataset: &Dataset,
    batch: &[u32],
    seed: u64,
    global_step: u64,
    buffers: &mut StepBuffers,
) -> (f64, usize) {
    let grad_scale = 1.0 / batch.len() as f32;
    let (mut loss_sum, mut correct) = (0.0, 0);
    let shards = shard_ranges(batch.len());
    for (shard_index, range) in shards.iter().enumerate() {
        let job = ShardJob {
            mlp,
            params,
            dataset,
            indices: &batch[range.clone()],
            grad_scale,
            seed,
            global_step,
            shard_index,
        };
        let (shard_loss, shard_correct) = compute_shard(
            &job,
            &mut buffers.workspaces[shard_index],
            &mut buffers.shard_grads[shard_index],
        );
        loss_sum += shard_loss;
        correct += shard_correct;
    }
    sum_shard_gradients(&buffers.shard_grads[..shards.len()], &mut buffers.grads);
    (loss_sum, correct)
}

/// grads = Σ shard_grads, always added in shard order.
pub fn sum_shard_gradients(shard_grads: &[Vec<f32>], grads: &mut [f32]) {
    grads.copy_from_slice(&shard_grads[0]);
    for shard in &shard_grads[1..] {
        for (g, &s) in grads.iter_mut().zip(shard) {
            *g += s;
        }
    }
}
