//! Adam (Kingma & Ba), in Keras' formulation, with optional decoupled weight decay (AdamW).

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
/// and, first, p -= lr·wd·p when weight decay is on.
pub fn adam(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    let t = s.step as f64;
    let bias_correction1 = 1.0 - (s.beta1 as f64).powf(t);
    let bias_correction2 = 1.0 - (s.beta2 as f64).powf(t);
    let alpha = (s.learning_rate as f64 * bias_correction2.sqrt() / bias_correction1) as f32;
    let decay = s.learning_rate * s.weight_decay;
    let (one_minus_beta1, one_minus_beta2) = (1.0 - s.beta1, 1.0 - s.beta2);
    for (((p, &g), m), v) in params
        .iter_mut()
        .zip(grads)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        if decay != 0.0 {
            *p -= decay * *p;
        }
        *m += (g - *m) * one_minus_beta1;
        *v += (g * g - *v) * one_minus_beta2;
        *p -= alpha * *m / (v.sqrt() + s.epsilon);
    }
}
