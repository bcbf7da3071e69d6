//! The first layer's two products with the image batch, reading only its nonzero pixels.
//!
//! An MNIST digit lights about 150 of its 784 pixels, and the 16 images of a shard about 410
//! between them, so a dense product with the batch multiplies by zero most of the time. Leaving
//! those terms out changes no bit: a dense kernel's chain `acc = x·w + acc` starts at +0, and a
//! term with `x = 0` returns `acc` itself for any finite `w` unless `acc` is -0 (+0 plus a zero of
//! either sign is +0), which a chain from +0 reaches only if a partial sum underflows to zero —
//! not with pixels in [0, 1] and trained weights. (An infinite weight would make the dense chain
//! NaN; training stops updating before that, at the first non-finite loss.) Each element here is
//! the chain of its nonzero terms in `k` order, as in [`super::matmul`]: both paths of the training
//! step (sharded and column-split) run these kernels, so they agree bit for bit with each other,
//! and in practice with the dense kernels too (the models of the tests and of `train` are
//! unchanged).
//!
//! The products walk any [`Nonzeros`] index, by row for x·W and by column (pixel) for xᵀ·g:
//! [`SparseRows`] lists a float batch's nonzeros both ways; `PixelIndex` (`kernels::pixel_index`)
//! keeps 8-bit images with bitmaps of their nonzero pixels. Either is built once per shard and
//! read by both products.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::elementwise::rule_body;
use super::{backend, Backend, UpdateRule};

/// The optimizer update [`sparse_transposed_matmul`] applies with the product as the gradient.
pub struct GradientUpdate<'a, 'b> {
    pub rule: UpdateRule,
    /// Row-major, the product's shape.
    pub params: &'a mut [f32],
    /// The same elements of each of the optimizer's slots (at most two).
    pub slots: &'a mut [&'b mut [f32]],
}

/// An index of a matrix's nonzero elements, as the products walk it.
pub trait Nonzeros {
    /// The indexed matrix's shape: [rows, cols].
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Calls `visit(column, value)` for row r's nonzeros, in increasing column order.
    fn each_in_row(&self, r: usize, visit: impl FnMut(u32, f32));
    /// Calls `visit(row, value)` for column k's nonzeros, in increasing row order.
    fn each_in_col(&self, k: usize, visit: impl FnMut(u32, f32));
}

/// A row or a column of an index.
#[derive(Clone, Copy)]
enum Line {
    Row(usize),
    Col(usize),
}

/// Calls `visit(position, value)` for the nonzeros of `x`'s `line`, in order.
#[inline(always)]
fn each_in<X: Nonzeros>(x: &X, line: Line, visit: impl FnMut(u32, f32)) {
    match line {
        Line::Row(r) => x.each_in_row(r, visit),
        Line::Col(k) => x.each_in_col(k, visit),
    }
}

/// One row's or one column's nonzeros in a [`SparseRows`]: positions, and values.
type Entries<'a> = (&'a [u32], &'a [f32]);

/// One term of a sum of chains: a line of an index, and the matrix whose rows it picks.
type Term<'a, X> = (&'a X, Line, &'a [f32]);

/// Columns of `c` whose chains run side by side (eight 256-bit or four 512-bit accumulators,
/// enough to keep the FMA units busy past their latency).
const CHUNK: usize = 64;

/// Elements of a row compacted at once (one 256-bit vector of floats).
const RUN: usize = 8;

/// Entries past the last row's that indexing may write: a run's nonzeros are stored as a whole
/// vector.
const SLACK: usize = RUN;

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
        let entries = capacity
            .checked_mul(cols)
            .filter(|&entries| u32::try_from(entries + SLACK).is_ok())
            .unwrap_or_else(|| panic!("SparseRows: {capacity} × {cols} entries need a u32 index"));
        SparseRows {
            cols,
            capacity,
            rows: 0,
            row_start: vec![0; capacity + 1],
            row_col: vec![0; entries + SLACK],
            row_value: vec![0.0; entries + SLACK],
            col_count: vec![0; cols],
            col_row: vec![0; entries],
            col_value: vec![0.0; entries],
        }
    }

    /// Bytes [`SparseRows::new`] allocates for `capacity` rows of `cols` columns.
    pub fn bytes_for(capacity: usize, cols: usize) -> u64 {
        let entries = capacity as u64 * cols as u64;
        // Row starts, column counts, and (column or row, value) pairs by row and by column.
        4 * ((capacity as u64 + 1) + cols as u64 + 2 * (entries + SLACK as u64) + 2 * entries)
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
        let cols = self.cols;
        let row = |r: usize| &x[r * cols..(r + 1) * cols];
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,popcnt")]
        unsafe fn avx2<'x>(index: &mut SparseRows, rows: usize, row: impl Fn(usize) -> &'x [f32]) {
            index.index_rows(rows, |r, cols, values| {
                compact_runs(row(r), cols, values, |run, first, cols, values| {
                    // SAFETY: AVX2 is enabled on this function; `compact_runs` passes eight
                    // slots in `cols` and `values`.
                    unsafe { compact_avx2(run, first, cols, values) }
                })
            })
        }
        match backend() {
            // SAFETY: `backend()` only returns a backend the CPU supports (AVX-512 implies AVX2).
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 | Backend::Avx2 => unsafe { avx2(self, rows, row) },
            _ => self.index_rows(rows, |r, cols, values| {
                compact_runs(row(r), cols, values, compact)
            }),
        }
    }

    /// Row by row, `compact_row(r, cols, values)` stores row r's nonzeros (column, value) at the
    /// start of `cols` and `values` (slices with `SLACK` entries past the row's room) and returns
    /// how many; each row's entries then go to the end of their columns' lists.
    #[inline(always)]
    fn index_rows(
        &mut self,
        rows: usize,
        mut compact_row: impl FnMut(usize, &mut [u32], &mut [f32]) -> usize,
    ) {
        let (cols, capacity) = (self.cols, self.capacity);
        self.rows = rows;
        // Plain slices, so the compiler knows the stores below do not touch the vectors.
        let row_start = &mut self.row_start[..];
        let (row_col, row_value) = (&mut self.row_col[..], &mut self.row_value[..]);
        let col_count = &mut self.col_count[..];
        let (col_row, col_value) = (&mut self.col_row[..], &mut self.col_value[..]);
        let mut count = 0usize;
        col_count.fill(0);
        for (r, start) in row_start[..rows].iter_mut().enumerate() {
            *start = count as u32;
            let room = count..count + cols + SLACK;
            let found = compact_row(r, &mut row_col[room.clone()], &mut row_value[room]);
            // The row's entries into their columns' lists while they are in cache.
            let entries = count..count + found;
            for (&k, &value) in row_col[entries.clone()].iter().zip(&row_value[entries]) {
                let k = k as usize;
                let n = col_count[k];
                let slot = k * capacity + n as usize;
                col_row[slot] = r as u32;
                col_value[slot] = value;
                col_count[k] = n + 1;
            }
            count += found;
        }
        row_start[rows] = count as u32;
    }

    fn row(&self, r: usize) -> Entries<'_> {
        let range = self.row_start[r] as usize..self.row_start[r + 1] as usize;
        (&self.row_col[range.clone()], &self.row_value[range])
    }

    fn col(&self, k: usize) -> Entries<'_> {
        let start = k * self.capacity;
        let range = start..start + self.col_count[k] as usize;
        (&self.col_row[range.clone()], &self.col_value[range])
    }
}

impl Nonzeros for SparseRows {
    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    fn each_in_row(&self, r: usize, mut visit: impl FnMut(u32, f32)) {
        let (cols, values) = self.row(r);
        for (&k, &value) in cols.iter().zip(values) {
            visit(k, value);
        }
    }

    #[inline(always)]
    fn each_in_col(&self, k: usize, mut visit: impl FnMut(u32, f32)) {
        let (rows, values) = self.col(k);
        for (&r, &value) in rows.iter().zip(values) {
            visit(r, value);
        }
    }
}

/// One row's nonzero values (NaN counts as nonzero) stored with their columns at the start of
/// `values` and `cols`, run by run of `RUN` elements (`compact_run(run, first, cols, values)`
/// stores a run's and returns how many), then the tail element by element; returns how many.
#[inline(always)]
fn compact_runs(
    row: &[f32],
    cols: &mut [u32],
    values: &mut [f32],
    compact_run: impl Fn(&[f32; RUN], u32, &mut [u32], &mut [f32]) -> usize,
) -> usize {
    let mut count = 0;
    let runs = row.chunks_exact(RUN);
    let tail = runs.remainder();
    for (run_index, run) in runs.enumerate() {
        let run: &[f32; RUN] = run.try_into().expect("a whole run");
        let first = (run_index * RUN) as u32;
        count += compact_run(
            run,
            first,
            &mut cols[count..count + RUN],
            &mut values[count..count + RUN],
        );
    }
    let first = row.len() - tail.len();
    for (t, &value) in tail.iter().enumerate() {
        if value != 0.0 {
            cols[count] = (first + t) as u32;
            values[count] = value;
            count += 1;
        }
    }
    count
}

/// Stores the nonzeros of `run` (columns `first..first + 8`) and their columns at the start of
/// `cols` and `values`; returns how many.
fn compact(run: &[f32; RUN], first: u32, cols: &mut [u32], values: &mut [f32]) -> usize {
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
#[target_feature(enable = "avx2,fma,popcnt")]
unsafe fn compact_avx2(
    run: &[f32; RUN],
    first: u32,
    cols: &mut [u32],
    values: &mut [f32],
) -> usize {
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

/// Adds to `acc` the chain of `values[i] · matrix[indices[i], j..j + W]`, in order.
#[inline(always)]
fn chain<const FUSED: bool, const W: usize, X: Nonzeros>(
    (x, line, matrix): Term<X>,
    n: usize,
    j: usize,
    acc: &mut [f32; W],
) {
    each_in(x, line, |i, value| {
        let row: &[f32; W] = matrix[i as usize * n + j..][..W]
            .try_into()
            .expect("W elements");
        for t in 0..W {
            acc[t] = multiply_add::<FUSED>(value, row[t], acc[t]);
        }
    });
}

/// [`chain`] over the first `acc.len()` columns from `j` (a partial chunk).
#[inline(always)]
fn chain_partial<const FUSED: bool, X: Nonzeros>(
    (x, line, matrix): Term<X>,
    n: usize,
    j: usize,
    acc: &mut [f32],
) {
    each_in(x, line, |i, value| {
        let row = &matrix[i as usize * n + j..][..acc.len()];
        for (a, &w) in acc.iter_mut().zip(row) {
            *a = multiply_add::<FUSED>(value, w, *a);
        }
    });
}

/// `total = acc` for the first term of a sum, `total += acc` for the others.
#[inline(always)]
fn add_term(total: &mut [f32], acc: &[f32], first: bool) {
    for (t, &a) in total.iter_mut().zip(acc) {
        *t = if first { a } else { *t + a };
    }
}

/// One row of c from the chains of `terms` (a list of nonzeros, and the matrix whose rows it
/// picks), summed in order, `((chain_0) + chain_1) + …`, and added to what `c_row` holds with
/// `accumulate`.
#[inline(always)]
fn sum_of_chains<const FUSED: bool, X: Nonzeros>(
    terms: &[Term<X>],
    n: usize,
    c_row: &mut [f32],
    accumulate: bool,
) {
    let mut j = 0;
    while j + CHUNK <= n {
        let mut total = [0.0f32; CHUNK];
        total.copy_from_slice(&c_row[j..j + CHUNK]);
        for (s, &term) in terms.iter().enumerate() {
            let mut acc = [0.0f32; CHUNK];
            chain::<FUSED, CHUNK, X>(term, n, j, &mut acc);
            add_term(&mut total, &acc, s == 0 && !accumulate);
        }
        c_row[j..j + CHUNK].copy_from_slice(&total);
        j += CHUNK;
    }
    if j < n {
        let total = &mut c_row[j..];
        for (s, &term) in terms.iter().enumerate() {
            let acc = &mut [0.0f32; CHUNK][..n - j];
            chain_partial::<FUSED, X>(term, n, j, acc);
            add_term(total, acc, s == 0 && !accumulate);
        }
    }
}

/// c = x · b (+ c with `accumulate`): x: [rows, k] sparse · b: [k, n] -> c: [rows, n], b and c
/// dense row-major.
#[inline(always)]
fn rows_times<const FUSED: bool, X: Nonzeros>(
    x: &X,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    for (r, c_row) in c.chunks_exact_mut(n.max(1)).take(x.rows()).enumerate() {
        sum_of_chains::<FUSED, X>(&[(x, Line::Row(r), b)], n, c_row, accumulate);
    }
}

/// c = Σ_s x_sᵀ · g_s over `shards` (x_s, g_s) in order, added to c with `accumulate`:
/// x_s: [rows_s, k] sparse, g_s: [rows_s, n] -> c: [k, n]; then, with `update`, the optimizer
/// step on each finished row of c (the parameters' gradient). Each row of c is written once.
#[inline(always)]
fn transposed_times<const FUSED: bool, X: Nonzeros>(
    shards: &[(&X, &[f32])],
    n: usize,
    c: &mut [f32],
    accumulate: bool,
    mut update: Option<&mut GradientUpdate>,
) {
    let Some(&(first, _)) = shards.first() else {
        return;
    };
    let mut terms: [Term<X>; MAX_SPARSE_SHARDS] = [(first, Line::Col(0), &[]); MAX_SPARSE_SHARDS];
    for k in 0..first.cols() {
        for (term, &(x, g)) in terms.iter_mut().zip(shards) {
            *term = (x, Line::Col(k), g);
        }
        let c_row = &mut c[k * n..(k + 1) * n];
        sum_of_chains::<FUSED, X>(&terms[..shards.len()], n, c_row, accumulate);
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

/// Runs `$kernel::<FUSED>($arg, …)` compiled for the current backend.
macro_rules! dispatch {
    (<$x:ident> $kernel:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,popcnt")]
        unsafe fn avx512<$x: Nonzeros>($($arg: $ty),*) {
            $kernel::<true, $x>($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,popcnt")]
        unsafe fn avx2<$x: Nonzeros>($($arg: $ty),*) {
            $kernel::<true, $x>($($arg),*)
        }
        match backend() {
            // SAFETY: `backend()` only returns a backend the CPU supports.
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => unsafe { avx512::<$x>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => unsafe { avx2::<$x>($($arg),*) },
            // The plain loop nest does not fuse; every other target has FMA in its baseline.
            Backend::Portable => $kernel::<false, $x>($($arg),*),
            _ => $kernel::<true, $x>($($arg),*),
        }
    }};
}

/// The elements of a row-major view with contiguous rows and no gaps.
fn dense<'a>(view: &'a ArrayView2<f32>, what: &str) -> &'a [f32] {
    view.as_slice()
        .unwrap_or_else(|| panic!("sparse product: {what} must be row-major and contiguous"))
}

/// `c = x · b + beta · c` (beta 0 or 1), reading only x's nonzeros.
/// x: [rows, k] · b: [k, n] -> c: [rows, n]
pub fn sparse_matmul<X: Nonzeros>(
    x: &X,
    b: ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    beta: f32,
) {
    let n = b.ncols();
    assert_eq!(
        b.nrows(),
        x.cols(),
        "sparse_matmul: inner dimensions differ"
    );
    assert_eq!(
        c.dim(),
        (x.rows(), n),
        "sparse_matmul: output has the wrong shape"
    );
    let b = dense(&b, "b");
    let c = c
        .as_slice_mut()
        .expect("sparse product: c must be row-major and contiguous");
    let accumulate = beta != 0.0;
    dispatch!(<X> rows_times(x: &X, b: &[f32], n: usize, c: &mut [f32], accumulate: bool))
}

/// Most shards [`sparse_transposed_matmul`] sums in one pass.
pub const MAX_SPARSE_SHARDS: usize = 8;

/// `c = Σ_s x_sᵀ · g_s + beta · c` (beta 0 or 1) over the shards (x_s, g_s) in order, reading
/// only the x's nonzeros: the bits of one product per shard, the first with `beta`, the others
/// accumulating, but each row of `c` is written once. With `update`, `c` is the gradient of
/// `update.params`, which are then updated row by row as each row of `c` is final.
/// x_s: [rows_s, k]ᵀ · g_s: [rows_s, n] -> c: [k, n]
pub fn sparse_transposed_matmul<X: Nonzeros>(
    shards: &[(&X, ArrayView2<f32>)],
    c: &mut ArrayViewMut2<f32>,
    beta: f32,
    update: Option<&mut GradientUpdate>,
) {
    assert!(
        (1..=MAX_SPARSE_SHARDS).contains(&shards.len()),
        "sparse_transposed_matmul: 1 to {MAX_SPARSE_SHARDS} shards"
    );
    let (k, n) = c.dim();
    for (x, g) in shards {
        assert!(
            g.nrows() == x.rows() && g.ncols() == n && x.cols() == k,
            "sparse_transposed_matmul: a shard's shapes do not match the output"
        );
    }
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
    let mut operands: [(&X, &[f32]); MAX_SPARSE_SHARDS] = [(shards[0].0, &[]); MAX_SPARSE_SHARDS];
    for (operand, (x, g)) in operands.iter_mut().zip(shards) {
        *operand = (x, dense(g, "g"));
    }
    let shards = &operands[..shards.len()];
    let c = c
        .as_slice_mut()
        .expect("sparse product: c must be row-major and contiguous");
    let accumulate = beta != 0.0;
    dispatch!(<X> transposed_times(
        shards: &[(&X, &[f32])],
        n: usize,
        c: &mut [f32],
        accumulate: bool,
        update: Option<&mut GradientUpdate>
    ))
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::kernels::{matmul, update_piece, with_backend, AdamCoefficients};
    use crate::rng::{stream, Stream};

    /// An image-like matrix: most elements +0, some -0, the rest in (0, 1].
    fn mostly_zero(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = stream(seed, Stream::Init, rows as u64, cols as u64);
        Array2::from_shape_simple_fn((rows, cols), || match rng.next_f32() {
            u if u < 0.75 => 0.0,
            u if u < 0.78 => -0.0,
            _ => rng.next_f32() + f32::EPSILON,
        })
    }

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = stream(seed, Stream::Init, rows as u64, cols as u64);
        Array2::from_shape_simple_fn((rows, cols), || rng.next_f32() * 2.0 - 1.0)
    }

    fn indexed(x: &Array2<f32>) -> SparseRows {
        let mut index = SparseRows::new(x.nrows() + 3, x.ncols());
        index.index(x.as_slice().expect("standard layout"), x.nrows());
        index
    }

    fn bits(values: &Array2<f32>) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Backends whose dense products chain in `k` order, which the sparse ones then match bit
    /// for bit (`neon`'s dense products come from `matrixmultiply`).
    fn chaining_backends() -> Vec<Backend> {
        Backend::supported()
            .into_iter()
            .filter(|b| *b != Backend::Neon)
            .collect()
    }

    #[test]
    fn the_index_lists_every_nonzero_by_row_and_by_column_in_order() {
        for backend in Backend::supported() {
            // 21 columns: two runs of eight and a tail of five.
            let mut x = mostly_zero(13, 21, 1);
            x[[4, 20]] = f32::NAN;
            x[[5, 16]] = 1e-40;
            let index = with_backend(backend, || indexed(&x));
            let expected: Vec<(usize, usize)> = x
                .indexed_iter()
                .filter(|(_, v)| **v != 0.0 || v.is_nan())
                .map(|(position, _)| position)
                .collect();
            assert_eq!(index.rows(), 13);
            assert_eq!(index.nonzeros(), expected.len(), "{backend:?}");
            let mut by_row = Vec::new();
            for r in 0..13 {
                let (ks, values) = index.row(r);
                for (&k, &value) in ks.iter().zip(values) {
                    assert_eq!(value.to_bits(), x[[r, k as usize]].to_bits());
                    by_row.push((r, k as usize));
                }
            }
            assert_eq!(by_row, expected, "{backend:?}: rows");
            let mut by_col = Vec::new();
            for k in 0..21 {
                let (rows, values) = index.col(k);
                for (&r, &value) in rows.iter().zip(values) {
                    assert_eq!(value.to_bits(), x[[r as usize, k]].to_bits());
                    by_col.push((r as usize, k));
                }
            }
            let mut column_major = expected.clone();
            column_major.sort_by_key(|&(r, k)| (k, r));
            assert_eq!(by_col, column_major, "{backend:?}: columns");
        }
    }

    #[test]
    fn sparse_products_give_the_bits_of_the_dense_products() {
        for backend in chaining_backends() {
            // 64 and 128 columns (whole chunks), 10 and 70 (a partial one).
            for (rows, n) in [(16, 64), (16, 128), (13, 10), (7, 70)] {
                let x = mostly_zero(rows, 784, 2);
                let index = with_backend(backend, || indexed(&x));
                for beta in [0.0, 1.0] {
                    let w = random(784, n, 3);
                    let start = random(rows, n, 4);
                    let (mut dense, mut sparse) = (start.clone(), start.clone());
                    with_backend(backend, || {
                        matmul(x.view(), w.view(), &mut dense.view_mut(), beta);
                        sparse_matmul(&index, w.view(), &mut sparse.view_mut(), beta);
                    });
                    assert_eq!(bits(&dense), bits(&sparse), "{backend:?} x·w {rows}x{n}");

                    let g = random(rows, n, 5);
                    let start = random(784, n, 6);
                    let (mut dense, mut sparse) = (start.clone(), start.clone());
                    with_backend(backend, || {
                        matmul(x.t(), g.view(), &mut dense.view_mut(), beta);
                        let c = &mut sparse.view_mut();
                        sparse_transposed_matmul(&[(&index, g.view())], c, beta, None);
                    });
                    assert_eq!(bits(&dense), bits(&sparse), "{backend:?} xᵀ·g {rows}x{n}");
                }
            }
        }
    }

    /// The rules a step can apply, with one or two slots or none.
    fn rules() -> Vec<UpdateRule> {
        vec![
            UpdateRule::Sgd { learning_rate: 0.1 },
            UpdateRule::Momentum {
                learning_rate: 0.05,
                momentum: 0.9,
                nesterov: true,
            },
            UpdateRule::Adam(AdamCoefficients {
                alpha: 0.003,
                decay: 0.0001,
                one_minus_beta1: 0.1,
                one_minus_beta2: 0.001,
                epsilon: 1e-7,
            }),
            UpdateRule::Rmsprop {
                learning_rate: 0.001,
                rho: 0.9,
                epsilon: 1e-7,
            },
        ]
    }

    fn slot_count(rule: UpdateRule) -> usize {
        match rule {
            UpdateRule::Sgd { .. } => 0,
            UpdateRule::Momentum { .. } | UpdateRule::Rmsprop { .. } => 1,
            UpdateRule::Adam(_) => 2,
        }
    }

    #[test]
    fn the_update_after_the_sparse_weight_gradient_gives_the_bits_of_the_dense_one() {
        // A whole and a partial chunk of columns.
        for backend in chaining_backends() {
            for (rows, n) in [(16, 64), (7, 70)] {
                let x = mostly_zero(rows, 784, 7);
                let g = random(rows, n, 8);
                let index = with_backend(backend, || indexed(&x));
                for rule in rules() {
                    for beta in [0.0, 1.0] {
                        let run = |sparse: bool| {
                            let mut c = random(784, n, 3);
                            let mut params = random(784, n, 9).into_raw_vec_and_offset().0;
                            let mut slots: Vec<Vec<f32>> = (0..slot_count(rule))
                                .map(|s| {
                                    let values = random(784, n, 10 + s as u64);
                                    values.mapv(f32::abs).into_raw_vec_and_offset().0
                                })
                                .collect();
                            let mut slot_views: Vec<&mut [f32]> =
                                slots.iter_mut().map(|s| s.as_mut_slice()).collect();
                            with_backend(backend, || {
                                if sparse {
                                    let mut update = GradientUpdate {
                                        rule,
                                        params: &mut params,
                                        slots: &mut slot_views,
                                    };
                                    let shard = [(&index, g.view())];
                                    let c = &mut c.view_mut();
                                    sparse_transposed_matmul(&shard, c, beta, Some(&mut update));
                                } else {
                                    matmul(x.t(), g.view(), &mut c.view_mut(), beta);
                                    let grads = c.as_slice().expect("standard layout");
                                    update_piece(rule, &mut params, grads, &mut slot_views);
                                }
                            });
                            let mut all =
                                vec![bits(&c), params.iter().map(|v| v.to_bits()).collect()];
                            all.extend(
                                slots
                                    .iter()
                                    .map(|s| s.iter().map(|v| v.to_bits()).collect()),
                            );
                            all
                        };
                        assert_eq!(
                            run(false),
                            run(true),
                            "{backend:?} {rule:?} {rows}x{n} beta {beta}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_index_reports_the_bytes_it_allocates() {
        let index = SparseRows::new(16, 784);
        assert_eq!(index.allocated_bytes(), SparseRows::bytes_for(16, 784));
    }
}
