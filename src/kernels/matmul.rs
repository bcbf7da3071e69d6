//! Matrix products on `ndarray` views, dispatched on the current backend.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use super::{backend, Backend};

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
        Backend::Avx512 => {
            if !gemm_crate(&a, &b, c, beta) {
                ndarray::linalg::general_mat_mul(1.0, &a, &b, beta, c);
            }
        }
        Backend::Avx2 | Backend::Neon => matrixmultiply_crate(&a, &b, c, beta),
        Backend::Portable => portable(&a, &b, c, beta),
    }
}

/// The `gemm` crate (single-threaded: parallelism comes from sharding the batch). Returns false
/// for layouts it is not given (negative strides), which the caller then computes otherwise.
fn gemm_crate(
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    beta: f32,
) -> bool {
    let (m, k) = a.dim();
    let n = b.ncols();
    let strides = [a.strides(), b.strides(), c.strides()];
    if strides.iter().flat_map(|s| s.iter()).any(|&s| s < 0) {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        c.mapv_inplace(|x| if beta == 0.0 { 0.0 } else { beta * x });
        return true;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // gemm computes `dst = alpha * dst + beta * lhs · rhs` and prefers a column-major destination:
    // for a row-major one compute the transpose, cᵀ = bᵀ · aᵀ, which is the same memory.
    let (rows, cols, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) = if c_cs < c_rs {
        (
            n,
            m,
            c_rs,
            c_cs,
            b.as_ptr(),
            b_rs,
            b_cs,
            a.as_ptr(),
            a_rs,
            a_cs,
        )
    } else {
        (
            m,
            n,
            c_cs,
            c_rs,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
        )
    };
    // SAFETY: the pointers and strides come from live ndarray views of the stated shapes (checked
    // above), `c` is borrowed mutably and cannot overlap the shared views, and `backend()` chose
    // Avx512 only on a CPU that has it (gemm checks again itself).
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            rows,
            cols,
            k,
            c.as_mut_ptr(),
            dst_cs,
            dst_rs,
            beta != 0.0,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            beta,
            1.0,
            false,
            false,
            false,
            gemm_common::Parallelism::None,
        );
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
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        c.mapv_inplace(|x| beta * x);
    }
    for (i, mut c_row) in c.axis_iter_mut(Axis(0)).enumerate() {
        for (kk, b_row) in b.axis_iter(Axis(0)).enumerate() {
            let a_ik = a[[i, kk]];
            c_row.zip_mut_with(&b_row, |c_ij, &b_kj| *c_ij += a_ik * b_kj);
        }
    }
}
