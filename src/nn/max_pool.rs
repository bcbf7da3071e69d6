//! Max-pooling over non-overlapping `size × size` windows (stride = size), channels-last.
//!
//! A leftover row or column that does not fill a window is dropped (as Keras and PyTorch do).
//! Ties go to the first maximum in window order (row by row, left to right): backward finds it
//! again from the forward input and output and routes the whole gradient to it, so the gradient
//! is the exact derivative wherever the maximum is unique and a fixed, documented choice where it
//! is not. (Nothing is stored per output: forward is a plain vectorized max.) The loops are
//! kernels (`kernels::max_pool_forward`, `max_pool_backward`), compiled per backend.

use crate::kernels::{max_pool_backward, max_pool_forward, PoolShape};

/// One pooling layer's shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPool {
    pub in_height: usize,
    pub in_width: usize,
    pub channels: usize,
    pub size: usize,
}

impl MaxPool {
    pub fn out_height(&self) -> usize {
        self.in_height / self.size
    }

    pub fn out_width(&self) -> usize {
        self.in_width / self.size
    }

    pub fn in_len(&self) -> usize {
        self.in_height * self.in_width * self.channels
    }

    pub fn out_len(&self) -> usize {
        self.out_height() * self.out_width() * self.channels
    }

    fn shape(&self, rows: usize) -> PoolShape {
        PoolShape {
            rows,
            in_height: self.in_height,
            in_width: self.in_width,
            channels: self.channels,
            size: self.size,
        }
    }

    /// x: [rows, in_h, in_w, c] -> y: [rows, in_h / size, in_w / size, c]
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        max_pool_forward(x, y, self.shape(rows));
    }

    /// grad_y: [rows, out_h, out_w, c] -> grad_x: [rows, in_h, in_w, c], each gradient sent to
    /// the first input of its window (in window order) that equals the window's maximum;
    /// every other input gets 0. `x` is the forward pass's input (the maxima are recomputed
    /// from it, so a layer working in place on the output cannot disturb them).
    pub fn backward(&self, x: &[f32], grad_y: &[f32], rows: usize, grad_x: &mut [f32]) {
        max_pool_backward(x, grad_y, grad_x, self.shape(rows), false);
    }

    /// [`MaxPool::backward`] where `x` is the output of a ReLU, whose backward step (0 where
    /// x is not positive) is done in the same pass: the same bits as running it after.
    pub fn backward_through_relu(
        &self,
        x: &[f32],
        grad_y: &[f32],
        rows: usize,
        grad_x: &mut [f32],
    ) {
        max_pool_backward(x, grad_y, grad_x, self.shape(rows), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_window_maximum_per_channel_and_drops_leftovers() {
        // 3×3 image, 2 channels; channel 1 is channel 0 negated. Pool 2 keeps the top-left 2×2.
        let channel0 = [1.0, 5.0, 9.0, 3.0, 2.0, 9.0, 9.0, 9.0, 9.0];
        let x: Vec<f32> = channel0.iter().flat_map(|&v| [v, -v]).collect();
        let pool = MaxPool {
            in_height: 3,
            in_width: 3,
            channels: 2,
            size: 2,
        };
        let mut y = [0.0; 2];
        pool.forward(&x, 1, &mut y);
        assert_eq!(y, [5.0, -1.0]);
        let mut grad_x = [9.0; 18];
        pool.backward(&x, &[1.0, 2.0], 1, &mut grad_x);
        // Input index = (row * 3 + col) * 2 + channel: 5 is at (0, 1), -1 at (0, 0).
        let mut expected = [0.0; 18];
        expected[2] = 1.0;
        expected[1] = 2.0;
        assert_eq!(grad_x, expected);
    }

    #[test]
    fn ties_go_to_the_first_maximum_in_window_order() {
        let pool = MaxPool {
            in_height: 2,
            in_width: 2,
            channels: 1,
            size: 2,
        };
        let x = [0.5, 2.0, 2.0, 2.0];
        let mut y = [0.0];
        pool.forward(&x, 1, &mut y);
        assert_eq!(y[0], 2.0);
        let mut grad_x = [9.0; 4];
        pool.backward(&x, &[3.0], 1, &mut grad_x);
        assert_eq!(grad_x, [0.0, 3.0, 0.0, 0.0]);
    }
}
