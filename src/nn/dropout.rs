//! Inverted dropout: during training each unit is zeroed with probability `rate` and the
//! survivors are scaled by `1 / (1 - rate)`, so inference needs no rescaling.

use crate::rng::Rng;

/// Draws a mask (0 or 1/(1-rate) per unit) and applies it in place.
/// x: [batch, width] -> y: [batch, width]
pub fn dropout_forward(values: &mut [f32], mask: &mut [f32], rate: f32, rng: &mut Rng) {
    let keep_scale = 1.0 / (1.0 - rate);
    for (value, m) in values.iter_mut().zip(mask.iter_mut()) {
        *m = if rng.next_f32() >= rate {
            keep_scale
        } else {
            0.0
        };
        *value *= *m;
    }
}

/// grad_x = grad_y * mask (in place).
pub fn dropout_backward(mask: &[f32], grad: &mut [f32]) {
    for (g, &m) in grad.iter_mut().zip(mask) {
        *g *= m;
    }
}
