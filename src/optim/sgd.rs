//! Stochastic gradient descent, plain and with (Nesterov) momentum, as Keras defines them.

use crate::kernels::{momentum_update, sgd_update};

/// p -= lr * g
pub fn sgd(params: &mut [f32], grads: &[f32], learning_rate: f32) {
    sgd_update(params, grads, learning_rate);
}

/// v = momentum * v - lr * g; then p += v (heavy ball) or p += momentum * v - lr * g (Nesterov).
pub fn momentum(
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
    learning_rate: f32,
    momentum: f32,
    nesterov: bool,
) {
    momentum_update(params, grads, velocity, learning_rate, momentum, nesterov);
}
