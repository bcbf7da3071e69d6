//! Every hand-written backward pass checked against central finite differences of its forward pass.
// Finite differences perturb one index at a time; index loops say that most plainly.
#![allow(clippy::needless_range_loop)]

use ndarray::{Array2, ArrayView2};

use mnist_train::kernels::{relu_backward, relu_forward};
use mnist_train::nn::architecture::Architecture;
use mnist_train::nn::dropout::{dropout_backward, dropout_forward};
use mnist_train::nn::loss::softmax_cross_entropy;
use mnist_train::nn::Mlp;
use mnist_train::rng::Rng;

use crate::support::finite_difference::{
    assert_close, central_difference, check_parameter_gradient, random_values,
};

/// An element-wise layer's input gradient `grad` of `sum(layer(x) · r)` against central
/// differences of `layer` (applied in place), coordinate by coordinate.
fn check_elementwise(
    grad: &[f32],
    x: &mut [f32],
    r: &[f32],
    step: f32,
    layer: &dyn Fn(&mut [f32]),
) {
    let mut loss = |x: &[f32]| -> f64 {
        let mut y = x.to_vec();
        layer(&mut y);
        y.iter().zip(r).map(|(&y, &r)| (y * r) as f64).sum()
    };
    for index in 0..x.len() {
        let numeric = central_difference(x, index, step, &mut loss);
        assert_close(grad[index] as f64, numeric, &format!("x {index}"));
    }
}

#[test]
fn dense_backward_matches_finite_differences() {
    let architecture = Architecture {
        inputs: 5,
        hidden: vec![],
        outputs: 3,
        activation: "relu".into(),
        dropout: 0.0,
        layers: None,
    };
    let dense = architecture.dense_layouts().remove(0);
    let batch = 4;
    let mut params = random_values(architecture.parameter_count(), 1);
    let mut x = random_values(batch * 5, 2);
    // A linear "loss" L = Σ y ⊙ r makes grad_y = r.
    let r = random_values(batch * 3, 3);
    let loss = |params: &[f32], x: &[f32]| -> f64 {
        let mut y = Array2::<f32>::zeros((batch, 3));
        dense.forward(
            params,
            ArrayView2::from_shape((batch, 5), x).unwrap(),
            y.view_mut(),
        );
        y.iter().zip(&r).map(|(&y, &r)| (y * r) as f64).sum()
    };
    let mut grads = vec![0.0; params.len()];
    let mut grad_x = Array2::<f32>::zeros((batch, 5));
    dense.backward_into(
        &params,
        ArrayView2::from_shape((batch, 5), &x).unwrap(),
        ArrayView2::from_shape((batch, 3), &r).unwrap(),
        &mut grads,
        Some(grad_x.view_mut()),
        true,
    );
    let x_fixed = x.clone();
    for index in 0..params.len() {
        let numeric = central_difference(&mut params, index, 1e-2, &mut |p| loss(p, &x_fixed));
        assert_close(grads[index] as f64, numeric, &format!("param {index}"));
    }
    let params_fixed = params.clone();
    for index in 0..x.len() {
        let numeric = central_difference(&mut x, index, 1e-2, &mut |x| loss(&params_fixed, x));
        assert_close(
            grad_x.as_slice().unwrap()[index] as f64,
            numeric,
            &format!("x {index}"),
        );
    }
}

#[test]
fn relu_backward_matches_finite_differences() {
    // Keep inputs away from the kink at 0, where the derivative is undefined.
    let mut x: Vec<f32> = random_values(20, 4)
        .into_iter()
        .map(|v| if v.abs() < 0.1 { v + 0.2 } else { v })
        .collect();
    let r = random_values(20, 5);
    let mut output = x.clone();
    relu_forward(&mut output);
    let mut grad = r.clone();
    relu_backward(&output, &mut grad);
    check_elementwise(&grad, &mut x, &r, 1e-3, &|y| relu_forward(y));
}

#[test]
fn dropout_backward_matches_finite_differences_and_scales_survivors() {
    let rate = 0.5;
    let mut x = random_values(64, 6);
    let r = random_values(64, 7);
    let mut y = x.clone();
    let mut mask = vec![0.0; x.len()];
    dropout_forward(&mut y, &mut mask, rate, &mut Rng::from_u64(9));
    assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
    let dropped = mask.iter().filter(|&&m| m == 0.0).count();
    assert!(
        (16..=48).contains(&dropped),
        "{dropped} of 64 dropped at rate 0.5"
    );
    let mut grad = r.clone();
    dropout_backward(&mask, &mut grad);
    // The same seed gives the same mask, so the forward pass is a fixed function of x.
    let forward = |y: &mut [f32]| {
        let mut mask = vec![0.0; y.len()];
        dropout_forward(y, &mut mask, rate, &mut Rng::from_u64(9));
    };
    check_elementwise(&grad, &mut x, &r, 1e-2, &forward);
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let classes = 4;
    let labels = [0u8, 3, 2];
    let mut logits: Vec<f32> = random_values(3 * classes, 8)
        .iter()
        .map(|v| v * 3.0)
        .collect();
    let scale = 1.0 / 3.0;
    let mut grad = vec![0.0; logits.len()];
    softmax_cross_entropy(&logits, &labels, classes, scale, Some(&mut grad));
    for index in 0..logits.len() {
        let numeric = central_difference(&mut logits, index, 1e-2, &mut |z| {
            softmax_cross_entropy(z, &labels, classes, 0.0, None).0 * scale as f64
        });
        assert_close(grad[index] as f64, numeric, &format!("logit {index}"));
    }
}

#[test]
fn softmax_cross_entropy_is_stable_for_huge_logits() {
    let (loss, correct) = softmax_cross_entropy(&[1000.0, -1000.0, 0.0], &[0], 3, 1.0, None);
    assert!(loss.is_finite() && loss.abs() < 1e-6, "{loss}");
    assert_eq!(correct, 1);
    let (loss, _) = softmax_cross_entropy(&[1000.0, -1000.0, 0.0], &[1], 3, 1.0, None);
    assert!((loss - 2000.0).abs() < 1e-3, "{loss}");
}

#[test]
fn whole_network_gradient_matches_finite_differences() {
    let architecture = Architecture {
        inputs: 6,
        hidden: vec![5, 4],
        outputs: 3,
        activation: "relu".into(),
        dropout: 0.25,
        layers: None,
    };
    let mlp = Mlp::new(architecture);
    let rows = 5;
    let mut params = mlp.initial_parameters(11);
    // Non-zero biases so no ReLU input sits exactly on the kink.
    for (index, value) in random_values(params.len(), 12).into_iter().enumerate() {
        params[index] += 0.05 * value;
    }
    let mut workspace = mlp.workspace(rows);
    workspace
        .inputs
        .copy_from_slice(&random_values(rows * 6, 13));
    workspace.labels.copy_from_slice(&[0, 1, 2, 1, 0]);
    check_parameter_gradient(&mlp, &mut params, &workspace, rows, "whole network");
}
