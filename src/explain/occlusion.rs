//! Occlusion (Zeiler & Fergus 2014): slide a `patch × patch` square over the image one pixel at
//! a time, set the pixels under it to the baseline, and record how much the target's logit
//! drops. A pixel's attribution is the mean drop over every patch position that covers it, so a
//! positive value means hiding that area lowers the score. It needs no gradients, only forward
//! passes: (width − patch + 1) · (height − patch + 1) of them.

use ndarray::Array2;

use crate::explain::{logits_batched, single_row, Differentiable, MAX_BATCH};

/// Occlusion map of `target`'s logit for one `width`-wide image. `pixels: [len] -> [len]`
/// `patch` must be between 1 and the image's shorter side ([`crate::explain::Settings::validate`]).
pub fn occlusion(
    model: &dyn Differentiable,
    pixels: &[f32],
    width: usize,
    target: usize,
    patch: usize,
    baseline: f32,
) -> Vec<f32> {
    let len = pixels.len();
    let height = len / width;
    let score = model.logits(single_row(pixels))[[0, target]] as f64;
    let positions: Vec<(usize, usize)> = (0..=height - patch)
        .flat_map(|top| (0..=width - patch).map(move |left| (top, left)))
        .collect();
    let mut drop_sum = vec![0.0f64; len];
    let mut covered = vec![0u32; len];
    for chunk in positions.chunks(MAX_BATCH) {
        let mut occluded = Array2::from_shape_fn((chunk.len(), len), |(_, i)| pixels[i]);
        for (mut row, &(top, left)) in occluded.rows_mut().into_iter().zip(chunk) {
            for y in top..top + patch {
                row.slice_mut(ndarray::s![y * width + left..y * width + left + patch])
                    .fill(baseline);
            }
        }
        let logits = logits_batched(model, occluded.view());
        for (&(top, left), logit_row) in chunk.iter().zip(logits.rows()) {
            let drop = score - logit_row[target] as f64;
            for y in top..top + patch {
                for i in y * width + left..y * width + left + patch {
                    drop_sum[i] += drop;
                    covered[i] += 1;
                }
            }
        }
    }
    drop_sum
        .iter()
        .zip(&covered)
        .map(|(&sum, &count)| (sum / count.max(1) as f64) as f32)
        .collect()
}
