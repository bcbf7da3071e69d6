//! Every update rule against numbers worked out by hand (in f64, independently of this code), and
//! every rule minimizing a small least-squares problem.

use super::*;

/// Two parameters, and the gradients of two consecutive steps.
const START: [f32; 2] = [1.0, -2.0];
const GRAD_1: [f32; 2] = [0.5, -1.0];
const GRAD_2: [f32; 2] = [-0.25, 0.75];

fn assert_close(actual: &[f32], expected: &[f64]) {
    for (a, e) in actual.iter().zip(expected) {
        let tolerance = 1e-6 * e.abs().max(1.0);
        assert!(
            (f64::from(*a) - e).abs() <= tolerance,
            "got {actual:?}, expected {expected:?}"
        );
    }
}

/// Applies `grads` one step after another and returns the parameters after each step.
fn run(config: OptimizerConfig, learning_rate: f32, grads: &[[f32; 2]]) -> Vec<Vec<f32>> {
    let mut optimizer = Optimizer::new(config, 2);
    let mut params = START.to_vec();
    grads
        .iter()
        .map(|g| {
            optimizer.step(&mut params, g, learning_rate);
            params.clone()
        })
        .collect()
}

#[test]
fn sgd_step_is_lr_times_gradient() {
    let after = run(OptimizerConfig::Sgd, 0.1, &[GRAD_1]);
    // 1 - 0.1·0.5, -2 - 0.1·(-1)
    assert_close(&after[0], &[0.95, -1.9]);
}

#[test]
fn momentum_and_nesterov_accumulate_velocity_over_two_steps() {
    // Heavy ball: v1 = -0.1·0.5 = -0.05 → p = 0.95; v2 = 0.9·(-0.05) - 0.1·0.25 = -0.07 → 0.88.
    // Nesterov (look-ahead): p += 0.9·v1 - 0.1·0.5 = -0.095 → 0.905;
    //                        p += 0.9·v2 - 0.1·0.25 = -0.088 → 0.817.
    let cases = [
        (OptimizerConfig::Momentum { momentum: 0.9 }, [0.95, 0.88]),
        (OptimizerConfig::Nesterov { momentum: 0.9 }, [0.905, 0.817]),
    ];
    for (config, [first, second]) in cases {
        let after = run(config, 0.1, &[[0.5, 0.0], [0.25, 0.0]]);
        assert_close(&after[0], &[first, -2.0]);
        assert_close(&after[1], &[second, -2.0]);
    }
}

#[test]
fn adam_and_rmsprop_two_steps_match_hand_computed_values() {
    let cases = [
        (
            OptimizerConfig::adam_default(),
            [
                // Step 1: m = 0.1·g, v = 0.001·g², α = 0.001·√0.001 / 0.1, so the step is
                // ≈ lr·sign(g) (bias correction makes the first step lr-sized whatever the
                // gradient's scale).
                [0.999_000_006_324_515_4, -1.999_000_003_162_267_7],
                // Step 2: m = (0.02, -0.015), v = (3.1225e-4, 1.5615e-3),
                // α = 0.001·√(1-0.999²) / (1-0.9²).
                [0.998_733_670_792_079_2, -1.998_910_678_380_910_5],
            ],
        ),
        (
            // Keras adds ε inside the root.
            OptimizerConfig::Rmsprop {
                rho: 0.9,
                epsilon: 1e-7,
            },
            [
                // s1 = 0.1·g²; p -= 0.001·g / √(s1 + 1e-7)
                [0.996_837_728_664_367_9, -1.996_837_723_920_969_4],
                // s2 = 0.9·s1 + 0.1·g2²
                [0.998_312_145_661_715_7, -1.998_798_884_601_869],
            ],
        ),
    ];
    for (config, expected) in cases {
        let after = run(config, 0.001, &[GRAD_1, GRAD_2]);
        assert_eq!(after.len(), expected.len());
        for (params, expected) in after.iter().zip(&expected) {
            assert_close(params, expected);
        }
    }
}

#[test]
fn adamw_decays_weights_before_the_adam_step() {
    let config = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
        weight_decay: 0.1,
    };
    let after = run(config, 0.01, &[GRAD_1]);
    // p ← p - 0.01·0.1·p, then the Adam step of size ≈ 0.01.
    assert_close(
        &after[0],
        &[0.989_000_063_245_153_2, -1.988_000_031_622_676_7],
    );
}

#[test]
fn step_counter_and_slots_match_the_rule() {
    for (config, slots) in [
        (OptimizerConfig::Sgd, 0),
        (OptimizerConfig::Momentum { momentum: 0.9 }, 1),
        (OptimizerConfig::adam_default(), 2),
    ] {
        let mut optimizer = Optimizer::new(config, 3);
        assert_eq!(optimizer.slots.len(), slots);
        optimizer.step(&mut [0.0; 3], &[1.0; 3], 0.1);
        optimizer.step(&mut [0.0; 3], &[1.0; 3], 0.1);
        assert_eq!(optimizer.steps, 2);
    }
}

#[test]
fn next_rule_is_the_rule_of_the_next_step_and_counts_nothing() {
    let mut optimizer = Optimizer::new(OptimizerConfig::adam_default(), 3);
    optimizer.step(&mut [0.0; 3], &[1.0; 3], 0.1);
    // Adam's bias correction depends on the step count: the second step's rule differs.
    let first = format!("{:?}", update_rule(optimizer.config, 1, 0.1));
    let next = format!("{:?}", optimizer.next_rule(0.1));
    assert_ne!(next, first);
    assert_eq!(optimizer.steps, 1);
    assert_eq!(next, format!("{:?}", optimizer.begin_step(0.1)));
    assert_eq!(optimizer.steps, 2);
}

/// Least squares `L(w) = 1/(2n)·|Xw - y|²` on a small, well-conditioned problem whose minimum
/// (w = [1, -2, 0.5]) has zero loss.
struct LeastSquares {
    x: Vec<[f32; 3]>,
    y: Vec<f32>,
}

impl LeastSquares {
    fn new() -> Self {
        let x = vec![
            [1.0, 0.5, -0.3],
            [0.2, 1.0, 0.4],
            [-0.6, 0.3, 1.0],
            [0.8, -0.7, 0.2],
            [0.1, 0.9, -0.8],
            [-0.4, -0.2, 0.6],
        ];
        let truth = [1.0, -2.0, 0.5];
        let y = x.iter().map(|row| dot(row, &truth)).collect();
        LeastSquares { x, y }
    }

    /// Returns the loss and writes its gradient `1/n · Xᵀ(Xw - y)`.
    fn loss_and_gradient(&self, w: &[f32], grad: &mut [f32]) -> f32 {
        grad.fill(0.0);
        let n = self.y.len() as f32;
        let mut loss = 0.0;
        for (row, &target) in self.x.iter().zip(&self.y) {
            let residual = dot(row, w) - target;
            loss += residual * residual / (2.0 * n);
            for (g, &xi) in grad.iter_mut().zip(row) {
                *g += residual * xi / n;
            }
        }
        loss
    }
}

fn dot(a: &[f32; 3], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn every_optimizer_minimizes_least_squares() {
    let problem = LeastSquares::new();
    let cases = [
        (OptimizerConfig::Sgd, 0.5),
        (OptimizerConfig::Momentum { momentum: 0.9 }, 0.1),
        (OptimizerConfig::Nesterov { momentum: 0.9 }, 0.1),
        (OptimizerConfig::adam_default(), 0.05),
        (
            OptimizerConfig::Rmsprop {
                rho: 0.9,
                epsilon: 1e-7,
            },
            0.01,
        ),
    ];
    for (config, learning_rate) in cases {
        let mut optimizer = Optimizer::new(config, 3);
        let mut w = vec![0.0f32; 3];
        let mut grad = vec![0.0f32; 3];
        let initial = problem.loss_and_gradient(&w, &mut grad);
        let mut loss = initial;
        for _ in 0..500 {
            loss = problem.loss_and_gradient(&w, &mut grad);
            optimizer.step(&mut w, &grad, learning_rate);
        }
        assert!(
            loss < initial * 1e-3,
            "{}: loss went from {initial} to {loss}",
            config.name()
        );
    }
}
