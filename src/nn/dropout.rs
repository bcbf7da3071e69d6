//! Inverted dropout: during training each unit is zeroed with probability `rate` and the
//! survivors are scaled by `1 / (1 - rate)`, so inference needs no rescaling.

use crate::kernels;
use crate::rng::Rng;

/// Units whose random draws are generated at a time (kept on the stack).
const DRAW_BLOCK: usize = 256;

/// Draws a mask (0 or 1/(1-rate) per unit) and applies it in place.
/// x: [batch, width] -> y: [batch, width]
/// Each unit gets one 32-bit draw (two per 64-bit random number) and is kept when the draw is at
/// least `rate · 2³²`: a comparison instead of a branch, so the mask is applied branch-free.
pub fn dropout_forward(values: &mut [f32], mask: &mut [f32], rate: f32, rng: &mut Rng) {
    let keep_scale = 1.0 / (1.0 - rate);
    let threshold = (f64::from(rate) * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let mut draws = [0u32; DRAW_BLOCK];
    for (values, mask) in values
        .chunks_mut(DRAW_BLOCK)
        .zip(mask.chunks_mut(DRAW_BLOCK))
    {
        let draws = &mut draws[..values.len()];
        for pair in draws.chunks_mut(2) {
            let bits = rng.next_u64_fast();
            pair[0] = bits as u32;
            if let Some(second) = pair.get_mut(1) {
                *second = (bits >> 32) as u32;
            }
        }
        kernels::dropout_forward(values, mask, draws, threshold, keep_scale);
    }
}

/// grad_x = grad_y * mask (in place).
pub fn dropout_backward(mask: &[f32], grad: &mut [f32]) {
    kernels::dropout_backward(mask, grad);
}
