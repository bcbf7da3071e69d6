//! Inverted dropout: during training each unit is zeroed with probability `rate` and the
//! survivors are scaled by `1 / (1 - rate)`, so inference needs no rescaling.

use std::ops::Range;

use crate::kernels;
use crate::rng::Rng;

/// Units whose random draws are generated at a time (kept on the stack).
const DRAW_BLOCK: usize = 256;

/// A mask's 32-bit draws in unit order: two per 64-bit random number (low half first), however
/// the units are cut into pieces, so a mask drawn row by row equals one drawn in blocks.
pub struct DropoutDraws<'a> {
    rng: &'a mut Rng,
    /// The high half of the last random number, when only its low half was used.
    pending: Option<u32>,
}

impl<'a> DropoutDraws<'a> {
    pub fn new(rng: &'a mut Rng) -> Self {
        DropoutDraws { rng, pending: None }
    }

    /// The next `draws.len()` draws.
    pub fn fill(&mut self, draws: &mut [u32]) {
        let mut rest = draws;
        if let Some(pending) = self.pending.take() {
            match rest.split_first_mut() {
                Some((first, tail)) => {
                    *first = pending;
                    rest = tail;
                }
                None => {
                    self.pending = Some(pending);
                    return;
                }
            }
        }
        let mut pairs = rest.chunks_exact_mut(2);
        for pair in &mut pairs {
            let bits = self.rng.next_u64_fast();
            pair[0] = bits as u32;
            pair[1] = (bits >> 32) as u32;
        }
        if let [last] = pairs.into_remainder() {
            let bits = self.rng.next_u64_fast();
            *last = bits as u32;
            self.pending = Some((bits >> 32) as u32);
        }
    }
}

/// A unit is kept when its draw is at least `rate · 2³²`: a comparison instead of a branch, so
/// the mask is applied branch-free. Returns (threshold, scale of the kept units).
fn threshold_and_scale(rate: f32) -> (u32, f32) {
    let threshold = (f64::from(rate) * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    (threshold, 1.0 / (1.0 - rate))
}

/// Draws a mask (0 or 1/(1-rate) per unit) and applies it in place, one draw per unit.
/// x: [batch, width] -> y: [batch, width]
pub fn dropout_forward(values: &mut [f32], mask: &mut [f32], rate: f32, rng: &mut Rng) {
    let (threshold, keep_scale) = threshold_and_scale(rate);
    let mut draws = DropoutDraws::new(rng);
    let mut block = [0u32; DRAW_BLOCK];
    for (values, mask) in values
        .chunks_mut(DRAW_BLOCK)
        .zip(mask.chunks_mut(DRAW_BLOCK))
    {
        let block = &mut block[..values.len()];
        draws.fill(block);
        kernels::dropout_forward(values, mask, block, threshold, keep_scale);
    }
}

/// Widest layer [`dropout_forward_columns`] handles (its draws of one row live on the stack).
pub const MAX_COLUMN_DROPOUT_WIDTH: usize = 4096;

/// [`dropout_forward`] of a [rows, width] layer restricted to `columns`: `values` and `mask`
/// hold only those columns ([rows, columns.len()]), and get exactly the mask entries the whole
/// layer would get from `rng`. x: [batch, columns] -> y: [batch, columns]
pub fn dropout_forward_columns(
    values: &mut [f32],
    mask: &mut [f32],
    width: usize,
    columns: Range<usize>,
    rate: f32,
    rng: &mut Rng,
) {
    assert!(width <= MAX_COLUMN_DROPOUT_WIDTH && columns.end <= width);
    let (threshold, keep_scale) = threshold_and_scale(rate);
    let mut draws = DropoutDraws::new(rng);
    let mut row_draws = [0u32; MAX_COLUMN_DROPOUT_WIDTH];
    let part = columns.len().max(1);
    for (values, mask) in values.chunks_mut(part).zip(mask.chunks_mut(part)) {
        draws.fill(&mut row_draws[..width]);
        let row_draws = &row_draws[columns.clone()];
        kernels::dropout_forward(values, mask, row_draws, threshold, keep_scale);
    }
}

/// grad_x = grad_y * mask (in place).
pub fn dropout_backward(mask: &[f32], grad: &mut [f32]) {
    kernels::dropout_backward(mask, grad);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Stream};

    #[test]
    fn a_mask_drawn_by_columns_equals_the_whole_layers_mask() {
        for (rows, width, rate) in [(5, 128, 0.2), (3, 7, 0.5), (4, 33, 0.3)] {
            let values: Vec<f32> = (0..rows * width).map(|i| (i % 11) as f32 - 3.0).collect();
            let mut whole = values.clone();
            let mut whole_mask = vec![0.0; rows * width];
            let mut rng = stream(9, Stream::Dropout, 1, 2);
            dropout_forward(&mut whole, &mut whole_mask, rate, &mut rng);
            assert!(whole_mask.contains(&0.0) && whole_mask.iter().any(|&m| m > 1.0));
            for columns in [0..width, 0..width / 2, width / 2..width, 1..width - 1] {
                let cut = |buffer: &[f32]| -> Vec<f32> {
                    buffer
                        .chunks(width)
                        .flat_map(|row| row[columns.clone()].to_vec())
                        .collect()
                };
                let mut part = cut(&values);
                let mut part_mask = vec![0.0; part.len()];
                let mut rng = stream(9, Stream::Dropout, 1, 2);
                let c = columns.clone();
                dropout_forward_columns(&mut part, &mut part_mask, width, c, rate, &mut rng);
                assert_eq!(part, cut(&whole), "{rows}x{width} {columns:?}");
                assert_eq!(part_mask, cut(&whole_mask), "{rows}x{width} {columns:?}");
            }
        }
    }
}
