//! 2-D convolution (stride 1, no padding) as one matrix product: im2col + GEMM.
//!
//! Activations are channels-last (NHWC), so each output pixel's receptive field is `kernel`
//! rows of `kernel · in_channels` contiguous values. im2col copies them into one row of `col`:
//! `col: [batch · out_h · out_w, kernel · kernel · in_channels]`. Weights are stored as Keras
//! does, `[kernel, kernel, in_channels, filters]` = `[patch, filters]`, so the whole layer is
//! `y = col · w + b` with `y: [batch · out_h · out_w, filters]`, which is NHWC again. PyTorch's
//! `[filters, in_channels, kernel, kernel]` is produced at the export edge.

use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels::{matmul, sum_of_squares, sum_rows_into};
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
                    for ky in 0..k {
                        let start = (oy + ky) * in_row_stride + ox * c;
                        patch[ky * span..(ky + 1) * span]
                            .copy_from_slice(&image[start..start + span]);
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
    /// (`col` keeps the patches for backward).
    pub fn forward(&self, params: &[f32], x: &[f32], rows: usize, col: &mut [f32], y: &mut [f32]) {
        let pixels = rows * self.out_pixels();
        let col = &mut col[..pixels * self.patch_len()];
        self.im2col(x, rows, col);
        let bias = &params[self.bias.clone()];
        let y = &mut y[..pixels * self.filters];
        for pixel in y.chunks_exact_mut(self.filters) {
            pixel.copy_from_slice(bias);
        }
        let col = ArrayView2::from_shape((pixels, self.patch_len()), &*col).expect("col shape");
        let mut y = ArrayViewMut2::from_shape((pixels, self.filters), y).expect("y shape");
        matmul(col, self.weight_matrix(params), &mut y, 1.0);
    }

    /// grad_y: [rows, out_h, out_w, f] -> grad_w (+)= colᵀ · grad_y: [k·k·in_c, f],
    /// grad_b (+)= Σ_pixels grad_y: [f], and when asked grad_x = col2im(grad_y · wᵀ): [rows, in_h, in_w, in_c]
    /// (`grad_col` is scratch of col's size). Parameter gradients accumulate unless `accumulate` is false.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        col: &[f32],
        grad_y: &[f32],
        rows: usize,
        grads: &mut [f32],
        grad_x: Option<(&mut [f32], &mut [f32])>,
        accumulate: bool,
    ) {
        let pixels = rows * self.out_pixels();
        let patch = self.patch_len();
        let grad_y = &grad_y[..pixels * self.filters];
        let col =
            ArrayView2::from_shape((pixels, patch), &col[..pixels * patch]).expect("col shape");
        let grad_y_matrix =
            ArrayView2::from_shape((pixels, self.filters), grad_y).expect("grad_y shape");
        {
            let mut grad_w =
                ArrayViewMut2::from_shape((patch, self.filters), &mut grads[self.weights.clone()])
                    .expect("layout matches buffer");
            // col: [pixels, patch]ᵀ · grad_y: [pixels, f] -> [patch, f]
            matmul(
                col.t(),
                grad_y_matrix,
                &mut grad_w,
                if accumulate { 1.0 } else { 0.0 },
            );
        }
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
        col: &[f32],
        grad_y: &[f32],
        rows: usize,
        scratch: &mut [f32],
        norms_sq: &mut [f32],
    ) {
        let (pixels, patch, filters) = (self.out_pixels(), self.patch_len(), self.filters);
        let (weight_grad, bias_grad) =
            scratch[..self.norm_scratch_len()].split_at_mut(patch * filters);
        let examples = col[..rows * pixels * patch]
            .chunks_exact(pixels * patch)
            .zip(grad_y[..rows * pixels * filters].chunks_exact(pixels * filters));
        for ((example_col, example_grad), norm_sq) in examples.zip(&mut norms_sq[..rows]) {
            let col = ArrayView2::from_shape((pixels, patch), example_col).expect("col shape");
            let grad = ArrayView2::from_shape((pixels, filters), example_grad).expect("grad shape");
            let mut weights = ArrayViewMut2::from_shape((patch, filters), &mut *weight_grad)
                .expect("scratch shape");
            matmul(col.t(), grad, &mut weights, 0.0);
            sum_rows_into(example_grad, bias_grad, false);
            *norm_sq += sum_of_squares(weight_grad) + sum_of_squares(bias_grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
