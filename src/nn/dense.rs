//! Fully connected layer: `y = x · W + b`.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels::{
    matmul, sparse_matmul, sparse_transposed_matmul, sum_of_squares, sum_rows_into, SparseRows,
};
use crate::rng::Rng;

pub type Dense = DenseLayout;

/// One dense layer's place in the flat buffer. Weights are `[inputs, outputs]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayout {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: std::ops::Range<usize>,
    pub bias: std::ops::Range<usize>,
}

impl Dense {
    fn weights<'a>(&self, params: &'a [f32]) -> ArrayView2<'a, f32> {
        ArrayView2::from_shape((self.inputs, self.outputs), &params[self.weights.clone()])
            .expect("layout matches buffer")
    }

    /// Glorot-uniform weights (Keras' default), zero biases.
    pub fn initialize(&self, params: &mut [f32], rng: &mut Rng) {
        let limit = (6.0 / (self.inputs + self.outputs) as f32).sqrt();
        for weight in &mut params[self.weights.clone()] {
            *weight = (rng.next_f32() * 2.0 - 1.0) * limit;
        }
        params[self.bias.clone()].fill(0.0);
    }

    /// x: [batch, in] · w: [in, out] + b: [out] -> y: [batch, out]
    pub fn forward(&self, params: &[f32], x: ArrayView2<f32>, mut y: ArrayViewMut2<f32>) {
        self.fill_bias(params, &mut y);
        matmul(x, self.weights(params), &mut y, 1.0);
    }

    /// [`Dense::forward`] for an input given by its nonzeros (the image batch): the same bits.
    /// x: [batch, in] · w: [in, out] + b: [out] -> y: [batch, out]
    pub fn forward_sparse(&self, params: &[f32], x: &SparseRows, mut y: ArrayViewMut2<f32>) {
        self.fill_bias(params, &mut y);
        sparse_matmul(x, self.weights(params), &mut y, 1.0);
    }

    /// Every row of `y` = b.
    fn fill_bias(&self, params: &[f32], y: &mut ArrayViewMut2<f32>) {
        let bias = &params[self.bias.clone()];
        for mut row in y.rows_mut() {
            row.as_slice_mut()
                .expect("contiguous rows")
                .copy_from_slice(bias);
        }
    }

    /// grad_y: [batch, out] -> grad_w += xᵀ · grad_y: [in, out], grad_b += Σ_batch grad_y: [out],
    /// and, when asked for, grad_x = grad_y · wᵀ: [batch, in].
    /// Parameter gradients accumulate when `accumulate` is true, so a large batch can be processed
    /// in chunks; they are overwritten otherwise (saves clearing the buffer before the first chunk).
    pub fn backward_into(
        &self,
        params: &[f32],
        x: ArrayView2<f32>,
        grad_y: ArrayView2<f32>,
        grads: &mut [f32],
        grad_x: Option<ArrayViewMut2<f32>>,
        accumulate: bool,
    ) {
        let beta = if accumulate { 1.0 } else { 0.0 };
        // x: [batch, in]ᵀ · grad_y: [batch, out] -> [in, out]
        matmul(x.t(), grad_y, &mut self.weight_gradient(grads), beta);
        self.bias_gradient(grad_y, grads, accumulate);
        if let Some(grad_x) = grad_x {
            self.backward_input(params, grad_y, grad_x);
        }
    }

    /// [`Dense::backward_into`] without the input's gradient, for an input given by its nonzeros
    /// (the image batch): the same bits.
    pub fn backward_sparse(
        &self,
        x: &SparseRows,
        grad_y: ArrayView2<f32>,
        grads: &mut [f32],
        accumulate: bool,
    ) {
        let beta = if accumulate { 1.0 } else { 0.0 };
        // x: [batch, in]ᵀ · grad_y: [batch, out] -> [in, out]
        let mut grad_w = self.weight_gradient(grads);
        sparse_transposed_matmul(&[(x, grad_y)], &mut grad_w, beta, None);
        self.bias_gradient(grad_y, grads, accumulate);
    }

    /// The weights' part of a gradient buffer: [in, out].
    fn weight_gradient<'a>(&self, grads: &'a mut [f32]) -> ArrayViewMut2<'a, f32> {
        ArrayViewMut2::from_shape(
            (self.inputs, self.outputs),
            &mut grads[self.weights.clone()],
        )
        .expect("layout matches buffer")
    }

    /// Σ over the batch of grad_y: [batch, out] -> the bias gradient [out] (+=)
    fn bias_gradient(&self, grad_y: ArrayView2<f32>, grads: &mut [f32], accumulate: bool) {
        let grad_y_rows = grad_y
            .as_slice()
            .expect("gradients are contiguous row-major buffers");
        sum_rows_into(grad_y_rows, &mut grads[self.bias.clone()], accumulate);
    }

    /// Adds this layer's share of every example's squared gradient norm to `norms_sq` without
    /// forming per-example gradients: example i's weight gradient is the outer product x_i ⊗ δ_i,
    /// whose squared norm is ‖x_i‖²·‖δ_i‖², and its bias gradient is δ_i (Goodfellow 2015).
    /// x: [batch, in], grad_y: [batch, out] -> norms_sq: [batch] (+=)
    pub fn add_example_gradient_norms_sq(
        &self,
        x: ArrayView2<f32>,
        grad_y: ArrayView2<f32>,
        norms_sq: &mut [f32],
    ) {
        let x = x
            .as_slice()
            .expect("inputs are contiguous row-major buffers");
        let grad_y = grad_y
            .as_slice()
            .expect("gradients are contiguous row-major buffers");
        let rows = x
            .chunks_exact(self.inputs)
            .zip(grad_y.chunks_exact(self.outputs));
        for ((x_row, grad_row), norm_sq) in rows.zip(norms_sq) {
            *norm_sq += sum_of_squares(grad_row) * (sum_of_squares(x_row) + 1.0);
        }
    }

    /// The input's gradient alone, without parameter gradients (attributions need only this).
    /// grad_y: [batch, out] · wᵀ: [out, in] -> grad_x: [batch, in]
    pub fn backward_input(
        &self,
        params: &[f32],
        grad_y: ArrayView2<f32>,
        mut grad_x: ArrayViewMut2<f32>,
    ) {
        matmul(grad_y, self.weights(params).t(), &mut grad_x, 0.0);
    }
}

/// The first `rows` rows of a row-major buffer of `cols` columns, as a matrix.
pub fn rows_view(buffer: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &buffer[..rows * cols]).expect("buffer fits the shape")
}

/// [`rows_view`], mutable.
pub fn rows_view_mut(buffer: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut buffer[..rows * cols])
        .expect("buffer fits the shape")
}
