//! RMSprop (Keras' formulation, without momentum or centering).

/// s = ρ·s + (1-ρ)·g²;  p -= lr·g / √(s + ε)   (Keras adds ε inside the root, unlike Adam)
pub fn rmsprop(
    params: &mut [f32],
    grads: &[f32],
    mean_square: &mut [f32],
    learning_rate: f32,
    rho: f32,
    epsilon: f32,
) {
    for ((p, &g), s) in params.iter_mut().zip(grads).zip(mean_square.iter_mut()) {
        *s = rho * *s + (1.0 - rho) * g * g;
        *p -= learning_rate * g / (*s + epsilon).sqrt();
    }
}
