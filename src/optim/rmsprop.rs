//! RMSprop (Keras' formulation, without momentum or centering).

use crate::kernels::rmsprop_update;

/// s = ρ·s + (1-ρ)·g²;  p -= lr·g / √(s + ε)   (Keras adds ε inside the root, unlike Adam)
pub fn rmsprop(
    params: &mut [f32],
    grads: &[f32],
    mean_square: &mut [f32],
    learning_rate: f32,
    rho: f32,
    epsilon: f32,
) {
    rmsprop_update(params, grads, mean_square, learning_rate, rho, epsilon);
}
