//! ReLU, applied in place.

use crate::kernels;

/// y = max(x, 0), in place. x: [batch, width] -> y: [batch, width]
pub fn relu_forward(values: &mut [f32]) {
    kernels::relu_forward(values);
}

/// grad_x = grad_y where the output was positive, else 0 (in place on `grad`).
/// `output` is the forward output, which is positive exactly where the input was.
pub fn relu_backward(output: &[f32], grad: &mut [f32]) {
    kernels::relu_backward(output, grad);
}
