//! ReLU, applied in place.

/// y = max(x, 0), in place. x: [batch, width] -> y: [batch, width]
pub fn relu_forward(values: &mut [f32]) {
    for value in values {
        *value = value.max(0.0);
    }
}

/// grad_x = grad_y where the output was positive, else 0 (in place on `grad`).
/// `output` is the forward output, which is positive exactly where the input was.
pub fn relu_backward(output: &[f32], grad: &mut [f32]) {
    for (g, &y) in grad.iter_mut().zip(output) {
        if y <= 0.0 {
            *g = 0.0;
        }
    }
}
