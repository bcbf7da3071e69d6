//! Max-pooling's loops over channels-last images, compiled per backend like the element-wise
//! loops (the layer and its tie rule are described in `nn::max_pool`).
//!
//! Channels go in blocks of [`BLOCK`] held in fixed-size arrays, so each window's maximum,
//! comparison and routing vectorize; a window writes every input it covers, so only the rows and
//! columns no window covers are zeroed.

use super::backend;
use super::elementwise::{for_each_block, multiversion};
#[cfg(target_arch = "x86_64")]
use super::Backend;

/// Channels handled together.
const BLOCK: usize = 16;

/// The shape of a pooling pass: `rows` images of `in_height × in_width × channels`, windows of
/// `size × size` with stride `size` (a leftover row or column is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub rows: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub channels: usize,
    pub size: usize,
}

impl PoolShape {
    fn in_len(&self) -> usize {
        self.in_height * self.in_width * self.channels
    }

    fn out_dims(&self) -> (usize, usize) {
        (self.in_height / self.size, self.in_width / self.size)
    }

    fn out_len(&self) -> usize {
        let (out_h, out_w) = self.out_dims();
        out_h * out_w * self.channels
    }
}

/// Maxima of channels `first..first + W` over window (oy, ox) of `image` (first maximum wins;
/// a select, not a branch).
#[inline(always)]
fn window_max<const W: usize>(
    image: &[f32],
    shape: &PoolShape,
    (oy, ox): (usize, usize),
    first: usize,
) -> [f32; W] {
    let mut best = [f32::NEG_INFINITY; W];
    for dy in 0..shape.size {
        for dx in 0..shape.size {
            let start =
                ((oy * shape.size + dy) * shape.in_width + ox * shape.size + dx) * shape.channels;
            let values: &[f32; W] = image[start + first..start + first + W]
                .try_into()
                .expect("W values");
            for (b, &value) in best.iter_mut().zip(values) {
                *b = if value > *b { value } else { *b };
            }
        }
    }
    best
}

/// Window (oy, ox) of one image, channels `first..first + W`, forward.
#[inline(always)]
fn forward_block<const W: usize>(
    image: &[f32],
    y: &mut [f32],
    shape: &PoolShape,
    (oy, ox): (usize, usize),
    first: usize,
) {
    let out = (oy * shape.out_dims().1 + ox) * shape.channels + first;
    y[out..out + W].copy_from_slice(&window_max::<W>(image, shape, (oy, ox), first));
}

/// Window (oy, ox) of one image, channels `first..first + W`, backward.
#[inline(always)]
fn backward_block<const W: usize>(
    (image, grad_y, grad_x): (&[f32], &[f32], &mut [f32]),
    (shape, relu): (&PoolShape, bool),
    (oy, ox): (usize, usize),
    first: usize,
) {
    let (c, size) = (shape.channels, shape.size);
    let best = window_max::<W>(image, shape, (oy, ox), first);
    let out = (oy * shape.out_dims().1 + ox) * c + first;
    let gradient: &[f32; W] = grad_y[out..out + W].try_into().expect("W values");
    // 1 while the window's gradient is unclaimed, then 0 (no branches).
    let mut unclaimed = [1.0f32; W];
    for dy in 0..size {
        for dx in 0..size {
            let start = ((oy * size + dy) * shape.in_width + ox * size + dx) * c + first;
            let values: &[f32; W] = image[start..start + W].try_into().expect("W values");
            let targets: &mut [f32; W] = (&mut grad_x[start..start + W])
                .try_into()
                .expect("W values");
            for t in 0..W {
                let wins = if values[t] == best[t] {
                    unclaimed[t]
                } else {
                    0.0
                };
                let routed = gradient[t] * wins;
                // relu_backward's select, where a ReLU made the input in place.
                let keep = !relu || values[t] > 0.0;
                targets[t] = if keep { routed } else { 0.0 };
                unclaimed[t] -= wins;
            }
        }
    }
}

multiversion! {
    /// x: [rows, in_h, in_w, c] -> y: [rows, in_h / size, in_w / size, c]
    pub fn max_pool_forward(x: &[f32], y: &mut [f32], shape: PoolShape) {
        let (out_h, out_w) = shape.out_dims();
        let images = x[..shape.rows * shape.in_len()].chunks_exact(shape.in_len());
        let outputs = y[..shape.rows * shape.out_len()].chunks_exact_mut(shape.out_len());
        for (image, y) in images.zip(outputs) {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    for_each_block!(BLOCK, shape.channels, forward_block(image, y, &shape, (oy, ox)));
                }
            }
        }
    }
}

multiversion! {
    /// grad_y: [rows, out_h, out_w, c] -> grad_x: [rows, in_h, in_w, c]: each window's gradient
    /// goes to the first input (in window order) equal to the window's maximum in `x` (forward's
    /// input); every other input gets 0. With `relu`, `x` is a ReLU's output and its backward
    /// step is done here too (0 where x is not positive), with the same bits as after.
    pub fn max_pool_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32], shape: PoolShape, relu: bool) {
        let (out_h, out_w) = shape.out_dims();
        let (c, size, in_len) = (shape.channels, shape.size, shape.in_len());
        let row_len = shape.in_width * c;
        for ((image, grad_x), grad_y) in x[..shape.rows * in_len]
            .chunks_exact(in_len)
            .zip(grad_x[..shape.rows * in_len].chunks_exact_mut(in_len))
            .zip(grad_y[..shape.rows * shape.out_len()].chunks_exact(shape.out_len()))
        {
            // Inputs no window covers: the columns right of the last window, the rows below.
            for input_row in grad_x[..out_h * size * row_len].chunks_exact_mut(row_len) {
                input_row[out_w * size * c..].fill(0.0);
            }
            grad_x[out_h * size * row_len..].fill(0.0);
            for oy in 0..out_h {
                for ox in 0..out_w {
                    for_each_block!(
                        BLOCK,
                        c,
                        backward_block((image, grad_y, &mut *grad_x), (&shape, relu), (oy, ox))
                    );
                }
            }
        }
    }
}
