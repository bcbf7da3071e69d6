//! Adam (Kingma & Ba), in Keras' formulation, with optional decoupled weight decay (AdamW).

use crate::kernels::{adam_update, AdamCoefficients};

/// The scalars of one Adam update.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// 1 for the first update.
    pub step: u64,
}

/// m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
/// p -= α·m / (√v + ε)  with  α = lr·√(1-β2^t) / (1-β1^t)  (bias correction folded into α)
/// and, first, p -= lr·wd·p when weight decay is on (one vectorized pass, see `kernels`).
pub fn adam(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    adam_update(params, grads, m, v, s.coefficients());
}

impl AdamStep {
    /// The kernel's scalars for this step (computed once per step, however many pieces of the
    /// buffer it updates).
    pub fn coefficients(&self) -> AdamCoefficients {
        let t = self.step as f64;
        let bias_correction1 = 1.0 - (self.beta1 as f64).powf(t);
        let bias_correction2 = 1.0 - (self.beta2 as f64).powf(t);
        let alpha = (self.learning_rate as f64 * bias_correction2.sqrt() / bias_correction1) as f32;
        AdamCoefficients {
            alpha,
            decay: self.learning_rate * self.weight_decay,
            one_minus_beta1: 1.0 - self.beta1,
            one_minus_beta2: 1.0 - self.beta2,
            epsilon: self.epsilon,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_adam_steps_match_hand_computed_values() {
        // p = 1, g = 0.5 then g = -0.25; lr 0.001, β1 0.9, β2 0.999, ε 1e-7 (Keras defaults).
        // Step 1: m = 0.05, v = 0.00025, α = 0.001·√0.001/0.1 = 3.16227766e-4,
        //         p = 1 - α·0.05/(√0.00025 + 1e-7) = 1 - 9.99993675e-4 = 0.999000006.
        // Step 2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225,
        //         α = 0.001·√(1-0.999²)/(1-0.9²) = 0.001·0.0447101778/0.19 = 2.35316725e-4,
        //         p = 0.999000006 - α·0.02/(√0.00031225 + 1e-7) = 0.999000006 - 2.66336e-4.
        let mut params = [1.0f32];
        let (mut m, mut v) = ([0.0f32], [0.0f32]);
        let mut step = AdamStep {
            learning_rate: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
            step: 1,
        };
        adam(&mut params, &[0.5], &mut m, &mut v, step);
        // f32 rounding of (1 - β) allows small relative errors.
        assert!((m[0] - 0.05).abs() < 1e-7);
        assert!((v[0] - 0.00025).abs() < 1e-8);
        assert!(
            (params[0] as f64 - 0.999_000_006).abs() < 2e-7,
            "{}",
            params[0]
        );
        step.step = 2;
        adam(&mut params, &[-0.25], &mut m, &mut v, step);
        assert!((m[0] - 0.02).abs() < 1e-7);
        assert!((v[0] - 0.000_312_25).abs() < 1e-8);
        let expected = 0.999_000_006 - 2.353_167_25e-4 * 0.02 / (0.000_312_25f64.sqrt() + 1e-7);
        assert!(
            (params[0] as f64 - expected).abs() < 2e-7,
            "{} vs {expected}",
            params[0]
        );
    }
}
