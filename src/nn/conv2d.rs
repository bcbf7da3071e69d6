//! 2-D convolution (stride 1, no padding) as one matrix product: im2col + GEMM.
//!
//! Activations are channels-last (NHWC), so each output pixel's receptive field is `kernel`
//! rows of `kernel · in_channels` contiguous values. im2col copies them into one row of `col`:
//! `col: [batch · out_h · out_w, kernel · kernel · in_channels]`. Weights are stored as Keras
//! does, `[kernel, kernel, in_channels, filters]` = `[patch, filters]`, so the whole layer is
//! `y = col · w + b` with `y: [batch · out_h · out_w, filters]`, which is NHWC again. PyTorch's
//! `[filters, in_channels, kernel, kernel]` is produced at the export edge.
//!
//! Where the backend can ([`walked_matmul`]: our x86 kernels), the products read `col` straight
//! from the images instead of a copy: the same values in the same order, so the same bits, without
//! writing and rereading a matrix 9–288 times the image's size. Elsewhere `col` is built.

use std::ops::Range;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::kernels::{
    matmul, relu_forward, sum_of_squares, sum_rows_into, walked_matmul, ProductStart, Walk,
    WalkedMatrix,
};
use crate::rng::Rng;

/// One convolution's shapes and its place in the flat parameter buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub in_height: usize,
    pub in_width: usize,
    pub in_channels: usize,
    pub filters: usize,
    pub kernel: usize,
    /// `[kernel, kernel, in_channels, filters]`, row-major.
    pub weights: Range<usize>,
    /// `[filters]`
    pub bias: Range<usize>,
}

impl Conv2d {
    pub fn out_height(&self) -> usize {
        self.in_height + 1 - self.kernel
    }

    pub fn out_width(&self) -> usize {
        self.in_width + 1 - self.kernel
    }

    /// Values in one receptive field: a row of `col`, a row of the weight matrix.
    pub fn patch_len(&self) -> usize {
        self.kernel * self.kernel * self.in_channels
    }

    pub fn in_len(&self) -> usize {
        self.in_height * self.in_width * self.in_channels
    }

    pub fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    pub fn out_len(&self) -> usize {
        self.out_pixels() * self.filters
    }

    /// The weights as the `[patch, filters]` matrix.
    fn weight_matrix<'a>(&self, params: &'a [f32]) -> ArrayView2<'a, f32> {
        ArrayView2::from_shape(
            (self.patch_len(), self.filters),
            &params[self.weights.clone()],
        )
        .expect("layout matches buffer")
    }

    /// Glorot-uniform weights (Keras' default: fan_in = k·k·in, fan_out = k·k·filters), zero biases.
    pub fn initialize(&self, params: &mut [f32], rng: &mut Rng) {
        let area = self.kernel * self.kernel;
        let limit = (6.0 / (area * (self.in_channels + self.filters)) as f32).sqrt();
        for weight in &mut params[self.weights.clone()] {
            *weight = (rng.next_f32() * 2.0 - 1.0) * limit;
        }
        params[self.bias.clone()].fill(0.0);
    }

    /// The im2col matrix of `rows` images of `x`, read in place:
    /// x: [rows, in_h, in_w, in_c] -> [rows · out_h · out_w, k · k · in_c]
    fn patches<'a>(&self, x: &'a [f32], rows: usize) -> WalkedMatrix<'a> {
        WalkedMatrix {
            data: &x[..rows * self.in_len()],
            shape: (rows * self.out_pixels(), self.patch_len()),
            rows: Walk::conv_pixels(self.in_height, self.in_width, self.in_channels, self.kernel),
            cols: Walk::conv_patch(self.in_width, self.in_channels, self.kernel),
        }
    }

    /// Its transpose: [k · k · in_c, rows · out_h · out_w]
    fn patches_transposed<'a>(&self, x: &'a [f32], rows: usize) -> WalkedMatrix<'a> {
        let patches = self.patches(x, rows);
        WalkedMatrix {
            data: patches.data,
            shape: (patches.shape.1, patches.shape.0),
            rows: patches.cols,
            cols: patches.rows,
        }
    }

    /// x: [rows, in_h, in_w, in_c] -> col: [rows · out_h · out_w, k · k · in_c]
    pub fn im2col(&self, x: &[f32], rows: usize, col: &mut [f32]) {
        let (k, c) = (self.kernel, self.in_channels);
        let span = k * c;
        let in_row_stride = self.in_width * c;
        let mut patches =
            col[..rows * self.out_pixels() * self.patch_len()].chunks_exact_mut(self.patch_len());
        for image in x[..rows * self.in_len()].chunks_exact(self.in_len()) {
            for oy in 0..self.out_height() {
                for ox in 0..self.out_width() {
                    let patch = patches.next().expect("col sized for the batch");
                    for (ky, patch_row) in patch.chunks_exact_mut(span).enumerate() {
                        let start = (oy + ky) * in_row_stride + ox * c;
                        // An element loop, not copy_from_slice: spans are short (3 values for
                        // a 3×3 kernel on one channel), where a memcpy call costs more than the copy.
                        for (value, &pixel) in patch_row.iter_mut().zip(&image[start..start + span])
                        {
                            *value = pixel;
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Conv2d::im2col`]: every patch value is added back where it came from.
    /// grad_col: [rows · out_h · out_w, k · k · in_c] -> grad_x: [rows, in_h, in_w, in_c]
    pub fn col2im(&self, grad_col: &[f32], rows: usize, grad_x: &mut [f32]) {
        let (k, c) = (self.kernel, self.in_channels);
        let span = k * c;
        let in_row_stride = self.in_width * c;
        let grad_x = &mut grad_x[..rows * self.in_len()];
        grad_x.fill(0.0);
        let mut patches = grad_col.chunks_exact(self.patch_len());
        for image in grad_x.chunks_exact_mut(self.in_len()) {
            for oy in 0..self.out_height() {
                for ox in 0..self.out_width() {
                    let patch = patches.next().expect("grad_col sized for the batch");
                    for ky in 0..k {
                        let start = (oy + ky) * in_row_stride + ox * c;
                        let target = &mut image[start..start + span];
                        for (t, &g) in target.iter_mut().zip(&patch[ky * span..(ky + 1) * span]) {
                            *t += g;
                        }
                    }
                }
            }
        }
    }

    /// x: [rows, in_h, in_w, in_c] · w: [k, k, in_c, f] + b: [f] -> y: [rows, out_h, out_w, f]
    /// (`col` receives the patches for backward where the backend cannot read them in place).
    pub fn forward(&self, params: &[f32], x: &[f32], rows: usize, col: &mut [f32], y: &mut [f32]) {
        self.forward_then(params, (x, rows), col, y, false);
    }

    /// [`Conv2d::forward`], then, with `relu`, a ReLU on `y` (in the product's last step where
    /// the backend can: the same bits as `relu_forward` afterwards).
    pub fn forward_then(
        &self,
        params: &[f32],
        (x, rows): (&[f32], usize),
        col: &mut [f32],
        y: &mut [f32],
        relu: bool,
    ) {
        let pixels = rows * self.out_pixels();
        let bias = &params[self.bias.clone()];
        let y = &mut y[..pixels * self.filters];
        let mut y = ArrayViewMut2::from_shape((pixels, self.filters), y).expect("y shape");
        let weights = self.weight_matrix(params);
        let start = if relu {
            ProductStart::BiasRelu(bias)
        } else {
            ProductStart::Bias(bias)
        };
        if walked_matmul(&self.patches(x, rows), weights, &mut y, start) {
            return;
        }
        let col = &mut col[..pixels * self.patch_len()];
        self.im2col(x, rows, col);
        for mut pixel in y.rows_mut() {
            pixel.assign(&ArrayView1::from(bias));
        }
        let col = ArrayView2::from_shape((pixels, self.patch_len()), &*col).expect("col shape");
        matmul(col, weights, &mut y, 1.0);
        if relu {
            relu_forward(y.as_slice_mut().expect("y is contiguous"));
        }
    }

    /// grad_w (+)= colᵀ · grad_y: [k·k·in_c, f], with `col` read from `x` in place where the
    /// backend can, else from the `col` forward built.
    /// x: [rows, in_h, in_w, in_c], grad_y: [rows · out_h · out_w, f]
    fn weight_gradient(
        &self,
        (x, col): (&[f32], &[f32]),
        grad_y: &[f32],
        rows: usize,
        grad_w: &mut [f32],
        accumulate: bool,
    ) {
        let (pixels, patch) = (rows * self.out_pixels(), self.patch_len());
        let grad_y =
            ArrayView2::from_shape((pixels, self.filters), &grad_y[..pixels * self.filters])
                .expect("grad_y shape");
        let mut grad_w =
            ArrayViewMut2::from_shape((patch, self.filters), grad_w).expect("grad_w shape");
        let start = if accumulate {
            ProductStart::Accumulate
        } else {
            ProductStart::Zero
        };
        if walked_matmul(
            &self.patches_transposed(x, rows),
            grad_y,
            &mut grad_w,
            start,
        ) {
            return;
        }
        let col =
            ArrayView2::from_shape((pixels, patch), &col[..pixels * patch]).expect("col shape");
        // col: [pixels, patch]ᵀ · grad_y: [pixels, f] -> [patch, f]
        matmul(
            col.t(),
            grad_y,
            &mut grad_w,
            if accumulate { 1.0 } else { 0.0 },
        );
    }

    /// grad_y: [rows, out_h, out_w, f] -> grad_w (+)= colᵀ · grad_y: [k·k·in_c, f],
    /// grad_b (+)= Σ_pixels grad_y: [f], and when asked grad_x = col2im(grad_y · wᵀ): [rows, in_h, in_w, in_c]
    /// (`grad_col` is scratch of col's size). `x` is forward's input and `col` what forward left
    /// there. Parameter gradients accumulate unless `accumulate` is false.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        (x, col): (&[f32], &[f32]),
        grad_y: &[f32],
        rows: usize,
        grads: &mut [f32],
        grad_x: Option<(&mut [f32], &mut [f32])>,
        accumulate: bool,
    ) {
        let grad_y = &grad_y[..rows * self.out_len()];
        let grad_w = &mut grads[self.weights.clone()];
        self.weight_gradient((x, col), grad_y, rows, grad_w, accumulate);
        sum_rows_into(grad_y, &mut grads[self.bias.clone()], accumulate);
        if let Some(grad_x) = grad_x {
            self.backward_input(params, (grad_y, rows), grad_x);
        }
    }
}

impl Conv2d {
    /// The input's gradient alone, without parameter gradients:
    /// grad_y: [rows, out_h, out_w, f] -> grad_x = col2im(grad_y · wᵀ): [rows, in_h, in_w, in_c]
    /// (`grad_col` is scratch of col's size).
    pub fn backward_input(
        &self,
        params: &[f32],
        (grad_y, rows): (&[f32], usize),
        (grad_x, grad_col): (&mut [f32], &mut [f32]),
    ) {
        let pixels = rows * self.out_pixels();
        let patch = self.patch_len();
        let grad_y_matrix =
            ArrayView2::from_shape((pixels, self.filters), &grad_y[..pixels * self.filters])
                .expect("grad_y shape");
        let grad_col = &mut grad_col[..pixels * patch];
        {
            let mut grad_col_matrix =
                ArrayViewMut2::from_shape((pixels, patch), &mut *grad_col).expect("grad_col shape");
            // grad_y: [pixels, f] · wᵀ: [f, patch] -> [pixels, patch]
            matmul(
                grad_y_matrix,
                self.weight_matrix(params).t(),
                &mut grad_col_matrix,
                0.0,
            );
        }
        self.col2im(grad_col, rows, grad_x);
    }

    /// Floats of scratch [`Conv2d::add_example_gradient_norms_sq`] needs: one example's weight
    /// gradient and bias gradient.
    pub fn norm_scratch_len(&self) -> usize {
        self.patch_len() * self.filters + self.filters
    }

    /// Adds this layer's share of every example's squared gradient norm to `norms_sq`. Example
    /// i's weight gradient is Σ over its output pixels p of col_p ⊗ δ_p = col_iᵀ · δ_i (its
    /// im2col rows and output gradients); it is formed in `scratch` (one [patch, f] product per
    /// example: 9·676·32 multiply-adds for conv32x3 on 28×28, 288·121·64 for conv64x3 on 13×13),
    /// which takes fewer operations than the Gram-matrix ("ghost") form
    /// Σ_{p,q} (col_p·col_q)(δ_p·δ_q) here (676²·(9+32) and 121²·(288+64)). Its bias
    /// gradient is Σ_p δ_p.
    /// col: [rows · pixels, patch], grad_y: [rows · pixels, f] -> norms_sq: [rows] (+=)
    pub fn add_example_gradient_norms_sq(
        &self,
        (x, col): (&[f32], &[f32]),
        grad_y: &[f32],
        rows: usize,
        scratch: &mut [f32],
        norms_sq: &mut [f32],
    ) {
        let (pixels, patch, filters) = (self.out_pixels(), self.patch_len(), self.filters);
        let (weight_grad, bias_grad) =
            scratch[..self.norm_scratch_len()].split_at_mut(patch * filters);
        for (example, norm_sq) in norms_sq[..rows].iter_mut().enumerate() {
            let example_x = &x[example * self.in_len()..(example + 1) * self.in_len()];
            let example_col = &col[example * pixels * patch..];
            let example_grad =
                &grad_y[example * pixels * filters..(example + 1) * pixels * filters];
            self.weight_gradient(
                (example_x, example_col),
                example_grad,
                1,
                weight_grad,
                false,
            );
            sum_rows_into(example_grad, bias_grad, false);
            *norm_sq += sum_of_squares(weight_grad) + sum_of_squares(bias_grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::kernels::{with_backend, Backend};
    use crate::rng::Rng;

    fn layer(
        in_height: usize,
        in_width: usize,
        in_channels: usize,
        filters: usize,
        kernel: usize,
    ) -> Conv2d {
        let weights = 0..kernel * kernel * in_channels * filters;
        let bias = weights.end..weights.end + filters;
        Conv2d {
            in_height,
            in_width,
            in_channels,
            filters,
            kernel,
            weights,
            bias,
        }
    }

    fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    #[allow(clippy::needless_range_loop)]
    /// y[b, oy, ox, f] = b[f] + Σ_{ky, kx, c} x[b, oy+ky, ox+kx, c] · w[ky, kx, c, f], in f64.
    fn direct_convolution(conv: &Conv2d, params: &[f32], x: &[f32], rows: usize) -> Vec<f64> {
        let (k, c, f) = (conv.kernel, conv.in_channels, conv.filters);
        let w = &params[conv.weights.clone()];
        let b = &params[conv.bias.clone()];
        let mut y = Vec::new();
        for image in 0..rows {
            for oy in 0..conv.out_height() {
                for ox in 0..conv.out_width() {
                    for filter in 0..f {
                        let mut sum = b[filter] as f64;
                        for ky in 0..k {
                            for kx in 0..k {
                                for channel in 0..c {
                                    let xi = ((image * conv.in_height + oy + ky) * conv.in_width
                                        + ox
                                        + kx)
                                        * c
                                        + channel;
                                    let wi = ((ky * k + kx) * c + channel) * f + filter;
                                    sum += x[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                        y.push(sum);
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_a_direct_convolution_on_random_shapes() {
        let mut rng = Rng::from_u64(7);
        for (h, w, c, f, k, rows) in [
            (28, 28, 1, 32, 3, 2),
            (13, 13, 32, 64, 3, 1),
            (9, 7, 3, 5, 2, 3),
            (6, 8, 4, 1, 5, 2),
            (5, 5, 2, 3, 1, 1),
            (4, 4, 16, 8, 4, 2),
        ] {
            let conv = layer(h, w, c, f, k);
            let params = random(conv.bias.end, &mut rng);
            let x = random(rows * conv.in_len(), &mut rng);
            let mut col = vec![0.0; rows * conv.out_pixels() * conv.patch_len()];
            let mut y = vec![0.0; rows * conv.out_len()];
            conv.forward(&params, &x, rows, &mut col, &mut y);
            let expected = direct_convolution(&conv, &params, &x, rows);
            assert_eq!(y.len(), expected.len());
            for (index, (&got, &want)) in y.iter().zip(&expected).enumerate() {
                assert!(
                    (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{h}x{w}x{c} -> {f} filters of {k}x{k}, value {index}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn reading_patches_in_place_gives_the_bits_of_the_im2col_copy() {
        let mut rng = Rng::from_u64(11);
        for (h, w, c, f, k, rows) in [
            (28, 28, 1, 32, 3, 3),
            (13, 13, 32, 64, 3, 2),
            (7, 9, 5, 3, 2, 4),
        ] {
            let conv = layer(h, w, c, f, k);
            let params = random(conv.bias.end, &mut rng);
            let x = random(rows * conv.in_len(), &mut rng);
            let pixels = rows * conv.out_pixels();
            let grad_y = random(pixels * f, &mut rng);
            let mut col = vec![0.0; pixels * conv.patch_len()];
            conv.im2col(&x, rows, &mut col);
            for backend in Backend::supported() {
                with_backend(backend, || {
                    let mut y = vec![0.0; rows * conv.out_len()];
                    conv.forward(&params, &x, rows, &mut vec![0.0; col.len()], &mut y);
                    let mut want =
                        Array2::from_shape_fn((pixels, f), |(_, j)| params[conv.bias.start + j]);
                    let col_matrix =
                        ArrayView2::from_shape((pixels, conv.patch_len()), &col[..]).unwrap();
                    matmul(
                        col_matrix,
                        conv.weight_matrix(&params),
                        &mut want.view_mut(),
                        1.0,
                    );
                    assert_eq!(
                        bits(&y),
                        bits(want.as_slice().unwrap()),
                        "{backend:?} forward {h}x{w}x{c}"
                    );

                    let mut grad_w = random(conv.patch_len() * f, &mut Rng::from_u64(5));
                    let mut want =
                        Array2::from_shape_vec((conv.patch_len(), f), grad_w.clone()).unwrap();
                    conv.weight_gradient((&x, &col), &grad_y, rows, &mut grad_w, true);
                    let grad_y_matrix = ArrayView2::from_shape((pixels, f), &grad_y[..]).unwrap();
                    matmul(col_matrix.t(), grad_y_matrix, &mut want.view_mut(), 1.0);
                    assert_eq!(
                        bits(&grad_w),
                        bits(want.as_slice().unwrap()),
                        "{backend:?} weight gradient {h}x{w}x{c}"
                    );
                });
            }
        }
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), g> = <x, col2im(g)> for any x, g: the defining property of the backward pass.
        let mut rng = Rng::from_u64(3);
        let conv = layer(7, 6, 3, 2, 3);
        let rows = 2;
        let x = random(rows * conv.in_len(), &mut rng);
        let g = random(rows * conv.out_pixels() * conv.patch_len(), &mut rng);
        let mut col = vec![0.0; g.len()];
        conv.im2col(&x, rows, &mut col);
        let mut back = vec![0.0; x.len()];
        conv.col2im(&g, rows, &mut back);
        let left: f64 = col.iter().zip(&g).map(|(&a, &b)| a as f64 * b as f64).sum();
        let right: f64 = x
            .iter()
            .zip(&back)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        assert!((left - right).abs() < 1e-4, "{left} vs {right}");
    }

    #[test]
    fn glorot_limit_uses_the_receptive_field() {
        let conv = layer(28, 28, 1, 32, 3);
        let mut params = vec![1.0; conv.bias.end];
        conv.initialize(&mut params, &mut Rng::from_u64(1));
        let limit = (6.0f32 / (9.0 * 33.0)).sqrt();
        let weights = &params[conv.weights.clone()];
        assert!(weights.iter().all(|w| w.abs() <= limit));
        assert!(weights.iter().any(|w| w.abs() > 0.9 * limit));
        assert!(params[conv.bias.clone()].iter().all(|&b| b == 0.0));
    }
}
