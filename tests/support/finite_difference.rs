//! The finite-difference harness shared by the gradient tests: deterministic inputs, a central
//! difference one coordinate at a time, and the tolerance an analytic gradient must meet.

use mnist_train::nn::{GradientSink, Mlp, Workspace};
use mnist_train::rng::Rng;

/// Deterministic pseudo-random values in [-1, 1).
pub fn random_values(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::from_u64(seed);
    (0..count).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// Central difference of `f` with respect to `values[index]`.
pub fn central_difference(
    values: &mut [f32],
    index: usize,
    step: f32,
    f: &mut dyn FnMut(&[f32]) -> f64,
) -> f64 {
    let original = values[index];
    values[index] = original + step;
    let plus = f(values);
    values[index] = original - step;
    let minus = f(values);
    values[index] = original;
    (plus - minus) / (2.0 * step as f64)
}

/// Fails unless the analytic derivative is within an absolute-plus-relative tolerance of the
/// numeric one.
pub fn assert_close(analytic: f64, numeric: f64, what: &str) {
    let tolerance = 2e-3 + 2e-2 * numeric.abs();
    assert!(
        (analytic - numeric).abs() <= tolerance,
        "{what}: analytic {analytic} vs numeric {numeric}"
    );
}

/// The network's parameter gradient of its mean loss over the `rows` examples in `workspace`,
/// checked against central differences of that loss, parameter by parameter. Every evaluation
/// draws dropout masks from a fresh generator with the same seed, so the masks stay the same.
// Perturbing one index at a time: an index loop says that most plainly.
#[allow(clippy::needless_range_loop)]
pub fn check_parameter_gradient(
    mlp: &Mlp,
    params: &mut [f32],
    workspace: &Workspace,
    rows: usize,
    what: &str,
) {
    let grad_scale = 1.0 / rows as f32;
    let mut loss = |params: &[f32]| -> f64 {
        let mut scratch = vec![0.0; params.len()];
        let gradient = GradientSink::adding(&mut scratch, 0.0);
        let mut rng = Rng::from_u64(5);
        let (sum, _) = mlp.train_chunk(params, &mut workspace.clone(), rows, &mut rng, gradient);
        sum * grad_scale as f64
    };
    let mut grads = vec![0.0; params.len()];
    let gradient = GradientSink::adding(&mut grads, grad_scale);
    let mut rng = Rng::from_u64(5);
    mlp.train_chunk(params, &mut workspace.clone(), rows, &mut rng, gradient);
    assert!(
        grads.iter().filter(|&&g| g != 0.0).count() > params.len() / 2,
        "{what}: most gradients are zero"
    );
    for index in 0..params.len() {
        let numeric = central_difference(params, index, 1e-2, &mut loss);
        assert_close(
            grads[index] as f64,
            numeric,
            &format!("{what}: param {index}"),
        );
    }
}
