//! Matrix products on `ndarray` views, dispatched on the current backend.

#[cfg(target_arch = "x86_64")]
use std::mem::MaybeUninit;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

#[cfg(target_arch = "x86_64")]
use super::fma_gemm;
use super::walk::Walk;
use super::{backend, Backend};

/// A matrix read in place: `a[i, j] = data[rows.offset(i) + cols.offset(j)]` (e.g. a
/// convolution's im2col matrix over the images themselves).
pub struct WalkedMatrix<'a> {
    pub data: &'a [f32],
    pub shape: (usize, usize),
    pub rows: Walk,
    pub cols: Walk,
}

/// What a product's output starts from.
#[derive(Clone, Copy)]
pub enum ProductStart<'a> {
    /// `c = a·b`
    Zero,
    /// `c += a·b`
    Accumulate,
    /// `c = bias + a·b` on every row, `bias: [n]`; the same bits as writing the bias first and
    /// accumulating.
    Bias(&'a [f32]),
    /// `c = relu(bias + a·b)`: [`ProductStart::Bias`], then the same bits as `relu_forward`.
    BiasRelu(&'a [f32]),
}

/// `c = a · b` from `start`, for `a` read in place. Returns false where the backend has no
/// kernel for it (or for the layout); the caller then multiplies an explicit copy of `a`.
/// a: [m, k] · b: [k, n] -> c: [m, n]
pub fn walked_matmul(
    a: &WalkedMatrix,
    b: ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    start: ProductStart,
) -> bool {
    let (m, k) = a.shape;
    assert_eq!(b.nrows(), k, "walked_matmul: inner dimensions differ");
    assert_eq!(
        c.dim(),
        (m, b.ncols()),
        "walked_matmul: output has the wrong shape"
    );
    if let ProductStart::Bias(bias) | ProductStart::BiasRelu(bias) = start {
        assert_eq!(
            bias.len(),
            b.ncols(),
            "walked_matmul: bias has the wrong length"
        );
    }
    if let (Some(last_row), Some(last_col)) = (a.rows.max_offset(m), a.cols.max_offset(k)) {
        assert!(
            last_row + last_col < a.data.len() as isize,
            "walked_matmul: the walks leave the data"
        );
    }
    match backend() {
        #[cfg(target_arch = "x86_64")]
        backend @ (Backend::Avx512 | Backend::Avx2) => {
            let operand = fma_gemm::Operand {
                ptr: a.data.as_ptr(),
                rows: a.rows,
                cols: a.cols,
            };
            let start = match start {
                ProductStart::Zero => fma_gemm::Start::Zero,
                ProductStart::Accumulate => fma_gemm::Start::Accumulate,
                ProductStart::Bias(bias) => fma_gemm::Start::Bias(bias.as_ptr()),
                ProductStart::BiasRelu(bias) => fma_gemm::Start::BiasRelu(bias.as_ptr()),
            };
            own_kernels(backend, (operand, m, k), &b, c, start)
        }
        _ => false,
    }
}

/// `c = a · b + beta * c` (`beta` is 0 to overwrite, 1 to accumulate).
/// a: [m, k] · b: [k, n] -> c: [m, n]; `a` and `b` may be transposed views.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, beta: f32) {
    let (m, k) = a.dim();
    assert_eq!(b.nrows(), k, "matmul: inner dimensions differ");
    assert_eq!(
        c.dim(),
        (m, b.ncols()),
        "matmul: output has the wrong shape"
    );
    match backend() {
        #[cfg(target_arch = "x86_64")]
        backend @ (Backend::Avx512 | Backend::Avx2) => {
            let operand = fma_gemm::Operand {
                ptr: a.as_ptr(),
                rows: Walk::strided(a.strides()[0]),
                cols: Walk::strided(a.strides()[1]),
            };
            let start = if beta == 0.0 {
                Some(fma_gemm::Start::Zero)
            } else {
                (beta == 1.0).then_some(fma_gemm::Start::Accumulate)
            };
            let done =
                start.is_some_and(|start| own_kernels(backend, (operand, m, k), &b, c, start));
            if !done {
                matrixmultiply_crate(&a, &b, c, beta);
            }
        }
        Backend::Portable => portable(&a, &b, c, beta),
        // neon (and, off x86-64, nothing else can be chosen).
        _ => matrixmultiply_crate(&a, &b, c, beta),
    }
}

/// `b` operands with contiguous columns instead of rows (transposed weights, at most this many
/// elements: 128×10 in the tutorial network, a 64×32 Winograd weight plane for the CNN's second
/// convolution) are copied
/// to the stack in row-major order first (128 KiB at most; worker threads have 2 MiB stacks).
#[cfg(target_arch = "x86_64")]
const STACK_PACK_LIMIT: usize = 32 * 1024;

/// Our AVX2/AVX-512 kernels ([`fma_gemm`]) for the layouts training uses: `c` with contiguous
/// rows, `b` with contiguous rows (or small enough to copy). Returns false for anything else,
/// which the caller then computes another way. `a` is (operand, m, k), valid for that shape.
#[cfg(target_arch = "x86_64")]
fn own_kernels(
    backend: Backend,
    a: (fma_gemm::Operand, usize, usize),
    b: &ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    start: fma_gemm::Start,
) -> bool {
    let k = a.2;
    let n = b.ncols();
    if c.strides()[1] != 1 {
        return false;
    }
    if b.strides()[1] == 1 {
        return run_own_kernel(backend, a, b.as_ptr(), b.strides()[0], n, c, start);
    }
    if k * n > STACK_PACK_LIMIT {
        return false;
    }
    // Only the k·n slots the product reads are written (no zeroing of the whole buffer).
    let mut packed = [MaybeUninit::<f32>::uninit(); STACK_PACK_LIMIT];
    for (row, packed_row) in b.rows().into_iter().zip(packed.chunks_exact_mut(n.max(1))) {
        for (value, slot) in row.iter().zip(packed_row) {
            slot.write(*value);
        }
    }
    run_own_kernel(
        backend,
        a,
        packed.as_ptr().cast::<f32>(),
        n as isize,
        n,
        c,
        start,
    )
}

/// [`own_kernels`] once `b` is row-major: `b_ptr` with `b_row_stride`, `n` columns.
#[cfg(target_arch = "x86_64")]
fn run_own_kernel(
    backend: Backend,
    (a, m, k): (fma_gemm::Operand, usize, usize),
    b_ptr: *const f32,
    b_row_stride: isize,
    n: usize,
    c: &mut ArrayViewMut2<f32>,
    start: fma_gemm::Start,
) -> bool {
    let product = fma_gemm::Product {
        m,
        k,
        n,
        a,
        b: b_ptr,
        b_row_stride,
        c: c.as_mut_ptr(),
        c_row_stride: c.strides()[0],
        start,
    };
    // SAFETY: `backend()` returns Avx512/Avx2 only on CPUs that have them; `a` addresses a live
    // view or slice within its bounds for m × k (checked by `matmul` or `walked_matmul`), `b`
    // and `c` come from live views of the stated shapes or from the caller's stack copy of `b`,
    // which outlives the call, and a bias has `n` values; `c` is borrowed mutably, so it
    // overlaps neither `a` nor `b`.
    unsafe {
        match backend {
            Backend::Avx512 => fma_gemm::avx512::gemm(&product),
            _ => fma_gemm::avx2::gemm(&product),
        }
    }
    true
}

/// The `matrixmultiply` crate: its AVX2/FMA kernel on x86-64, its NEON kernel on aarch64 (it
/// picks the kernel by runtime detection; `backend()` chose these backends only where they exist).
fn matrixmultiply_crate(
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    beta: f32,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: pointers and strides (in elements, any sign) come from live ndarray views of the
    // stated shapes (checked by the caller), and `c` is borrowed mutably, so it cannot overlap
    // the shared views `a` and `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_rs,
            a_cs,
            b.as_ptr(),
            b_rs,
            b_cs,
            beta,
            c.as_mut_ptr(),
            c_rs,
            c_cs,
        );
    }
}

/// Plain loops: row i of c accumulates a[i, k] · (row k of b). No CPU-specific code at all.
fn portable(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, beta: f32) {
    // Like our FMA kernels: each element's chain over k is formed first, then added to beta·c.
    const COLUMNS: usize = 64;
    let mut chain = [0.0f32; COLUMNS];
    let n = b.ncols();
    for (i, mut c_row) in c.axis_iter_mut(Axis(0)).enumerate() {
        for start in (0..n).step_by(COLUMNS) {
            let end = (start + COLUMNS).min(n);
            let chain = &mut chain[..end - start];
            chain.fill(0.0);
            for (kk, b_row) in b.axis_iter(Axis(0)).enumerate() {
                let a_ik = a[[i, kk]];
                for (sum, &b_kj) in chain.iter_mut().zip(b_row.slice(ndarray::s![start..end])) {
                    *sum += a_ik * b_kj;
                }
            }
            for (c_ij, &sum) in c_row
                .slice_mut(ndarray::s![start..end])
                .iter_mut()
                .zip(&*chain)
            {
                *c_ij = if beta == 0.0 { sum } else { beta * *c_ij + sum };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::kernels::with_backend;
    use crate::rng::{stream, Stream};

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = stream(seed, Stream::Init, rows as u64, cols as u64);
        Array2::from_shape_simple_fn((rows, cols), || rng.next_f32() * 2.0 - 1.0)
    }

    /// c = a·b + beta·c in f64, and Σ|a·b| per element (the scale rounding errors grow with).
    fn exact(a: &Array2<f32>, b: &Array2<f32>, c: &Array2<f32>, beta: f32) -> (Vec<f64>, Vec<f64>) {
        let (m, k) = a.dim();
        let n = b.ncols();
        let (mut values, mut scales) = (Vec::new(), Vec::new());
        for i in 0..m {
            for j in 0..n {
                let terms = (0..k).map(|kk| f64::from(a[[i, kk]]) * f64::from(b[[kk, j]]));
                values.push(terms.clone().sum::<f64>() + f64::from(beta * c[[i, j]]));
                scales.push(terms.map(f64::abs).sum::<f64>() + f64::from(c[[i, j]].abs()));
            }
        }
        (values, scales)
    }

    /// The training's products (forward x·W, weight gradient xᵀ·g, input gradient g·Wᵀ, for both
    /// layers of 784-128-10 and for the CNN's second convolution, 288 → 64, with 16, 13 and 256
    /// rows), overwriting and accumulating.
    /// (a, b, use aᵀ, use bᵀ, beta)
    type Case = (Array2<f32>, Array2<f32>, bool, bool, f32);

    fn cases() -> Vec<Case> {
        let mut cases = Vec::new();
        for rows in [16, 13, 256] {
            for (inputs, outputs) in [(784, 128), (128, 10), (288, 64)] {
                for beta in [0.0, 1.0] {
                    let x = random(rows, inputs, 1);
                    let w = random(inputs, outputs, 2);
                    let g = random(rows, outputs, 3);
                    cases.push((x.clone(), w.clone(), false, false, beta));
                    cases.push((x, g.clone(), true, false, beta));
                    cases.push((g, w, false, true, beta));
                }
            }
        }
        cases
    }

    #[test]
    fn every_backend_computes_the_training_products_within_1e_5_of_exact() {
        for backend in Backend::supported() {
            for (a, b, transpose_a, transpose_b, beta) in cases() {
                let a_view = if transpose_a { a.t() } else { a.view() };
                let b_view = if transpose_b { b.t() } else { b.view() };
                let start = random(a_view.nrows(), b_view.ncols(), 4);
                let mut c = start.clone();
                with_backend(backend, || matmul(a_view, b_view, &mut c.view_mut(), beta));
                let (values, scales) = exact(&a_view.to_owned(), &b_view.to_owned(), &start, beta);
                for ((got, want), scale) in c.iter().zip(&values).zip(&scales) {
                    let error = (f64::from(*got) - want).abs();
                    assert!(
                        error <= 1e-5 * (1.0 + scale),
                        "{backend:?} {:?}·{:?} (transposed {transpose_a}, {transpose_b}) beta {beta}: \
                         {got} vs {want}",
                        a_view.dim(),
                        b_view.dim()
                    );
                }
            }
        }
    }

    #[test]
    fn the_avx2_and_avx512_kernels_give_identical_bits() {
        let supported = Backend::supported();
        if !(supported.contains(&Backend::Avx512) && supported.contains(&Backend::Avx2)) {
            return;
        }
        for (a, b, transpose_a, transpose_b, beta) in cases() {
            let a_view = if transpose_a { a.t() } else { a.view() };
            let b_view = if transpose_b { b.t() } else { b.view() };
            let run = |backend| {
                let mut c = random(a_view.nrows(), b_view.ncols(), 4);
                with_backend(backend, || matmul(a_view, b_view, &mut c.view_mut(), beta));
                c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            assert_eq!(run(Backend::Avx512), run(Backend::Avx2));
        }
    }
}
