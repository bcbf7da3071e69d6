//! The first layer's two products with the image batch, reading only its nonzero pixels.
//!
//! An MNIST digit lights about 150 of its 784 pixels, and the 16 images of a shard about 410
//! between them, so a dense product with the batch multiplies by zero most of the time. Leaving
//! those terms out changes no bit: a dense kernel's chain `acc = x·w + acc` starts at +0, and with
//! `x = 0` it returns `acc` itself (+0 plus a zero of either sign is +0). Each element here is the
//! chain of its nonzero terms in `k` order, as in [`super::matmul`], so both paths of the training
//! step (sharded and column-split) agree bit for bit with each other and with the dense kernels.
//!
//! [`SparseRows`] indexes a batch's nonzeros twice, by row for x·W and by column (pixel) for
//! xᵀ·g; it is built once per shard and read by both products.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::elementwise::rule_body;
use super::{backend, Backend, GradientUpdate};

/// Columns of `c` whose chains run side by side (eight 256-bit or four 512-bit accumulators,
/// enough to keep the FMA units busy past their latency).
const CHUNK: usize = 64;

/// The nonzero elements of a row-major [rows, cols] matrix, by row and by column, each list in
/// index order. Buffers are sized for `capacity` rows up front: indexing allocates nothing.
#[derive(Debug, Clone)]
pub struct SparseRows {
    cols: usize,
    capacity: usize,
    rows: usize,
    /// Row r's entries are `row_start[r]..row_start[r + 1]` of `row_col` / `row_value`.
    row_start: Vec<u32>,
    row_col: Vec<u32>,
    row_value: Vec<f32>,
    /// Column k's `col_count[k]` entries start at `k * capacity` of `col_row` / `col_value`.
    col_count: Vec<u32>,
    col_row: Vec<u32>,
    col_value: Vec<f32>,
}

impl SparseRows {
    /// An empty index for up to `capacity` rows of `cols` columns.
    pub fn new(capacity: usize, cols: usize) -> Self {
        let entries = capacity * cols;
        assert!(
            u32::try_from(entries).is_ok(),
            "SparseRows: {capacity} × {cols} entries do not fit a u32 index"
        );
        SparseRows {
            cols,
            capacity,
            rows: 0,
            row_start: vec![0; capacity + 1],
            // Eight entries of slack: a run's nonzeros are stored as a whole vector.
            row_col: vec![0; entries + 8],
            row_value: vec![0.0; entries + 8],
            col_count: vec![0; cols],
            col_row: vec![0; entries],
            col_value: vec![0.0; entries],
        }
    }

    /// Bytes [`SparseRows::new`] allocates for `capacity` rows of `cols` columns.
    pub fn bytes_for(capacity: usize, cols: usize) -> u64 {
        let entries = capacity as u64 * cols as u64;
        // Row starts, column counts, and (column or row, value) pairs by row and by column.
        4 * ((capacity as u64 + 1) + cols as u64 + 2 * (entries + 8) + 2 * entries)
    }

    /// Bytes the buffers really hold (their allocated capacities).
    pub fn allocated_bytes(&self) -> u64 {
        let words = self.row_start.capacity()
            + self.row_col.capacity()
            + self.row_value.capacity()
            + self.col_count.capacity()
            + self.col_row.capacity()
            + self.col_value.capacity();
        4 * words as u64
    }

    /// Rows indexed by the last [`SparseRows::index`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Nonzero elements indexed by the last [`SparseRows::index`].
    pub fn nonzeros(&self) -> usize {
        self.row_start[self.rows] as usize
    }

    /// Indexes the nonzeros of `x`: [rows, cols] (NaN counts as nonzero).
    pub fn index(&mut self, x: &[f32], rows: usize) {
        assert!(
            rows <= self.capacity && x.len() >= rows * self.cols,
            "SparseRows::index: {rows} rows in an index made for {} (or too little data)",
            self.capacity
        );
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(index: &mut SparseRows, x: &[f32], rows: usize) {
            index.index_body(x, rows, |run, first, cols, values| {
                // SAFETY: AVX2 is enabled on this function; `run` holds eight floats and
                // `cols` and `values` at least eight slots each (checked by `index_body`).
                unsafe { compact_avx2(run, first, cols, values) }
            })
        }
        match backend() {
            // SAFETY: `backend()` only returns a backend the CPU supports (AVX-512 implies AVX2).
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 | Backend::Avx2 => unsafe { avx2(self, x, rows) },
            _ => self.index_body(x, rows, compact),
        }
    }

    /// Row by row, each run of eight pixels compacted by `compact8` (which returns how many
    /// nonzeros it stored), then each column's list filled from the rows in order.
    #[inline(always)]
    fn index_body(
        &mut self,
        x: &[f32],
        rows: usize,
        compact8: impl Fn(&[f32; 8], u32, &mut [u32], &mut [f32]) -> usize,
    ) {
        let (cols, capacity) = (self.cols, self.capacity);
        self.rows = rows;
        // Plain slices, so the compiler knows the stores below do not touch the vectors.
        let row_start = &mut self.row_start[..];
        let (row_col, row_value) = (&mut self.row_col[..], &mut self.row_value[..]);
        let col_count = &mut self.col_count[..];
        let (col_row, col_value) = (&mut self.col_row[..], &mut self.col_value[..]);
        let mut count = 0usize;
        for (r, row) in x[..rows * cols].chunks_exact(cols.max(1)).enumerate() {
            row_start[r] = count as u32;
            let runs = row.chunks_exact(8);
            let tail = runs.remainder();
            for (run_index, run) in runs.enumerate() {
                let run: &[f32; 8] = run.try_into().expect("eight pixels");
                let first = (run_index * 8) as u32;
                count += compact8(
                    run,
                    first,
                    &mut row_col[count..count + 8],
                    &mut row_value[count..count + 8],
                );
            }
            let first = cols - tail.len();
            for (t, &value) in tail.iter().enumerate() {
                if value != 0.0 {
                    row_col[count] = (first + t) as u32;
                    row_value[count] = value;
                    count += 1;
                }
            }
        }
        row_start[rows] = count as u32;
        col_count.fill(0);
        for r in 0..rows {
            let entries = row_start[r] as usize..row_start[r + 1] as usize;
            for (&k, &value) in row_col[entries.clone()].iter().zip(&row_value[entries]) {
                let k = k as usize;
                let slot = k * capacity + col_count[k] as usize;
                col_row[slot] = r as u32;
                col_value[slot] = value;
                col_count[k] += 1;
            }
        }
    }

    fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.row_start[r] as usize..self.row_start[r + 1] as usize;
        (&self.row_col[range.clone()], &self.row_value[range])
    }

    fn col(&self, k: usize) -> (&[u32], &[f32]) {
        let start = k * self.capacity;
        let range = start..start + self.col_count[k] as usize;
        (&self.col_row[range.clone()], &self.col_value[range])
    }
}

/// Stores the nonzeros of `run` (pixels `first..first + 8`) and their columns at the start of
/// `cols` and `values`; returns how many.
fn compact(run: &[f32; 8], first: u32, cols: &mut [u32], values: &mut [f32]) -> usize {
    let mut count = 0;
    for (t, &value) in run.iter().enumerate() {
        if value != 0.0 {
            cols[count] = first + t as u32;
            values[count] = value;
            count += 1;
        }
    }
    count
}

/// For each mask of eight lanes, the set lanes in order (then zeros): the permutation that
/// packs a vector's selected lanes to its front.
#[cfg(target_arch = "x86_64")]
static PACK_LANES: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut count) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][count] = lane as u32;
                count += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// [`compact`] without branches: one compare, one lane permutation, two vector stores.
///
/// # Safety
/// AVX2 is available; `cols` and `values` hold at least eight elements.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn compact_avx2(run: &[f32; 8], first: u32, cols: &mut [u32], values: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(cols.len() >= 8 && values.len() >= 8);
    let v = _mm256_loadu_ps(run.as_ptr());
    let nonzero = _mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps());
    let mask = _mm256_movemask_ps(nonzero) as usize;
    let lanes = _mm256_loadu_si256(PACK_LANES[mask].as_ptr().cast());
    _mm256_storeu_ps(values.as_mut_ptr(), _mm256_permutevar8x32_ps(v, lanes));
    let columns = _mm256_add_epi32(lanes, _mm256_set1_epi32(first as i32));
    _mm256_storeu_si256(cols.as_mut_ptr().cast(), columns);
    mask.count_ones() as usize
}

/// `x·w + acc`, fused where the backend's dense products fuse it.
#[inline(always)]
fn multiply_add<const FUSED: bool>(x: f32, w: f32, acc: f32) -> f32 {
    if FUSED {
        x.mul_add(w, acc)
    } else {
        acc + x * w
    }
}

/// `out = acc` or `out += acc`, for a whole chunk (unrolled, the accumulators stay in registers).
#[inline(always)]
fn finish_chunk(out: &mut [f32], acc: &[f32; CHUNK], accumulate: bool) {
    let out: &mut [f32; CHUNK] = out.try_into().expect("CHUNK elements");
    if accumulate {
        for t in 0..CHUNK {
            out[t] += acc[t];
        }
    } else {
        *out = *acc;
    }
}

/// c = x · b (+ c with `accumulate`): x: [rows, k] sparse · b: [k, n] -> c: [rows, n], b and c
/// dense row-major.
#[inline(always)]
fn rows_times<const FUSED: bool>(
    x: &SparseRows,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    for r in 0..x.rows {
        let (ks, values) = x.row(r);
        let c_row = &mut c[r * n..(r + 1) * n];
        let mut j = 0;
        while j < n {
            let width = (n - j).min(CHUNK);
            let mut acc = [0.0f32; CHUNK];
            if width == CHUNK {
                for (&k, &value) in ks.iter().zip(values) {
                    let b_row: &[f32; CHUNK] = b[k as usize * n + j..][..CHUNK]
                        .try_into()
                        .expect("CHUNK elements");
                    for t in 0..CHUNK {
                        acc[t] = multiply_add::<FUSED>(value, b_row[t], acc[t]);
                    }
                }
                finish_chunk(&mut c_row[j..j + CHUNK], &acc, accumulate);
                j += CHUNK;
                continue;
            } else {
                for (&k, &value) in ks.iter().zip(values) {
                    let b_row = &b[k as usize * n + j..][..width];
                    for (a, &w) in acc.iter_mut().zip(b_row) {
                        *a = multiply_add::<FUSED>(value, w, *a);
                    }
                }
            }
            for (out, &sum) in c_row[j..j + width].iter_mut().zip(&acc) {
                *out = if accumulate { *out + sum } else { sum };
            }
            j += width;
        }
    }
}

/// c = xᵀ · g (+ c with `accumulate`): x: [rows, k] sparse, g: [rows, n] -> c: [k, n], then, with
/// `update`, the optimizer step on each finished row of c (the parameters' gradient).
#[inline(always)]
fn transposed_times<const FUSED: bool>(
    x: &SparseRows,
    g: &[f32],
    n: usize,
    c: &mut [f32],
    accumulate: bool,
    mut update: Option<&mut GradientUpdate>,
) {
    for k in 0..x.cols {
        let (rows, values) = x.col(k);
        let c_row = &mut c[k * n..(k + 1) * n];
        let mut j = 0;
        while j < n {
            let width = (n - j).min(CHUNK);
            let mut acc = [0.0f32; CHUNK];
            if width == CHUNK {
                for (&r, &value) in rows.iter().zip(values) {
                    let g_row: &[f32; CHUNK] = g[r as usize * n + j..][..CHUNK]
                        .try_into()
                        .expect("CHUNK elements");
                    for t in 0..CHUNK {
                        acc[t] = multiply_add::<FUSED>(value, g_row[t], acc[t]);
                    }
                }
                finish_chunk(&mut c_row[j..j + CHUNK], &acc, accumulate);
                j += CHUNK;
                continue;
            } else {
                for (&r, &value) in rows.iter().zip(values) {
                    let g_row = &g[r as usize * n + j..][..width];
                    for (a, &w) in acc.iter_mut().zip(g_row) {
                        *a = multiply_add::<FUSED>(value, w, *a);
                    }
                }
            }
            for (out, &sum) in c_row[j..j + width].iter_mut().zip(&acc) {
                *out = if accumulate { *out + sum } else { sum };
            }
            j += width;
        }
        if let Some(update) = update.as_deref_mut() {
            let range = k * n..(k + 1) * n;
            let mut slots: [&mut [f32]; 2] = [&mut [], &mut []];
            let slot_count = update.slots.len();
            for (slot, whole) in slots.iter_mut().zip(update.slots.iter_mut()) {
                *slot = &mut whole[range.clone()];
            }
            rule_body(
                update.rule,
                &mut update.params[range],
                c_row,
                &mut slots[..slot_count],
            );
        }
    }
}

macro_rules! dispatch {
    ($kernel:ident, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512(
            x: &SparseRows, b: &[f32], n: usize, c: &mut [f32], accumulate: bool,
            update: Option<&mut GradientUpdate>,
        ) {
            $kernel::<true>(x, b, n, c, accumulate, update)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
            x: &SparseRows, b: &[f32], n: usize, c: &mut [f32], accumulate: bool,
            update: Option<&mut GradientUpdate>,
        ) {
            $kernel::<true>(x, b, n, c, accumulate, update)
        }
        match backend() {
            // SAFETY: `backend()` only returns a backend the CPU supports.
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => unsafe { avx512($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => unsafe { avx2($($arg),*) },
            // The plain loop nest does not fuse; every other target has FMA in its baseline.
            Backend::Portable => $kernel::<false>($($arg),*),
            _ => $kernel::<true>($($arg),*),
        }
    }};
}

/// Row-major `(slice, columns)` of a view with contiguous rows and no gaps.
fn dense<'a>(view: &'a ArrayView2<f32>, what: &str) -> &'a [f32] {
    view.as_slice()
        .unwrap_or_else(|| panic!("sparse product: {what} must be row-major and contiguous"))
}

/// `c = x · b + beta · c` (beta 0 or 1), reading only x's nonzeros.
/// x: [rows, k] · b: [k, n] -> c: [rows, n]
pub fn sparse_matmul(x: &SparseRows, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, beta: f32) {
    let n = b.ncols();
    assert_eq!(b.nrows(), x.cols, "sparse_matmul: inner dimensions differ");
    assert_eq!(
        c.dim(),
        (x.rows, n),
        "sparse_matmul: output has the wrong shape"
    );
    let b = dense(&b, "b");
    let c = c
        .as_slice_mut()
        .expect("sparse product: c must be row-major and contiguous");
    #[inline(always)]
    fn kernel<const FUSED: bool>(
        x: &SparseRows,
        b: &[f32],
        n: usize,
        c: &mut [f32],
        accumulate: bool,
        _: Option<&mut GradientUpdate>,
    ) {
        rows_times::<FUSED>(x, b, n, c, accumulate)
    }
    dispatch!(kernel, x, b, n, c, beta != 0.0, None)
}

/// `c = xᵀ · g + beta · c` (beta 0 or 1), reading only x's nonzeros; with `update`, `c` is the
/// gradient of `update.params`, which are then updated row by row as each row of `c` is final.
/// x: [rows, k]ᵀ · g: [rows, n] -> c: [k, n]
pub fn sparse_transposed_matmul(
    x: &SparseRows,
    g: ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    beta: f32,
    update: Option<&mut GradientUpdate>,
) {
    let n = g.ncols();
    assert_eq!(
        g.nrows(),
        x.rows,
        "sparse_transposed_matmul: inner dimensions differ"
    );
    assert_eq!(
        c.dim(),
        (x.cols, n),
        "sparse_transposed_matmul: output has the wrong shape"
    );
    if let Some(update) = &update {
        assert!(
            update.params.len() == c.len() && update.slots.iter().all(|s| s.len() == c.len()),
            "sparse_transposed_matmul: parameters or slots do not match the product's shape"
        );
        assert!(
            update.slots.len() <= 2,
            "sparse_transposed_matmul: at most two slots"
        );
    }
    let g = dense(&g, "g");
    let c = c
        .as_slice_mut()
        .expect("sparse product: c must be row-major and contiguous");
    dispatch!(transposed_times, x, g, n, c, beta != 0.0, update)
}
