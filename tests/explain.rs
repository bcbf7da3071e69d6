//! Attribution methods against answers worked out by hand or by finite differences, and the
//! deletion check's arithmetic.
// Finite differences and hand-built images address pixels by index; loops over them read plainest.
#![allow(clippy::needless_range_loop)]

use ndarray::{Array2, ArrayView2};

use mnist_train::explain::checks::{area_under, deletion_curve, deletion_order, random_order};
use mnist_train::explain::integrated_gradients::integrated_gradients;
use mnist_train::explain::occlusion::occlusion;
use mnist_train::explain::{
    attribute, run_checks, Differentiable, Method, PixelInputs, Quadrature, Settings, TrainedMlp,
};
use mnist_train::model_file::Normalization;
use mnist_train::nn::layer_spec::parse_layers;
use mnist_train::nn::{Architecture, Mlp};
use mnist_train::rng::Rng;

fn random_values(count: usize, seed: u64, low: f32, high: f32) -> Vec<f32> {
    let mut rng = Rng::from_u64(seed);
    (0..count)
        .map(|_| low + (high - low) * rng.next_f32())
        .collect()
}

fn architecture(inputs: usize, hidden: &[usize], outputs: usize) -> Architecture {
    Architecture {
        inputs,
        hidden: hidden.to_vec(),
        outputs,
        activation: "relu".into(),
        dropout: 0.5,
        layers: None,
    }
}

/// A network with random weights (dropout is set, so inference mode is what is tested).
fn random_network(architecture: Architecture, seed: u64) -> (Mlp, Vec<f32>) {
    let mlp = Mlp::new(architecture);
    let params = random_values(mlp.parameter_count(), seed, -0.6, 0.6);
    (mlp, params)
}

fn row(values: &[f32]) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((1, values.len()), values).unwrap()
}

fn logit(model: &dyn Differentiable, x: &[f32], class: usize) -> f64 {
    model.logits(row(x))[[0, class]] as f64
}

/// Central difference of `class`'s logit with respect to every input.
fn numeric_gradient(model: &dyn Differentiable, x: &[f32], class: usize, step: f32) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let original = x[i];
            x[i] = original + step;
            let plus = logit(model, &x, class);
            x[i] = original - step;
            let minus = logit(model, &x, class);
            x[i] = original;
            (plus - minus) / (2.0 * step as f64)
        })
        .collect()
}

fn assert_gradients_match(model: &dyn Differentiable, inputs: &[Vec<f32>], step: f32) {
    let batch = Array2::from_shape_fn((inputs.len(), model.input_len()), |(r, i)| inputs[r][i]);
    for class in 0..model.classes() {
        let analytic = model.input_gradient(batch.view(), class);
        for (r, x) in inputs.iter().enumerate() {
            let numeric = numeric_gradient(model, x, class, step);
            for (i, &expected) in numeric.iter().enumerate() {
                let got = analytic[[r, i]] as f64;
                assert!(
                    (got - expected).abs() <= 2e-3 + 2e-2 * expected.abs(),
                    "row {r} class {class} input {i}: analytic {got} vs numeric {expected}"
                );
            }
        }
    }
}

#[test]
fn mlp_input_gradient_matches_finite_differences() {
    let (mlp, params) = random_network(architecture(12, &[9, 7], 4), 11);
    let network = TrainedMlp::new(mlp, &params);
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|s| random_values(12, 100 + s, -1.0, 1.0))
        .collect();
    assert_gradients_match(&network, &inputs, 1e-3);
}

#[test]
fn cnn_input_gradient_matches_finite_differences() {
    // Two convolutions (the first one's input gradient is what attributions read), pooling,
    // dropout (off in inference) and a dense head, on 28×28 inputs.
    let layers =
        parse_layers("conv3x3,relu,pool2,conv4x3,relu,flatten,dropout0.5,dense10").unwrap();
    let mlp = Mlp::new(Architecture::stack(layers));
    let params = random_values(mlp.parameter_count(), 21, -0.3, 0.3);
    let network = TrainedMlp::new(mlp, &params);
    let inputs: Vec<Vec<f32>> = (0..2)
        .map(|s| random_values(784, 200 + s, 0.0, 1.0))
        .collect();
    let batch = Array2::from_shape_fn((2, 784), |(r, i)| inputs[r][i]);
    // The network is piecewise linear: where a step of ±h crosses a ReLU or a max-pool switch,
    // the central difference averages two slopes, but the exact gradient still equals the
    // one-sided slope on its own side. Compare with both one-sided slopes.
    let step = 1e-3f32;
    let mut kinks = 0;
    for class in [0, 3, 7] {
        let analytic = network.input_gradient(batch.view(), class);
        for (r, x) in inputs.iter().enumerate() {
            let mut x = x.clone();
            let centre = logit(&network, &x, class);
            for i in 0..784 {
                let original = x[i];
                x[i] = original + step;
                let right = (logit(&network, &x, class) - centre) / step as f64;
                x[i] = original - step;
                let left = (centre - logit(&network, &x, class)) / step as f64;
                x[i] = original;
                let got = analytic[[r, i]] as f64;
                let close = |slope: f64| (got - slope).abs() <= 2e-3 + 2e-2 * slope.abs();
                assert!(
                    close(left) || close(right),
                    "row {r} class {class} input {i}: analytic {got} vs slopes {left}, {right}"
                );
                kinks += usize::from(!(close(left) && close(right)));
            }
        }
    }
    // Kinks are rare; a gradient that is wrong everywhere would not hide among them.
    assert!(kinks < 3 * 2 * 784 / 50, "{kinks} inputs near a kink");
}

#[test]
fn pixel_gradient_includes_the_model_files_normalization() {
    // x = p · 255 · scale + offset with scale 1/127.5: ∂/∂p is twice ∂/∂x.
    let (mlp, params) = random_network(architecture(10, &[8], 3), 12);
    let network = TrainedMlp::new(mlp, &params);
    let normalization = Normalization {
        scale: 1.0 / 127.5,
        offset: -1.0,
    };
    let pixels = PixelInputs::new(&network, normalization);
    let inputs: Vec<Vec<f32>> = (0..2)
        .map(|s| random_values(10, 200 + s, 0.0, 1.0))
        .collect();
    assert_gradients_match(&pixels, &inputs, 5e-4);
    let through_pixels = pixels.input_gradient(row(&inputs[0]), 1);
    let normalized: Vec<f32> = inputs[0].iter().map(|p| p * 2.0 - 1.0).collect();
    let direct = network.input_gradient(row(&normalized), 1);
    for (p, x) in through_pixels.iter().zip(direct.iter()) {
        assert!((p - 2.0 * x).abs() < 1e-5, "{p} vs 2 × {x}");
    }
}

fn settings(steps: usize, quadrature: Quadrature) -> Settings {
    Settings {
        ig_steps: steps,
        quadrature,
        ..Settings::default()
    }
}

#[test]
fn integrated_gradients_add_up_to_the_score_difference_on_a_small_relu_network() {
    let (mlp, params) = random_network(architecture(16, &[12, 8], 3), 21);
    let network = TrainedMlp::new(mlp, &params);
    let (mut coarse_errors, mut fine_errors) = (Vec::new(), Vec::new());
    for seed in 0..10 {
        let x = random_values(16, 300 + seed, 0.0, 1.0);
        for class in 0..3 {
            let difference = logit(&network, &x, class) - logit(&network, &[0.0; 16], class);
            if difference.abs() < 0.1 {
                continue; // nothing to attribute: a relative error means little
            }
            for (steps, errors) in [(10, &mut coarse_errors), (2000, &mut fine_errors)] {
                let (values, completeness) = integrated_gradients(
                    &network,
                    &x,
                    class,
                    &settings(steps, Quadrature::RiemannMiddle),
                );
                let sum: f64 = values.iter().map(|&v| v as f64).sum();
                assert!((sum - completeness.attribution_sum).abs() < 1e-4);
                assert!((completeness.score_input - logit(&network, &x, class)).abs() < 1e-5);
                let error = completeness.relative_error().unwrap();
                assert!(
                    error < if steps == 2000 { 5e-3 } else { 0.5 },
                    "seed {seed} class {class}, {steps} steps: Σ {sum} vs Δ {difference}"
                );
                errors.push(error);
            }
        }
    }
    assert!(
        fine_errors.len() >= 10,
        "too few cases with a score difference"
    );
    // The quadrature error of a step-function integrand shrinks like 1/steps.
    let mean = |errors: &[f64]| errors.iter().sum::<f64>() / errors.len() as f64;
    assert!(
        mean(&fine_errors) * 20.0 < mean(&coarse_errors),
        "{fine_errors:?} vs {coarse_errors:?}"
    );
}

/// A linear model y = x · W + b (no hidden layer), with W and b chosen by the test.
fn linear(inputs: usize, outputs: usize, weight: impl Fn(usize, usize) -> f32) -> (Mlp, Vec<f32>) {
    let mlp = Mlp::new(architecture(inputs, &[], outputs));
    let mut params = vec![0.0; mlp.parameter_count()];
    for i in 0..inputs {
        for o in 0..outputs {
            params[i * outputs + o] = weight(i, o);
        }
    }
    for o in 0..outputs {
        params[inputs * outputs + o] = 0.25 * o as f32;
    }
    (mlp, params)
}

#[test]
fn gradient_methods_give_the_weights_on_a_linear_model() {
    let (mlp, params) = linear(6, 2, |i, o| (i as f32 - 2.5) * (o as f32 + 1.0));
    let network = TrainedMlp::new(mlp, &params);
    let x = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
    let baseline = 0.1;
    let defaults = Settings {
        baseline,
        ..Settings::default()
    };
    let class = 1;
    let w = |i: usize| (i as f32 - 2.5) * 2.0;
    let of = |method| attribute(&network, &x, 6, class, method, &defaults).values;
    let saliency = of(Method::Saliency);
    let input_x_gradient = of(Method::InputXGradient);
    let integrated = of(Method::IntegratedGradients);
    for i in 0..6 {
        assert!((saliency[i] - w(i).abs()).abs() < 1e-5, "saliency {i}");
        assert!(
            (input_x_gradient[i] - x[i] * w(i)).abs() < 1e-5,
            "x·grad {i}"
        );
        // IG of a linear model is exact: (x − b) · w with any quadrature.
        assert!(
            (integrated[i] - (x[i] - baseline) * w(i)).abs() < 1e-5,
            "IG {i}"
        );
    }
}

#[test]
fn occlusion_matches_hand_counted_patch_overlaps() {
    // 7×7 images; class 0's logit is the centre pixel (3, 3) and nothing else.
    let centre = 3 * 7 + 3;
    let (mlp, params) = linear(49, 1, |i, _| if i == centre { 1.0 } else { 0.0 });
    let network = TrainedMlp::new(mlp, &params);
    let x = random_values(49, 5, 0.2, 1.0);
    let map = occlusion(&network, &x, 7, 0, 3, 0.0);
    let v = x[centre];
    // 3×3 patches at top-left corners (0..=4)²: a pixel's value is
    // (patches covering it and the centre) / (patches covering it) · x[centre].
    let expected = |r: usize, c: usize| -> f32 {
        let corners = |p: usize| (p.saturating_sub(2)..=p.min(4)).collect::<Vec<_>>();
        let (rows, cols) = (corners(r), corners(c));
        let hits = rows.iter().filter(|&&t| (t..t + 3).contains(&3)).count()
            * cols.iter().filter(|&&l| (l..l + 3).contains(&3)).count();
        hits as f32 / (rows.len() * cols.len()) as f32 * v
    };
    // Worked by hand: the centre is under all 9 of its patches, (2, 2) shares 4 of its 9 with it,
    // (1, 1) 1 of its 4, and the corner's only patch misses it.
    assert!((map[centre] - v).abs() < 1e-5);
    assert!((map[2 * 7 + 2] - 4.0 / 9.0 * v).abs() < 1e-5);
    assert!((map[7 + 1] - 0.25 * v).abs() < 1e-5);
    assert_eq!(map[0], 0.0);
    for r in 0..7 {
        for c in 0..7 {
            assert!((map[r * 7 + c] - expected(r, c)).abs() < 1e-5, "({r}, {c})");
        }
    }
    // Patch 1 is the pixel's own contribution; a whole-image patch spreads F(x) − F(b) everywhere.
    let single = occlusion(&network, &x, 7, 0, 1, 0.5);
    for i in 0..49 {
        let own = if i == centre { x[i] - 0.5 } else { 0.0 };
        assert!((single[i] - own).abs() < 1e-5);
    }
    let whole = occlusion(&network, &x, 7, 0, 7, 0.0);
    assert!(whole.iter().all(|&a| (a - v).abs() < 1e-5));
}

#[test]
fn deletion_curve_follows_the_order_and_the_random_order_is_a_seeded_permutation() {
    // Two classes; class 0's logit is 8 · (pixels 0..4), so deleting those first kills it.
    let (mlp, params) = linear(20, 2, |i, o| if o == 0 && i < 4 { 8.0 } else { 0.0 });
    let network = TrainedMlp::new(mlp, &params);
    let x = vec![1.0; 20];
    let best = deletion_order(
        &attribute(
            &network,
            &x,
            20,
            0,
            Method::InputXGradient,
            &Settings::default(),
        )
        .values,
    );
    assert_eq!(
        &best[..4],
        &[0, 1, 2, 3],
        "ties keep the lower position first"
    );
    let curve = deletion_curve(&network, &x, &best, 0, 0.0);
    assert_eq!(curve.len(), 51);
    let probability = |class0: f32| 1.0 / (1.0 + (0.25 - class0).exp());
    assert!((curve[0] - probability(32.0)).abs() < 1e-6);
    assert!((curve[50] - probability(0.0)).abs() < 1e-6);
    assert!(curve.windows(2).all(|pair| pair[1] <= pair[0] + 1e-7));
    // After 10 % (2 of 20 pixels), two of the four evidence pixels are gone.
    assert!((curve[5] - probability(16.0)).abs() < 1e-6);
    let worst: Vec<usize> = best.iter().rev().copied().collect();
    assert!(area_under(&curve) < area_under(&deletion_curve(&network, &x, &worst, 0, 0.0)));

    let random = random_order(784, 3);
    let mut sorted = random.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..784).collect::<Vec<_>>());
    assert_eq!(random, random_order(784, 3));
    assert_ne!(random, random_order(784, 4));

    assert!((area_under(&[1.0; 51]) - 1.0).abs() < 1e-12);
    let line: Vec<f32> = (0..=50).map(|k| 1.0 - k as f32 / 50.0).collect();
    assert!((area_under(&line) - 0.5).abs() < 1e-6);
}

#[test]
fn check_report_has_every_method_and_integrated_gradients_beat_random_on_a_linear_model() {
    let (mlp, params) = linear(16, 3, |i, o| if i % 3 == o { 2.0 } else { -0.5 });
    let network = TrainedMlp::new(mlp, &params);
    let images: Vec<Vec<f32>> = (0..6)
        .map(|s| random_values(16, 400 + s, 0.0, 1.0))
        .collect();
    let settings = Settings {
        occlusion_patch: 2,
        ..Settings::default()
    };
    let report = run_checks(&network, &images, 4, &settings, &Method::ALL);
    assert_eq!(report.images, 6);
    let names: Vec<&str> = report.methods.iter().map(|m| m.method).collect();
    assert_eq!(
        names,
        [
            "integrated-gradients",
            "saliency",
            "input-x-gradient",
            "occlusion"
        ]
    );
    let ig = &report.methods[0];
    // A linear model's IG is exact, so completeness is rounding error only.
    assert!(ig.completeness_worst.unwrap() < 1e-4, "{ig:?}");
    assert!(ig.beats_random >= 5.0 / 6.0, "{ig:?}");
    assert!(ig.deletion_auc < ig.random_auc, "{ig:?}");
    assert!(report.methods[1].completeness_median.is_none());
    assert!(report
        .methods
        .iter()
        .all(|m| (0.0..=1.0).contains(&m.beats_random)));
}
