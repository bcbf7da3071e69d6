//! Per-example clipping from per-example gradient norms (which the layers compute without forming
//! per-example gradients: see `Dense::add_example_gradient_norms_sq`).

use crate::kernels::scale_in_place;

/// Turns squared per-example gradient norms into the factors each example's loss gradient is
/// multiplied by: `scale · min(1, clip_norm / ‖g_i‖)` (in place). A zero gradient keeps factor
/// `scale` (nothing to clip).
pub fn clip_factors(norms_sq: &mut [f32], clip_norm: f32, scale: f32) {
    for value in norms_sq {
        let norm = value.sqrt();
        *value = if norm > clip_norm {
            scale * (clip_norm / norm)
        } else {
            scale
        };
    }
}

/// Multiplies row i of `rows` ([n, cols]) by `factors[i]`, in place.
pub fn scale_rows(rows: &mut [f32], cols: usize, factors: &[f32]) {
    for (row, &factor) in rows.chunks_exact_mut(cols).zip(factors) {
        scale_in_place(row, factor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gradients_longer_than_the_clip_norm_shrink() {
        let mut values = [9.0, 1.0, 0.0, 4.0];
        clip_factors(&mut values, 2.0, 0.5);
        // ‖g‖ = 3 → 0.5·2/3; 1 ≤ 2 → 0.5; 0 → 0.5; 2 ≤ 2 → 0.5.
        assert_eq!(values, [0.5 * 2.0 / 3.0, 0.5, 0.5, 0.5]);
        let mut rows = [1.0, 2.0, 3.0, 4.0];
        scale_rows(&mut rows, 2, &[2.0, -1.0]);
        assert_eq!(rows, [2.0, 4.0, -3.0, -4.0]);
    }
}
