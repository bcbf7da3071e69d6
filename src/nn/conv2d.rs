//! 2-D convolution (stride 1, no padding) as one matrix product (im2col + GEMM), or for 3×3
//! kernels over many channels as Winograd F(2×2, 3×3) (16 smaller products).
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
//!
//! 3×3 convolutions over at least [`WINOGRAD_MIN_CHANNELS`] input channels (the CNN's second) run
//! as Winograd F(2×2, 3×3) instead, on every backend: 16 products of [tiles, c] · [c, f], 16
//! multiply-adds per 2×2 output tile and channel pair instead of 36 (`kernels::winograd` has
//! the algebra). Forward leaves the transformed weights and input tiles in `col` for backward.

use std::ops::Range;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::kernels::{
    matmul, relu_forward, sum_of_squares, sum_rows_into, walked_matmul,
    winograd_input_gradient_transform, winograd_input_transform,
    winograd_output_gradient_transform, winograd_output_transform,
    winograd_weight_gradient_transform, winograd_weight_transform, ProductStart, Walk,
    WalkedMatrix, WinogradShape, WINOGRAD_POSITIONS,
};
use crate::rng::Rng;

/// Input channels from which a 3×3 convolution runs as Winograd F(2×2, 3×3): with fewer, its
/// products are too thin (k = channels) to gain from doing fewer of them.
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

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

    /// Whether the layer runs as Winograd F(2×2, 3×3) (see the module's notes).
    pub fn uses_winograd(&self) -> bool {
        self.kernel == 3 && self.in_channels >= WINOGRAD_MIN_CHANNELS
    }

    fn winograd_shape(&self, rows: usize) -> WinogradShape {
        WinogradShape {
            rows,
            in_height: self.in_height,
            in_width: self.in_width,
            in_channels: self.in_channels,
            filters: self.filters,
        }
    }

    /// Floats of `col` for passes of up to `rows` images (saturating): the im2col matrix
    /// `[rows · out pixels, patch]`, or for Winograd `[U | V | M]` (transformed weights, input
    /// tiles and products).
    pub fn col_len(&self, rows: usize) -> usize {
        if self.uses_winograd() {
            let shape = self.winograd_shape(rows);
            shape
                .weight_planes_len()
                .saturating_add(shape.input_planes_len())
                .saturating_add(shape.output_planes_len())
        } else {
            rows.saturating_mul(self.out_pixels())
                .saturating_mul(self.patch_len())
        }
    }

    /// Floats of backward's scratch for passes of up to `rows` images (saturating): the input
    /// gradient's im2col matrix, or for Winograd `[dM | dU | dV]`.
    pub fn scratch_len(&self, rows: usize) -> usize {
        self.col_len(rows)
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
    /// (`col` receives what backward reads: the patches where the backend cannot read them in
    /// place, or for Winograd the transformed weights and input tiles).
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
        if self.uses_winograd() {
            self.forward_winograd(params, (x, rows), col, y, relu);
        } else {
            self.forward_im2col(params, (x, rows), col, y, relu);
        }
    }

    /// Forward as one product over the patches (read in place or copied to `col`).
    fn forward_im2col(
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
    /// (for Winograd: dw = Gᵀ (Vᵀ dM) G and grad_x = Σ B (dM Uᵀ) Bᵀ with dM = A grad_y Aᵀ)
    /// (`scratch`: [`Conv2d::scratch_len`] floats). `x` is forward's input and `col` what forward
    /// left there. Parameter gradients accumulate unless `accumulate` is false.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        (x, col): (&[f32], &[f32]),
        grad_y: &[f32],
        rows: usize,
        grads: &mut [f32],
        (grad_x, scratch): (Option<&mut [f32]>, &mut [f32]),
        accumulate: bool,
    ) {
        let grad_y = &grad_y[..rows * self.out_len()];
        sum_rows_into(grad_y, &mut grads[self.bias.clone()], accumulate);
        let grad_w = &mut grads[self.weights.clone()];
        if self.uses_winograd() {
            let shape = self.winograd_shape(rows);
            let (u, v, _) = self.winograd_col(col, shape);
            let (dm, du, dv) = self.winograd_scratch(scratch, shape);
            winograd_output_gradient_transform(grad_y, dm, shape);
            let all_tiles = (v, 0..shape.tiles());
            self.winograd_weight_gradient(all_tiles, (&*dm, du), grad_w, accumulate);
            if let Some(grad_x) = grad_x {
                self.winograd_input_gradient(shape, (u, &*dm), dv, grad_x);
            }
            return;
        }
        self.weight_gradient((x, col), grad_y, rows, grad_w, accumulate);
        if let Some(grad_x) = grad_x {
            self.backward_input(params, col, (grad_y, rows), (grad_x, scratch));
        }
    }

    /// Forward as Winograd F(2×2, 3×3): U = G w Gᵀ, V = Bᵀ d B, M_ξ = V_ξ · U_ξ, y = bias + Aᵀ M A.
    /// x: [rows, in_h, in_w, in_c] -> y: [rows, out_h, out_w, f]; col receives [U | V | M].
    fn forward_winograd(
        &self,
        params: &[f32],
        (x, rows): (&[f32], usize),
        col: &mut [f32],
        y: &mut [f32],
        relu: bool,
    ) {
        let shape = self.winograd_shape(rows);
        let (c, f, tiles) = (self.in_channels, self.filters, shape.tiles());
        let (u, rest) = col.split_at_mut(shape.weight_planes_len());
        let (v, m) = rest.split_at_mut(shape.input_planes_len());
        winograd_weight_transform(&params[self.weights.clone()], u, c * f);
        winograd_input_transform(x, v, shape);
        // M_ξ = V_ξ · U_ξ: [tiles, c] · [c, f] -> [tiles, f]
        for position in 0..WINOGRAD_POSITIONS {
            matmul(
                plane(v, position, (tiles, c)),
                plane(u, position, (c, f)),
                &mut plane_mut(m, position, (tiles, f)),
                0.0,
            );
        }
        let bias = &params[self.bias.clone()];
        winograd_output_transform(m, bias, &mut y[..rows * self.out_len()], shape, relu);
    }

    /// U and V as forward left them in `col` (and the rest of it).
    fn winograd_col<'a>(
        &self,
        col: &'a [f32],
        shape: WinogradShape,
    ) -> (&'a [f32], &'a [f32], &'a [f32]) {
        let (u, rest) = col.split_at(shape.weight_planes_len());
        let (v, rest) = rest.split_at(shape.input_planes_len());
        (u, v, rest)
    }

    /// Backward's scratch as [dM | dU | dV].
    fn winograd_scratch<'a>(
        &self,
        scratch: &'a mut [f32],
        shape: WinogradShape,
    ) -> (&'a mut [f32], &'a mut [f32], &'a mut [f32]) {
        let (dm, rest) = scratch.split_at_mut(shape.output_planes_len());
        let (du, rest) = rest.split_at_mut(shape.weight_planes_len());
        (dm, du, &mut rest[..shape.input_planes_len()])
    }

    /// dU_ξ = V_ξᵀ · dM_ξ over the tiles `tiles` of V: [c, n] · [n, f] -> [c, f], then
    /// grad_w (+)= Gᵀ dU G. `dm` holds those n tiles' planes.
    fn winograd_weight_gradient(
        &self,
        (v, tiles): (&[f32], Range<usize>),
        (dm, du): (&[f32], &mut [f32]),
        grad_w: &mut [f32],
        accumulate: bool,
    ) {
        let (c, f) = (self.in_channels, self.filters);
        let v_tiles = v.len() / (WINOGRAD_POSITIONS * c);
        for position in 0..WINOGRAD_POSITIONS {
            let v_plane = plane(v, position, (v_tiles, c));
            matmul(
                v_plane.slice(ndarray::s![tiles.clone(), ..]).t(),
                plane(dm, position, (tiles.len(), f)),
                &mut plane_mut(du, position, (c, f)),
                0.0,
            );
        }
        winograd_weight_gradient_transform(du, grad_w, c * f, accumulate);
    }

    /// dV_ξ = dM_ξ · U_ξᵀ: [tiles, f] · [f, c] -> [tiles, c], then grad_x = Σ_tiles B dV Bᵀ.
    fn winograd_input_gradient(
        &self,
        shape: WinogradShape,
        (u, dm): (&[f32], &[f32]),
        dv: &mut [f32],
        grad_x: &mut [f32],
    ) {
        let (c, f, tiles) = (self.in_channels, self.filters, shape.tiles());
        for position in 0..WINOGRAD_POSITIONS {
            matmul(
                plane(dm, position, (tiles, f)),
                plane(u, position, (c, f)).t(),
                &mut plane_mut(dv, position, (tiles, c)),
                0.0,
            );
        }
        winograd_input_gradient_transform(dv, grad_x, shape);
    }
}

/// Plane `position` of a `[16, rows, cols]` buffer as a matrix.
fn plane(values: &[f32], position: usize, (rows, cols): (usize, usize)) -> ArrayView2<'_, f32> {
    let len = rows * cols;
    ArrayView2::from_shape((rows, cols), &values[position * len..(position + 1) * len])
        .expect("plane fits its buffer")
}

fn plane_mut(
    values: &mut [f32],
    position: usize,
    (rows, cols): (usize, usize),
) -> ArrayViewMut2<'_, f32> {
    let len = rows * cols;
    ArrayViewMut2::from_shape(
        (rows, cols),
        &mut values[position * len..(position + 1) * len],
    )
    .expect("plane fits its buffer")
}

impl Conv2d {
    /// The input's gradient alone, without parameter gradients:
    /// grad_y: [rows, out_h, out_w, f] -> grad_x = col2im(grad_y · wᵀ): [rows, in_h, in_w, in_c]
    /// (for Winograd Σ B (dM Uᵀ) Bᵀ; `col` is what forward left there, `scratch` [`Conv2d::scratch_len`] floats).
    pub fn backward_input(
        &self,
        params: &[f32],
        col: &[f32],
        (grad_y, rows): (&[f32], usize),
        (grad_x, scratch): (&mut [f32], &mut [f32]),
    ) {
        if self.uses_winograd() {
            let shape = self.winograd_shape(rows);
            let (u, _, _) = self.winograd_col(col, shape);
            let (dm, _, dv) = self.winograd_scratch(scratch, shape);
            winograd_output_gradient_transform(grad_y, dm, shape);
            return self.winograd_input_gradient(shape, (u, &*dm), dv, grad_x);
        }
        let pixels = rows * self.out_pixels();
        let patch = self.patch_len();
        let grad_y_matrix =
            ArrayView2::from_shape((pixels, self.filters), &grad_y[..pixels * self.filters])
                .expect("grad_y shape");
        let grad_col = &mut scratch[..pixels * patch];
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
    /// gradient and bias gradient (for Winograd, also its dM and dU).
    pub fn norm_scratch_len(&self) -> usize {
        let gradients = self.patch_len() * self.filters + self.filters;
        if self.uses_winograd() {
            let shape = self.winograd_shape(1);
            gradients + shape.output_planes_len() + shape.weight_planes_len()
        } else {
            gradients
        }
    }

    /// Adds this layer's share of every example's squared gradient norm to `norms_sq`. Example
    /// i's weight gradient is Σ over its output pixels p of col_p ⊗ δ_p = col_iᵀ · δ_i (its
    /// im2col rows and output gradients); it is formed in `scratch` (one [patch, f] product per
    /// example: 9·676·32 multiply-adds for conv32x3 on 28×28, 288·121·64 for conv64x3 on 13×13),
    /// which takes fewer operations than the Gram-matrix ("ghost") form
    /// Σ_{p,q} (col_p·col_q)(δ_p·δ_q) here (676²·(9+32) and 121²·(288+64)). Its bias
    /// gradient is Σ_p δ_p. A Winograd layer forms it as backward does, from the example's rows
    /// of V: dw_i = Gᵀ (V_iᵀ · dM_i) G.
    /// col: what forward left, grad_y: [rows · pixels, f] -> norms_sq: [rows] (+=)
    pub fn add_example_gradient_norms_sq(
        &self,
        (x, col): (&[f32], &[f32]),
        grad_y: &[f32],
        rows: usize,
        scratch: &mut [f32],
        norms_sq: &mut [f32],
    ) {
        let (pixels, patch, filters) = (self.out_pixels(), self.patch_len(), self.filters);
        let (weight_grad, rest) = scratch[..self.norm_scratch_len()].split_at_mut(patch * filters);
        let (bias_grad, winograd_scratch) = rest.split_at_mut(filters);
        if self.uses_winograd() {
            // The example's rows of every V plane, through the same steps as `backward`.
            let (pass, example_shape) = (self.winograd_shape(rows), self.winograd_shape(1));
            let (_, v, _) = self.winograd_col(col, pass);
            let (dm, du) = winograd_scratch.split_at_mut(example_shape.output_planes_len());
            let tiles = example_shape.tiles();
            for (example, norm_sq) in norms_sq[..rows].iter_mut().enumerate() {
                let example_grad =
                    &grad_y[example * pixels * filters..(example + 1) * pixels * filters];
                winograd_output_gradient_transform(example_grad, dm, example_shape);
                let example_tiles = (v, example * tiles..(example + 1) * tiles);
                self.winograd_weight_gradient(example_tiles, (&*dm, du), weight_grad, false);
                sum_rows_into(example_grad, bias_grad, false);
                *norm_sq += sum_of_squares(weight_grad) + sum_of_squares(bias_grad);
            }
            return;
        }
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
            // Winograd: odd and even outputs, a 1-pixel-high output, channels past a block of 16.
            (8, 9, 16, 5, 3, 3),
            (3, 4, 17, 2, 3, 2),
            (12, 12, 20, 3, 3, 1),
        ] {
            let conv = layer(h, w, c, f, k);
            let params = random(conv.bias.end, &mut rng);
            let x = random(rows * conv.in_len(), &mut rng);
            let mut col = vec![0.0; conv.col_len(rows)];
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
                    let (input, mut scratch) = ((&x[..], rows), vec![0.0; col.len()]);
                    conv.forward_im2col(&params, input, &mut scratch, &mut y, false);
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

    /// grad_w[ky, kx, c, f] = Σ x[b, oy+ky, ox+kx, c] · gy[b, oy, ox, f] and
    /// grad_x[b, iy, ix, c] = Σ gy[b, iy-ky, ix-kx, f] · w[ky, kx, c, f], in f64.
    #[allow(clippy::needless_range_loop)]
    fn direct_gradients(
        conv: &Conv2d,
        params: &[f32],
        (x, grad_y): (&[f32], &[f32]),
        rows: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let (k, c, f) = (conv.kernel, conv.in_channels, conv.filters);
        let w = &params[conv.weights.clone()];
        let mut grad_w = vec![0.0; w.len()];
        let mut grad_x = vec![0.0; x.len()];
        for image in 0..rows {
            for oy in 0..conv.out_height() {
                for ox in 0..conv.out_width() {
                    for ky in 0..k {
                        for kx in 0..k {
                            for channel in 0..c {
                                let xi =
                                    ((image * conv.in_height + oy + ky) * conv.in_width + ox + kx)
                                        * c
                                        + channel;
                                for filter in 0..f {
                                    let yi = ((image * conv.out_height() + oy) * conv.out_width()
                                        + ox)
                                        * f
                                        + filter;
                                    let wi = ((ky * k + kx) * c + channel) * f + filter;
                                    grad_w[wi] += x[xi] as f64 * grad_y[yi] as f64;
                                    grad_x[xi] += w[wi] as f64 * grad_y[yi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (grad_w, grad_x)
    }

    #[test]
    fn winograd_backward_matches_direct_sums_and_per_example_norms() {
        let mut rng = Rng::from_u64(13);
        for (h, w, c, f, rows) in [(13, 13, 32, 64, 2), (8, 9, 16, 5, 3), (3, 4, 17, 2, 2)] {
            let conv = layer(h, w, c, f, 3);
            assert!(conv.uses_winograd());
            let params = random(conv.bias.end, &mut rng);
            let x = random(rows * conv.in_len(), &mut rng);
            let grad_y = random(rows * conv.out_len(), &mut rng);
            let mut col = vec![0.0; conv.col_len(rows)];
            let mut y = vec![0.0; rows * conv.out_len()];
            conv.forward(&params, &x, rows, &mut col, &mut y);
            // Stale values must be overwritten.
            let mut grads = vec![3.0; params.len()];
            let mut grad_x = vec![3.0; x.len()];
            let mut scratch = vec![3.0; conv.scratch_len(rows)];
            let sink = (Some(&mut grad_x[..]), &mut scratch[..]);
            conv.backward(&params, (&x, &col), &grad_y, rows, &mut grads, sink, false);
            let (want_w, want_x) = direct_gradients(&conv, &params, (&x, &grad_y), rows);
            let close = |got: &[f32], want: &[f64], what: &str| {
                for (index, (&got, &want)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{h}x{w}x{c} -> {f}: {what} {index}: {got} vs {want}"
                    );
                }
            };
            close(&grads[conv.weights.clone()], &want_w, "weight gradient");
            close(&grad_x, &want_x, "input gradient");

            // Each example's squared norm is that of its own backward pass (rows = 1).
            let mut norms = vec![0.5; rows];
            let mut norm_scratch = vec![0.0; conv.norm_scratch_len()];
            conv.add_example_gradient_norms_sq(
                (&x, &col),
                &grad_y,
                rows,
                &mut norm_scratch,
                &mut norms,
            );
            for (example, &norm) in norms.iter().enumerate() {
                let x_i = &x[example * conv.in_len()..(example + 1) * conv.in_len()];
                let grad_y_i = &grad_y[example * conv.out_len()..(example + 1) * conv.out_len()];
                let mut col_i = vec![0.0; conv.col_len(1)];
                conv.forward(&params, x_i, 1, &mut col_i, &mut vec![0.0; conv.out_len()]);
                let mut grads_i = vec![0.0; params.len()];
                let sink = (None, &mut scratch[..]);
                conv.backward(
                    &params,
                    (x_i, &col_i),
                    grad_y_i,
                    1,
                    &mut grads_i,
                    sink,
                    false,
                );
                let want = 0.5 + sum_of_squares(&grads_i[conv.weights.start..conv.bias.end]) as f64;
                assert!(
                    (norm as f64 - want).abs() < 1e-4 * want,
                    "{h}x{w}x{c}: example {example}: {norm} vs {want}"
                );
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
