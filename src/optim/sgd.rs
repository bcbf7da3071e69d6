//! Stochastic gradient descent, plain and with (Nesterov) momentum, as Keras defines them.

/// p -= lr * g
pub fn sgd(params: &mut [f32], grads: &[f32], learning_rate: f32) {
    for (p, &g) in params.iter_mut().zip(grads) {
        *p -= learning_rate * g;
    }
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
    for ((p, &g), v) in params.iter_mut().zip(grads).zip(velocity.iter_mut()) {
        *v = momentum * *v - learning_rate * g;
        if nesterov {
            *p += momentum * *v - learning_rate * g;
        } else {
            *p += *v;
        }
    }
}
