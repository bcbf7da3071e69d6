//! The training step of the one-hidden-layer MLP on several threads: each thread owns a block of
//! hidden units (their columns of W1, their biases, their rows of W2, and the optimizer state of
//! all of these) instead of a part of the batch.
//!
//! With the batch split between threads, both threads read all of W1 in the forward pass, so the
//! update of every W1 cache line has to take it back from the other core, and every shard
//! gradient is read by the thread that updates it; on a VM whose two cores sit on different
//! chiplets that traffic made the second thread nearly useless at batch 32. Here nothing
//! parameter-sized crosses cores: each thread gathers the batch itself, and only the hidden
//! activations (batch × hidden floats) are exchanged for the second layer.
//!
//! Each block's W1 columns and their optimizer state live in the block, contiguous, for the
//! run: kept in W1's rows, the two blocks interleave, and a core's prefetcher reading past the
//! end of its segment of a row pulls in lines the other core writes. [`ColumnEngine::load`]
//! copies them in from the flat buffers and [`ColumnEngine::publish`] back out, whenever
//! anything else is about to read them.
//!
//! Nothing but its own thread reads a block's W1 columns during a step (the first layer's input
//! gradient is never needed), so when the caller passes the step's update rule the backward job
//! updates them row by row as each row of their gradient is complete, while it is in cache: one
//! pass sums every shard's xᵀ·grad h for a row ([`sparse_transposed_matmul`]), then updates it.
//! The step then needs one job fewer: [`ColumnEngine::apply`] is left with W2 and the biases
//! (about 1,400 parameters), which it updates on the calling thread.
//!
//! Both of the first layer's products read only the batch's nonzero pixels, indexed once per
//! shard ([`PixelIndex`]): the same bits as the dense products (see `kernels::sparse`).
//!
//! The arithmetic is that of the sharded step ([`super::step`]) to the bit: the kernels compute
//! every product element as the same chain in `k` order whatever columns they are given, dropout
//! masks come from the same per-shard streams, the second layer is computed whole (each thread
//! assembles the hidden layer), and shard gradients are summed in shard order. Results therefore
//! do not depend on which path runs or on the thread count.

use std::ops::Range;

use ndarray::ArrayView2;

use super::shards::{largest_shards, shard_count, split_range, sum_in_order, StepBatch};
use crate::data::{index_batch, prefetch_images};
use crate::kernels::pool::even_part;
use crate::kernels::{
    matmul, relu_backward, relu_forward, sparse_matmul, sparse_transposed_matmul, sum_rows_into,
    update_piece, GradientUpdate, PixelIndex, WorkerPool, MAX_SPARSE_SHARDS,
};
use crate::nn::dense::{rows_view, rows_view_mut, Dense};
use crate::nn::dropout::{dropout_backward, dropout_forward_columns, MAX_COLUMN_DROPOUT_WIDTH};
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::Mlp;
use crate::optim::{Optimizer, UpdateRule};
use crate::rng::{stream, Stream};

/// Largest batch the column step takes: every thread gathers the whole batch ([batch, 784]).
pub const MAX_BATCH: usize = 256;
/// Most blocks of hidden units (threads) a step is split into.
pub const MAX_PARTS: usize = 8;
/// Narrowest block: one AVX-512 vector of columns (block boundaries fall on multiples of it).
const MIN_PART_WIDTH: usize = 16;

/// The column-split step's buffers and results; see the module documentation.
pub struct ColumnEngine {
    first: Dense,
    second: Dense,
    dropout: f32,
    /// Largest batch (rows) the buffers hold.
    capacity: usize,
    parts: Vec<HiddenBlock>,
    backward: Vec<BlockBackward>,
    /// Shards of the last step's batch.
    active_shards: usize,
    /// Whether the last step's backward jobs already updated W1 (see the module documentation).
    updated_w1: bool,
    /// Whether the blocks hold the run's W1 and its optimizer state ([`ColumnEngine::load`]).
    loaded: bool,
}

/// The forward state of one block of hidden units.
struct HiddenBlock {
    columns: Range<usize>,
    /// The batch's labels, and each shard's nonzero pixels, which the first layer's products
    /// read instead of the images. Every block indexes the whole batch (reading the pixels costs
    /// less than pulling another core's copy).
    labels: Vec<u8>,
    nonzeros: Vec<PixelIndex>,
    /// The block's activations after ReLU and dropout, and its dropout mask: [capacity, width].
    hidden: Vec<f32>,
    mask: Vec<f32>,
}

/// The backward state of one block, and its W1 columns, which its backward job updates.
struct BlockBackward {
    /// The run's copy of W1's columns [inputs, width], and of the same elements of each
    /// optimizer slot (see the module documentation).
    weights: Vec<f32>,
    weight_slots: Vec<Vec<f32>>,
    /// One shard's whole hidden layer, assembled from every block: [capacity, hidden].
    hidden: Vec<f32>,
    /// [capacity, outputs]
    logits: Vec<f32>,
    grad_logits: Vec<f32>,
    /// [capacity, width]
    grad_hidden: Vec<f32>,
    /// The block's weight gradients: W1's columns [inputs, width], then W2's rows [width,
    /// outputs]. Shards accumulate into them: the kernels add a product to what `c` holds after
    /// forming it, so this is the sharded step's (g0 + g1) + … to the bit.
    weight_grads: Vec<f32>,
    /// The block's bias gradients per shard, b1 [width] then b2 [outputs] (a row sum adds row
    /// by row, so shards are summed afterwards, in order).
    bias_grads: Vec<Vec<f32>>,
    loss_sum: f64,
    correct: usize,
}

/// One block's b1, W2 rows and b2 (or the same elements of an optimizer slot) in the flat
/// buffer.
struct BlockSegments<'a> {
    b1: &'a mut [f32],
    /// [width, outputs]
    w2: &'a mut [f32],
    /// The first block updates the output bias; the others hold an empty slice.
    b2: &'a mut [f32],
}

/// What one thread updates: its block of the parameters and of each optimizer slot.
struct BlockUpdate<'a> {
    /// W1's columns and their optimizer state, and the block's gradients.
    block: &'a mut BlockBackward,
    params: BlockSegments<'a>,
    slots: [Option<BlockSegments<'a>>; 2],
}

impl ColumnEngine {
    /// An engine for batches of up to `batch_size` rows on `threads` threads, when the network
    /// is a one-hidden-layer MLP and the split pays (at least two blocks); None otherwise.
    pub fn new(mlp: &Mlp, batch_size: usize, threads: usize) -> Option<Self> {
        let [first, second] = mlp.layers.as_slice() else {
            return None;
        };
        let hidden = first.outputs;
        let parts = threads.min(MAX_PARTS).min(hidden / MIN_PART_WIDTH);
        let contiguous = first.bias.start == first.weights.end
            && second.weights.start == first.bias.end
            && second.bias.start == second.weights.end;
        if mlp.stack.is_some()
            || parts < 2
            || batch_size > MAX_BATCH
            || hidden > MAX_COLUMN_DROPOUT_WIDTH
            || !contiguous
        {
            return None;
        }
        let capacity = batch_size.max(1);
        let (inputs, outputs) = (first.inputs, second.outputs);
        let (shards, shard_rows) = largest_shards(capacity);
        let blocks: Vec<HiddenBlock> = (0..parts)
            .map(|part| {
                let columns = even_part(hidden, parts, part);
                let width = columns.len();
                HiddenBlock {
                    columns,
                    labels: vec![0; capacity],
                    nonzeros: vec![PixelIndex::new(shard_rows, inputs); shards],
                    hidden: vec![0.0; capacity * width],
                    mask: vec![0.0; capacity * width],
                }
            })
            .collect();
        let backward = blocks
            .iter()
            .map(|block| {
                let width = block.columns.len();
                BlockBackward {
                    weights: vec![0.0; inputs * width],
                    weight_slots: Vec::new(),
                    hidden: vec![0.0; capacity * hidden],
                    logits: vec![0.0; capacity * outputs],
                    grad_logits: vec![0.0; capacity * outputs],
                    grad_hidden: vec![0.0; capacity * width],
                    weight_grads: vec![0.0; (inputs + outputs) * width],
                    bias_grads: vec![vec![0.0; width + outputs]; shards],
                    loss_sum: 0.0,
                    correct: 0,
                }
            })
            .collect();
        Some(ColumnEngine {
            first: first.clone(),
            second: second.clone(),
            dropout: mlp.architecture.dropout,
            capacity,
            parts: blocks,
            backward,
            active_shards: 0,
            updated_w1: false,
            loaded: false,
        })
    }

    /// Threads the engine can keep busy (one per block).
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Whether the blocks hold the run's state ([`ColumnEngine::load`]): every step must then
    /// run here.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Copies W1's columns and the same elements of every optimizer slot into the blocks, which
    /// hold them from now on: the flat buffers' W1 is stale after the next step until
    /// [`ColumnEngine::publish`].
    pub fn load(&mut self, params: &[f32], slots: &[Vec<f32>]) {
        let (w1, hidden) = (self.first.weights.clone(), self.first.outputs);
        for (block, part) in self.backward.iter_mut().zip(&self.parts) {
            let columns = part.columns.clone();
            gather_columns(
                &params[w1.clone()],
                hidden,
                columns.clone(),
                &mut block.weights,
            );
            block.weight_slots = slots
                .iter()
                .map(|slot| {
                    let mut part = vec![0.0; block.weights.len()];
                    gather_columns(&slot[w1.clone()], hidden, columns.clone(), &mut part);
                    part
                })
                .collect();
        }
        self.loaded = true;
    }

    /// Writes the blocks' W1 and optimizer state back into the flat buffers.
    pub fn publish(&self, params: &mut [f32], slots: &mut [Vec<f32>]) {
        if !self.loaded {
            return;
        }
        let (w1, hidden) = (self.first.weights.clone(), self.first.outputs);
        for (block, part) in self.backward.iter().zip(&self.parts) {
            let columns = part.columns.clone();
            scatter_columns(
                &block.weights,
                hidden,
                columns.clone(),
                &mut params[w1.clone()],
            );
            for (slot, part) in slots.iter_mut().zip(&block.weight_slots) {
                scatter_columns(part, hidden, columns.clone(), &mut slot[w1.clone()]);
            }
        }
    }

    /// Computes the step's gradient, block by block on the pool, and with `update_w1` also
    /// updates W1 with that rule (see the module documentation; not if the loss is not finite).
    /// Returns (loss sum, correct).
    pub fn gradient(
        &mut self,
        pool: &WorkerPool,
        step: &StepBatch,
        update_w1: Option<UpdateRule>,
    ) -> (f64, usize) {
        let rows = step.indices.len();
        assert!(
            (1..=self.capacity).contains(&rows),
            "column step: a batch of {rows} rows in an engine made for up to {}",
            self.capacity
        );
        let shards = shard_count(rows);
        self.active_shards = shards;
        let (first, second, dropout) = (&self.first, &self.second, self.dropout);
        let backward = &self.backward;
        pool.for_each_mut_affine(&mut self.parts, |index, block| {
            block.forward(first, &backward[index].weights, dropout, step, shards)
        });
        let blocks = &self.parts;
        pool.for_each_mut_affine(&mut self.backward, |index, backward| {
            backward.run(
                &blocks[index],
                blocks,
                (first, second),
                dropout,
                step,
                shards,
                update_w1,
            );
        });
        // Every block computes the same loss (from the whole hidden layer), so all of them
        // updated W1 or none did; `apply` updates it otherwise.
        let loss_sum = self.backward[0].loss_sum;
        self.updated_w1 = update_w1.is_some() && loss_sum.is_finite();
        (loss_sum, self.backward[0].correct)
    }

    /// Applies `optimizer` with the last step's gradient, each thread updating its own block (or,
    /// when the step already updated W1, the calling thread updating W2 and the biases).
    pub fn apply(
        &mut self,
        pool: &WorkerPool,
        optimizer: &mut Optimizer,
        params: &mut [f32],
        learning_rate: f32,
    ) {
        let rule = optimizer.begin_step(learning_rate);
        let mut slot_blocks: [[Option<BlockSegments>; MAX_PARTS]; 2] = Default::default();
        for (blocks, slot) in slot_blocks.iter_mut().zip(optimizer.slots.iter_mut()) {
            *blocks = self.split_blocks(slot);
        }
        let mut param_blocks = self.split_blocks(params);
        let (shards, inputs) = (self.active_shards, self.first.inputs);
        let mut items: [Option<BlockUpdate>; MAX_PARTS] = Default::default();
        for (index, (item, block)) in items.iter_mut().zip(&mut self.backward).enumerate() {
            *item = param_blocks[index].take().map(|params| BlockUpdate {
                block,
                params,
                slots: [slot_blocks[0][index].take(), slot_blocks[1][index].take()],
            });
        }
        let items = &mut items[..self.parts.len()];
        if self.updated_w1 {
            for item in items.iter_mut().flatten() {
                item.update_rest(rule, shards, inputs);
            }
        } else {
            pool.for_each_mut_affine(items, |_, item| {
                if let Some(item) = item {
                    item.block.update_w1(rule, inputs);
                    item.update_rest(rule, shards, inputs);
                }
            });
        }
    }

    /// The last step's gradient in the flat parameter layout, written to `grads`.
    pub fn batch_gradient(&self, grads: &mut [f32]) {
        let (inputs, outputs, hidden) =
            (self.first.inputs, self.second.outputs, self.first.outputs);
        for (block, backward) in self.parts.iter().zip(&self.backward) {
            let (columns, width) = (block.columns.clone(), block.columns.len());
            for (row, block_row) in backward.weight_grads[..inputs * width]
                .chunks_exact(width)
                .enumerate()
            {
                let start = self.first.weights.start + row * hidden;
                grads[start + columns.start..start + columns.end].copy_from_slice(block_row);
            }
            let w2_rows = self.second.weights.start + columns.start * outputs
                ..self.second.weights.start + columns.end * outputs;
            grads[w2_rows].copy_from_slice(&backward.weight_grads[inputs * width..]);
            let bias_grads = &backward.bias_grads[..self.active_shards];
            let sum = |local: Range<usize>, out: &mut [f32]| {
                sum_in_order(bias_grads.iter().map(|g| &g[local.clone()]), out)
            };
            sum(
                0..width,
                &mut grads[self.first.bias.clone()][columns.clone()],
            );
            if columns.start == 0 {
                sum(width..width + outputs, &mut grads[self.second.bias.clone()]);
            }
        }
    }

    /// Each block's b1, W2 rows and b2 in a parameter-sized buffer (parameters or an optimizer
    /// slot); W1's columns live in the blocks.
    fn split_blocks<'a>(&self, buffer: &'a mut [f32]) -> [Option<BlockSegments<'a>>; MAX_PARTS] {
        let (hidden, outputs) = (self.first.outputs, self.second.outputs);
        let rest = &mut buffer[self.first.bias.start..];
        let (mut b1, rest) = rest.split_at_mut(hidden);
        let (mut w2, rest) = rest.split_at_mut(hidden * outputs);
        let mut b2 = Some(&mut rest[..outputs]);
        let mut blocks: [Option<BlockSegments>; MAX_PARTS] = Default::default();
        for (block, slot) in self.parts.iter().zip(blocks.iter_mut()) {
            let width = block.columns.len();
            let (b1_block, b1_rest) = std::mem::take(&mut b1).split_at_mut(width);
            b1 = b1_rest;
            let (w2_block, w2_rest) = std::mem::take(&mut w2).split_at_mut(width * outputs);
            w2 = w2_rest;
            *slot = Some(BlockSegments {
                b1: b1_block,
                w2: w2_block,
                b2: b2.take().unwrap_or_default(),
            });
        }
        blocks
    }
}

/// `block` [rows, columns.len()] = `matrix` [rows, width][.., columns]
fn gather_columns(matrix: &[f32], width: usize, columns: Range<usize>, block: &mut [f32]) {
    let rows = matrix.chunks_exact(width);
    for (block_row, row) in block.chunks_exact_mut(columns.len().max(1)).zip(rows) {
        block_row.copy_from_slice(&row[columns.clone()]);
    }
}

/// `matrix` [rows, width][.., columns] = `block` [rows, columns.len()]
fn scatter_columns(block: &[f32], width: usize, columns: Range<usize>, matrix: &mut [f32]) {
    let rows = matrix.chunks_exact_mut(width);
    for (block_row, row) in block.chunks_exact(columns.len().max(1)).zip(rows) {
        row[columns.clone()].copy_from_slice(block_row);
    }
}

impl HiddenBlock {
    /// Indexes the batch's nonzero pixels and computes this block's hidden units, shard by shard
    /// (each shard's dropout stream is the one the sharded step uses).
    /// x: [batch, 784] · W1[:, columns]: [784, width] -> hidden: [batch, width]
    fn forward(
        &mut self,
        first: &Dense,
        weights: &[f32],
        dropout: f32,
        step: &StepBatch,
        shards: usize,
    ) {
        let rows = step.indices.len();
        let (inputs, hidden) = (first.inputs, first.outputs);
        let (columns, width) = (self.columns.clone(), self.columns.len());
        // Every block reads the whole batch, so each core fetches all of the next one.
        prefetch_images(step.dataset, step.next_indices);
        let w1 = ArrayView2::from_shape((inputs, width), weights)
            .expect("the block's W1 fills its buffer");
        let bias = &step.params[first.bias.clone()][columns.clone()];
        for shard in 0..shards {
            let range = split_range(rows, shards, shard);
            let nonzeros = &mut self.nonzeros[shard];
            let labels = &mut self.labels[range.clone()];
            index_batch(step.dataset, &step.indices[range.clone()], nonzeros, labels);
            let h = &mut self.hidden[range.start * width..range.end * width];
            for row in h.chunks_exact_mut(width) {
                row.copy_from_slice(bias);
            }
            sparse_matmul(
                nonzeros,
                w1.view(),
                &mut rows_view_mut(h, range.len(), width),
                1.0,
            );
            relu_forward(h);
            if dropout > 0.0 {
                let mask = &mut self.mask[range.start * width..range.end * width];
                let mut rng = stream(step.seed, Stream::Dropout, step.global_step, shard as u64);
                dropout_forward_columns(h, mask, hidden, columns.clone(), dropout, &mut rng);
            }
        }
    }
}

impl BlockBackward {
    /// The second layer (whole), the loss, and the gradients of `own`'s block, shard by shard;
    /// with `update_w1` (and a finite loss), also the update of the block's W1 columns.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        own: &HiddenBlock,
        blocks: &[HiddenBlock],
        (first, second): (&Dense, &Dense),
        dropout: f32,
        step: &StepBatch,
        shards: usize,
        update_w1: Option<UpdateRule>,
    ) {
        let rows = step.indices.len();
        let grad_scale = 1.0 / rows as f32;
        let (inputs, hidden, outputs) = (first.inputs, first.outputs, second.outputs);
        let (columns, width) = (own.columns.clone(), own.columns.len());
        let w2_rows = second.weights.start + columns.start * outputs
            ..second.weights.start + columns.end * outputs;
        let w2 = ArrayView2::from_shape((width, outputs), &step.params[w2_rows])
            .expect("W2's rows fill their range");
        (self.loss_sum, self.correct) = (0.0, 0);
        for shard in 0..shards {
            let range = split_range(rows, shards, shard);
            let n = range.len();
            let own_rows = range.start * width..range.end * width;
            // The shard's whole hidden layer: [n, hidden], from every block's columns.
            let whole = &mut self.hidden[..n * hidden];
            for block in blocks {
                let block_width = block.columns.len();
                let block_rows = &block.hidden[range.start * block_width..range.end * block_width];
                for (row, block_row) in whole
                    .chunks_exact_mut(hidden)
                    .zip(block_rows.chunks_exact(block_width))
                {
                    row[block.columns.clone()].copy_from_slice(block_row);
                }
            }
            let logits = &mut self.logits[..n * outputs];
            second.forward(
                step.params,
                rows_view(whole, n, hidden),
                rows_view_mut(logits, n, outputs),
            );
            let grad_logits = &mut self.grad_logits[..n * outputs];
            let labels = &own.labels[range.clone()];
            let (loss, correct) =
                softmax_cross_entropy(logits, labels, outputs, grad_scale, Some(grad_logits));
            self.loss_sum += loss;
            self.correct += correct;

            // The first shard writes W2's gradient, the others add to it.
            let beta = if shard == 0 { 0.0 } else { 1.0 };
            let grad_w2 = &mut self.weight_grads[inputs * width..];
            let (grad_b1, grad_b2) = self.bias_grads[shard].split_at_mut(width);
            let grad_y = rows_view(&self.grad_logits, n, outputs);
            let h = &own.hidden[own_rows.clone()];
            // h: [n, width]ᵀ · grad_y: [n, outputs] -> grad W2[columns]: [width, outputs]
            let grad_w2_view = &mut rows_view_mut(grad_w2, width, outputs);
            matmul(rows_view(h, n, width).t(), grad_y, grad_w2_view, beta);
            sum_rows_into(&self.grad_logits[..n * outputs], grad_b2, false);
            // grad_y: [n, outputs] · W2[columns]ᵀ: [outputs, width] -> grad h: [n, width]
            let grad_h = &mut self.grad_hidden[own_rows.clone()];
            matmul(grad_y, w2.t(), &mut rows_view_mut(grad_h, n, width), 0.0);
            if dropout > 0.0 {
                dropout_backward(&own.mask[own_rows], grad_h);
            }
            relu_backward(h, grad_h);
            sum_rows_into(grad_h, grad_b1, false);
        }
        // x_s: [n_s, 784]ᵀ · grad h_s: [n_s, width], summed over the shards in order -> grad
        // W1[:, columns]: [784, width], each row written once; with the update, W1's row follows
        // as soon as its gradient is complete.
        let grad_w1 = &mut rows_view_mut(&mut self.weight_grads[..inputs * width], inputs, width);
        let mut operands = [(&own.nonzeros[0], rows_view(&[], 0, width)); MAX_SPARSE_SHARDS];
        for (shard, operand) in operands.iter_mut().enumerate().take(shards) {
            let range = split_range(rows, shards, shard);
            let grad_h = &self.grad_hidden[range.start * width..range.end * width];
            *operand = (&own.nonzeros[shard], rows_view(grad_h, range.len(), width));
        }
        let operands = &operands[..shards];
        match update_w1.filter(|_| self.loss_sum.is_finite()) {
            Some(rule) => {
                let (weights, mut slots, slot_count) =
                    w1_state(&mut self.weights, &mut self.weight_slots);
                let mut update = GradientUpdate {
                    rule,
                    params: weights,
                    slots: &mut slots[..slot_count],
                };
                sparse_transposed_matmul(operands, grad_w1, 0.0, Some(&mut update));
            }
            None => sparse_transposed_matmul(operands, grad_w1, 0.0, None),
        }
    }
}

impl BlockBackward {
    /// Updates the block's W1 columns (contiguous here) with their gradient.
    fn update_w1(&mut self, rule: UpdateRule, inputs: usize) {
        let width = self.weights.len() / inputs.max(1);
        let (weights, mut slots, slot_count) = w1_state(&mut self.weights, &mut self.weight_slots);
        update_piece(
            rule,
            weights,
            &self.weight_grads[..inputs * width],
            &mut slots[..slot_count],
        );
    }
}

/// A block's W1 columns with their optimizer slots as the update kernels take them (the first
/// `slot_count` of the array).
fn w1_state<'a>(
    weights: &'a mut [f32],
    weight_slots: &'a mut [Vec<f32>],
) -> (&'a mut [f32], [&'a mut [f32]; 2], usize) {
    let slot_count = weight_slots.len().min(2);
    let mut slots: [&mut [f32]; 2] = [&mut [], &mut []];
    for (slot, block_slot) in slots.iter_mut().zip(weight_slots.iter_mut()) {
        *slot = block_slot;
    }
    (weights, slots, slot_count)
}

impl BlockUpdate<'_> {
    /// Updates the block's rows of W2, then b1 and b2, with their gradients (the bias gradients
    /// summed over `shards` in order).
    fn update_rest(&mut self, rule: UpdateRule, shards: usize, inputs: usize) {
        let width = self.params.b1.len();
        let slot_count = self.slots.iter().flatten().count();
        let grad_w2 = &self.block.weight_grads[inputs * width..];
        let bias_grads = &self.block.bias_grads[..shards];
        // W2's rows, then b1 and b2 (contiguous in the flat buffer).
        let mut bias_sum = [0.0f32; MAX_COLUMN_DROPOUT_WIDTH];
        let segments = [
            (Segment::W2, None),
            (Segment::B1, Some(0)),
            (Segment::B2, Some(width)),
        ];
        for (segment, bias_offset) in segments {
            let params = self.params.segment(segment);
            let mut slots: [&mut [f32]; 2] = [&mut [], &mut []];
            for (slot, segments) in slots.iter_mut().zip(self.slots.iter_mut().flatten()) {
                *slot = segments.segment(segment);
            }
            let grad = match bias_offset {
                None => grad_w2,
                Some(offset) => {
                    let local = offset..offset + params.len();
                    let sum = &mut bias_sum[..params.len()];
                    sum_in_order(bias_grads.iter().map(|g| &g[local.clone()]), sum);
                    sum
                }
            };
            update_piece(rule, params, grad, &mut slots[..slot_count]);
        }
    }
}

/// The contiguous segments of a block in the flat buffer.
#[derive(Clone, Copy)]
enum Segment {
    B1,
    W2,
    B2,
}

impl BlockSegments<'_> {
    fn segment(&mut self, segment: Segment) -> &mut [f32] {
        match segment {
            Segment::B1 => self.b1,
            Segment::W2 => self.w2,
            Segment::B2 => self.b2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;

    #[test]
    fn every_shard_the_column_split_takes_runs_the_sparse_kernels_in_the_sharded_step_too() {
        // Same kernels on both steps, so the same bits on every thread count by construction.
        assert!(largest_shards(MAX_BATCH).1 <= crate::nn::SPARSE_INPUT_ROWS);
    }

    #[test]
    fn the_column_split_runs_only_where_it_applies() {
        let mlp = Mlp::new(Architecture::tutorial());
        assert!(ColumnEngine::new(&mlp, 32, 1).is_none(), "one thread");
        assert!(
            ColumnEngine::new(&mlp, MAX_BATCH + 1, 2).is_none(),
            "large batch"
        );
        assert_eq!(
            ColumnEngine::new(&mlp, 32, 64).map(|e| e.parts()),
            Some(MAX_PARTS)
        );
        let deep = Architecture {
            hidden: vec![64, 32],
            ..Architecture::tutorial()
        };
        assert!(
            ColumnEngine::new(&Mlp::new(deep), 32, 2).is_none(),
            "two hidden layers"
        );
        let narrow = Architecture {
            hidden: vec![31],
            ..Architecture::tutorial()
        };
        assert!(
            ColumnEngine::new(&Mlp::new(narrow), 32, 2).is_none(),
            "one block only"
        );
        assert!(
            ColumnEngine::new(&Mlp::new(Architecture::cnn()), 32, 2).is_none(),
            "a stack"
        );
    }
}
