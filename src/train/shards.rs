//! How a step's batch is cut into shards, and the order shard gradients are summed in: both
//! depend only on the batch size, never on the thread count, which is what makes every thread
//! count give bit-identical results (see [`super::step`] and [`super::column_step`]).

use std::ops::Range;

use crate::data::Dataset;
use crate::kernels::{add_assign, add_into};
use crate::nn::Mlp;

/// A shard has at least this many rows (below that, per-shard overhead dominates).
pub const MIN_SHARD_ROWS: usize = 8;
/// Rows per shard the split aims for once a batch is large enough: each shard costs one extra
/// pass over the parameter-sized gradient buffer, worth it only for enough rows.
pub const TARGET_SHARD_ROWS: usize = 64;
/// Batches are split into at least two shards when they are big enough, so two cores share even
/// the default batch of 32.
pub const MIN_SHARDS: usize = 2;
/// At most this many shards per batch (the shard gradient buffers are the memory cost), which is
/// also the most threads a step can use.
pub const MAX_SHARDS: usize = 8;
/// A shard larger than this is processed in chunks of this many rows, accumulating gradients,
/// so full-batch training never materializes activations for the whole dataset.
pub const CHUNK_ROWS: usize = 256;

/// How many shards a batch of `batch_len` rows is split into: a function of the batch size only.
/// 32 → 2 shards of 16, 128 → 2 of 64, 256 → 4, ≥ 512 → 8, below 16 → 1.
pub fn shard_count(batch_len: usize) -> usize {
    (batch_len / TARGET_SHARD_ROWS)
        .clamp(MIN_SHARDS, MAX_SHARDS)
        .min(batch_len / MIN_SHARD_ROWS)
        .max(1)
}

/// How a batch of `batch_len` rows is split: contiguous, near-equal ranges.
pub fn shard_ranges(batch_len: usize) -> Vec<Range<usize>> {
    (0..shard_count(batch_len))
        .map(|shard| shard_range(batch_len, shard))
        .collect()
}

/// Shard `shard` of [`shard_ranges`], computed without allocating (the first
/// `batch_len % shard_count` shards have one row more).
pub fn shard_range(batch_len: usize, shard: usize) -> Range<usize> {
    split_range(batch_len, shard_count(batch_len), shard)
}

/// Part `shard` of `batch_len` rows cut into `shard_count` contiguous, near-equal ranges.
pub fn split_range(batch_len: usize, shard_count: usize, shard: usize) -> Range<usize> {
    let (base, extra) = (batch_len / shard_count, batch_len % shard_count);
    let start = shard * base + shard.min(extra);
    start..start + base + usize::from(shard < extra)
}

/// The buffers a [`StepEngine`] for batches of up to `batch_size` rows allocates: (shards, rows
/// per shard workspace). Each shard has one workspace and one parameter-sized gradient buffer.
pub fn shard_buffers(batch_size: usize) -> (usize, usize) {
    let (shard_count, rows) = largest_shards(batch_size);
    (shard_count, rows.clamp(1, CHUNK_ROWS))
}

/// Over every batch of 1 to `batch_size` rows (a short last batch too): the most shards, and
/// the most rows in one shard. A shorter batch can have fewer, larger shards (16 rows: two
/// shards of 8; 9 rows: one of 9), and a shard must fit its buffers whole, or it would be
/// processed in chunks and summed differently than on other thread counts.
pub fn largest_shards(batch_size: usize) -> (usize, usize) {
    // From this many rows on, every batch has MAX_SHARDS shards, so the largest has the most
    // rows: only smaller batches need looking at one by one.
    let always_most = TARGET_SHARD_ROWS * MAX_SHARDS;
    let batch_size = batch_size.max(1);
    let small = (1..=batch_size.min(always_most)).fold((1, 1), |(most_shards, most_rows), rows| {
        let shards = shard_count(rows);
        // The first shard is the largest (see `shard_ranges`).
        (
            most_shards.max(shards),
            most_rows.max(rows.div_ceil(shards)),
        )
    });
    if batch_size > always_most {
        (MAX_SHARDS, small.1.max(batch_size.div_ceil(MAX_SHARDS)))
    } else {
        small
    }
}

/// Shards of a private step: Poisson batches of `expected` rows on average vary in size, and
/// are split by the expected size, not the actual one (at most one shard per row), so that a
/// batch of 250 rows is not cut into 3 shards instead of 4 (two threads would then wait for the
/// third shard). Depends only on the run's settings and the batch, never on threads.
pub fn poisson_shard_count(expected: usize, batch_len: usize) -> usize {
    shard_count(expected).min(batch_len).max(1)
}

/// Rows per shard workspace for private training: enough for the largest shard of any batch up
/// to expected + 4·√expected + 1 rows (so nearly every shard runs in one chunk: a shard of 85
/// rows in a workspace of 64 would run as 64 + 21, and small matrix products are slow), at most
/// `2 · CHUNK_ROWS`.
pub fn poisson_shard_capacity(expected: usize) -> usize {
    let largest = expected + (4.0 * (expected as f64).sqrt()).ceil() as usize + 1;
    largest
        .div_ceil(shard_count(expected))
        .clamp(shard_buffers(expected).1, 2 * CHUNK_ROWS)
}

/// One optimization step's batch and what its gradient depends on.
#[derive(Debug, Clone, Copy)]
pub struct StepBatch<'a> {
    pub mlp: &'a Mlp,
    pub params: &'a [f32],
    pub dataset: &'a Dataset,
    /// The batch's rows (dataset indices).
    pub indices: &'a [u32],
    /// The next step's rows, if known: the step prefetches their images into the cache of the
    /// cores that will gather them (a hint: empty means nothing to prefetch).
    pub next_indices: &'a [u32],
    /// The run's seed and the step's number: they name the step's dropout (and noise) streams.
    pub seed: u64,
    pub global_step: u64,
}

/// out = ((s0 + s1) + s2) + …: the order every sum of shard gradients uses (0 for none).
pub fn sum_in_order<'a>(mut sources: impl Iterator<Item = &'a [f32]>, out: &mut [f32]) {
    match (sources.next(), sources.next()) {
        (None, _) => out.fill(0.0),
        (Some(only), None) => out.copy_from_slice(only),
        (Some(first), Some(second)) => {
            add_into(out, first, second);
            for source in sources {
                add_assign(out, source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_shards_cover_every_shorter_batch() {
        for batch_size in [1, 7, 16, 32, 100, 128, 511, 512, 513, 1000, 60_000] {
            let (most_shards, most_rows) = largest_shards(batch_size);
            for rows in 1..=batch_size {
                let shards = shard_count(rows);
                assert!(
                    shards <= most_shards,
                    "{rows} of {batch_size}: {shards} shards"
                );
                assert!(
                    shard_range(rows, 0).len() <= most_rows,
                    "{rows} of {batch_size}: a shard of {} rows",
                    shard_range(rows, 0).len()
                );
            }
        }
        // 16 rows are two shards of 8, but 9 rows are one shard of 9.
        assert_eq!(largest_shards(16), (2, 15));
        assert_eq!(largest_shards(usize::MAX).0, MAX_SHARDS);
    }

    #[test]
    fn shards_depend_on_batch_size_only_and_cover_the_batch() {
        for batch in [1, 7, 16, 31, 32, 33, 100, 128, 256, 1000, 60_000] {
            let ranges = shard_ranges(batch);
            assert!(!ranges.is_empty() && ranges.len() <= MAX_SHARDS);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().map(|r| r.end), Some(batch));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            if batch >= 2 * MIN_SHARD_ROWS {
                assert!(ranges.iter().all(|r| r.len() >= MIN_SHARD_ROWS), "{batch}");
            }
        }
        assert_eq!(shard_count(32), 2);
        assert_eq!(shard_count(128), 2);
        assert_eq!(shard_count(60_000), MAX_SHARDS);
    }

    #[test]
    fn shard_buffers_fit_the_largest_shard_up_to_a_chunk() {
        for batch in [1, 7, 16, 31, 32, 33, 100, 128, 256, 1000, 60_000] {
            let ranges = shard_ranges(batch);
            let (count, capacity) = shard_buffers(batch);
            // Private runs' workspaces hold at least as many rows.
            assert!(poisson_shard_capacity(batch) >= capacity);
            assert_eq!(count, ranges.len());
            // The largest shard of this batch or of any shorter one (see `largest_shards`).
            assert!(capacity >= ranges[0].len().min(CHUNK_ROWS), "{batch}");
            assert_eq!(capacity, largest_shards(batch).1.min(CHUNK_ROWS), "{batch}");
        }
        assert_eq!(shard_buffers(usize::MAX), (MAX_SHARDS, CHUNK_ROWS));
    }

    #[test]
    fn poisson_batches_split_by_the_expected_size_and_fit_one_chunk_up_to_four_standard_deviations()
    {
        // Expected 256: 4 shards of a batch of up to 321 rows; expected 2048: 8 shards.
        // (A short batch of 191 rows has two shards of 96, more than 321 rows in four.)
        assert_eq!(poisson_shard_capacity(256), 96);
        assert_eq!(poisson_shard_capacity(2048), 2048_usize.div_ceil(8) + 23);
        for expected in [1, 20, 256, 2048] {
            let capacity = poisson_shard_capacity(expected);
            let largest = expected + (4.0 * (expected as f64).sqrt()).ceil() as usize + 1;
            for rows in 1..=largest {
                let shards = poisson_shard_count(expected, rows);
                assert_eq!(
                    shards,
                    shard_count(expected).min(rows),
                    "{expected}: {rows}"
                );
                let first = split_range(rows, shards, 0);
                assert!(first.len() <= capacity, "{expected}: {rows}");
            }
        }
        assert_eq!(poisson_shard_capacity(60_000), 2 * CHUNK_ROWS);
    }
}
