//! The numeric kernels the network runs on. This is the only place that knows how a matrix
//! product is computed; layers call [`matmul`] on `ndarray` views and never see the backend.

use ndarray::{ArrayView2, ArrayViewMut2};

/// `c = a · b + beta * c` (`beta` is 0 to overwrite, 1 to accumulate).
/// a: [m, k] · b: [k, n] -> c: [m, n]; `a` and `b` may be transposed views.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, beta: f32) {
    ndarray::linalg::general_mat_mul(1.0, &a, &b, beta, c);
}
