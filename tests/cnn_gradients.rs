//! The convolutional layers' backward passes against central finite differences of their forward
//! passes, and the whole layer stack against finite differences of its loss.
#![allow(clippy::needless_range_loop)]

use mnist_train::nn::architecture::Architecture;
use mnist_train::nn::conv2d::Conv2d;
use mnist_train::nn::layer_spec::{mlp_layers, parse_layers};
use mnist_train::nn::max_pool::MaxPool;
use mnist_train::nn::sequential::ROWS_PER_PASS;
use mnist_train::nn::{GradientSink, Mlp};
use mnist_train::rng::Rng;

use crate::support::finite_difference::{
    assert_close, central_difference, check_parameter_gradient, random_values,
};

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

fn conv(h: usize, w: usize, c: usize, filters: usize, kernel: usize) -> Conv2d {
    let weights = 0..kernel * kernel * c * filters;
    let bias = weights.end..weights.end + filters;
    Conv2d {
        in_height: h,
        in_width: w,
        in_channels: c,
        filters,
        kernel,
        weights,
        bias,
    }
}

fn pool(h: usize, w: usize, channels: usize, size: usize) -> MaxPool {
    MaxPool {
        in_height: h,
        in_width: w,
        channels,
        size,
    }
}

#[test]
fn convolution_backward_matches_finite_differences_for_weights_bias_and_input() {
    for (case, layer) in [
        conv(5, 6, 1, 3, 3),
        conv(4, 4, 3, 2, 2),
        conv(6, 5, 2, 4, 3),
        // Winograd F(2×2, 3×3): an odd output (4 × 3) and channels past a block of 16.
        conv(6, 5, 17, 2, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let rows = 2;
        let seed = 10 * case as u64;
        let mut params = random_values(layer.bias.end, seed + 1);
        let mut x = random_values(rows * layer.in_len(), seed + 2);
        // A linear loss L = Σ y ⊙ r makes grad_y = r.
        let r = random_values(rows * layer.out_len(), seed + 3);
        let loss = |params: &[f32], x: &[f32]| -> f64 {
            let mut col = vec![0.0; layer.col_len(rows)];
            let mut y = vec![0.0; rows * layer.out_len()];
            layer.forward(params, x, rows, &mut col, &mut y);
            dot(&y, &r)
        };
        let mut col = vec![0.0; layer.col_len(rows)];
        let mut y = vec![0.0; rows * layer.out_len()];
        layer.forward(&params, &x, rows, &mut col, &mut y);
        // Stale values in the gradient buffers must be overwritten, not added to.
        let mut grads = vec![7.0; params.len()];
        let mut grad_x = vec![7.0; x.len()];
        let mut scratch = vec![7.0; layer.scratch_len(rows)];
        layer.backward(
            &params,
            (&x, &col),
            &r,
            rows,
            &mut grads,
            (Some(&mut grad_x), &mut scratch),
            false,
        );
        let x_fixed = x.clone();
        for index in 0..params.len() {
            let numeric = central_difference(&mut params, index, 1e-2, &mut |p| loss(p, &x_fixed));
            let what = if index < layer.weights.end {
                "weight"
            } else {
                "bias"
            };
            assert_close(
                grads[index] as f64,
                numeric,
                &format!("case {case} {what} {index}"),
            );
        }
        let params_fixed = params.clone();
        for index in 0..x.len() {
            let numeric = central_difference(&mut x, index, 1e-2, &mut |x| loss(&params_fixed, x));
            assert_close(
                grad_x[index] as f64,
                numeric,
                &format!("case {case} input {index}"),
            );
        }
        // Accumulating adds the same gradient again.
        let once = grads.clone();
        let sink = (None, &mut scratch[..]);
        layer.backward(&params, (&x, &col), &r, rows, &mut grads, sink, true);
        for (twice, once) in grads.iter().zip(&once) {
            assert!((twice - 2.0 * once).abs() <= 1e-5 * (1.0 + once.abs()));
        }
    }
}

#[test]
fn max_pool_backward_matches_finite_differences_without_ties() {
    let pool = pool(5, 4, 3, 2);
    let rows = 2;
    // Distinct values far apart (a shuffled ramp), so a small step never changes a winner.
    let mut x: Vec<f32> = (0..rows * pool.in_len())
        .map(|i| ((i * 37) % 120) as f32 * 0.1)
        .collect();
    let r = random_values(rows * pool.out_len(), 21);
    let loss = |x: &[f32]| -> f64 {
        let mut y = vec![0.0; rows * pool.out_len()];
        pool.forward(x, rows, &mut y);
        dot(&y, &r)
    };
    let mut grad_x = vec![5.0; x.len()];
    pool.backward(&x, &r, rows, &mut grad_x);
    for index in 0..x.len() {
        let numeric = central_difference(&mut x, index, 1e-3, &mut |x| loss(x));
        assert_close(grad_x[index] as f64, numeric, &format!("input {index}"));
    }
}

#[test]
fn max_pool_ties_send_the_whole_gradient_to_the_first_maximum() {
    // One 4×4 single-channel image, four 2×2 windows: no tie, a 2-way, a 3-way and a 4-way tie.
    #[rustfmt::skip]
    let x = vec![
        1.0, 2.0,   3.0, 0.0,
        0.5, 0.0,   0.0, 3.0,

        4.0, 4.0,   1.0, 1.0,
        0.0, 4.0,   1.0, 1.0,
    ];
    let pool = pool(4, 4, 1, 2);
    let mut y = [0.0; 4];
    pool.forward(&x, 1, &mut y);
    assert_eq!(y, [2.0, 3.0, 4.0, 1.0]);
    // First maximum in window order (row by row): indices into the 4×4 image.
    let first_maximum = [1, 2, 8, 10];
    let r = [0.5, -1.0, 2.0, 3.0];
    let mut grad_x = vec![0.0; 16];
    pool.backward(&x, &r, 1, &mut grad_x);
    // Raising every tied input together raises the window's maximum one for one, so the
    // directional derivative along the tie is r: the gradient routed to the first maximum gives
    // exactly that, and nothing goes anywhere else.
    let windows: [&[usize]; 4] = [
        &[0, 1, 4, 5],
        &[2, 3, 6, 7],
        &[8, 9, 12, 13],
        &[10, 11, 14, 15],
    ];
    for (window, members) in windows.iter().enumerate() {
        let tied: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| x[i] == y[window])
            .collect();
        let step = 1e-3f32;
        let mut raised = x.clone();
        for &i in &tied {
            raised[i] += step;
        }
        let mut y_raised = [0.0; 4];
        pool.forward(&raised, 1, &mut y_raised);
        let directional = (dot(&y_raised, &r) - dot(&y, &r)) / step as f64;
        let routed: f64 = tied.iter().map(|&i| grad_x[i] as f64).sum();
        assert_close(routed, directional, &format!("window {window}"));
        for &i in *members {
            let expected = if i == first_maximum[window] {
                r[window]
            } else {
                0.0
            };
            assert_eq!(grad_x[i], expected, "window {window}, input {i}");
        }
    }
}

/// Loss and gradient of a stack on `rows` random images, checked against finite differences of
/// every parameter.
fn check_stack_gradient(spec: &str, side: usize, rows: usize, seed: u64) {
    let architecture = Architecture {
        inputs: side * side,
        outputs: 3,
        ..Architecture::stack(parse_layers(spec).unwrap())
    };
    let mlp = Mlp::try_new(architecture).unwrap();
    let mut params = mlp.initial_parameters(seed);
    // Non-zero biases so few ReLU inputs sit on the kink.
    for (value, noise) in params.iter_mut().zip(random_values(10_000, seed + 1)) {
        *value += 0.05 * noise;
    }
    let mut workspace = mlp.workspace(rows);
    workspace
        .inputs
        .copy_from_slice(&random_values(rows * side * side, seed + 2));
    for (row, label) in workspace.labels.iter_mut().enumerate() {
        *label = (row % 3) as u8;
    }
    check_parameter_gradient(&mlp, &mut params, &workspace, rows, spec);
}

#[test]
fn whole_cnn_gradient_matches_finite_differences() {
    check_stack_gradient(
        "conv3x3,relu,pool2,conv4x2,relu,flatten,dropout0.25,dense3",
        6,
        4,
        30,
    );
}

#[test]
fn whole_cnn_gradient_through_a_winograd_convolution_matches_finite_differences() {
    // The second convolution reads 16 channels, so it runs as Winograd F(2×2, 3×3); 7×7 images
    // give it an odd 3×3 output, and ROWS_PER_PASS + 3 rows a partial second pass. No ReLU: with
    // 16 filters, a step of 1e-2 moves enough units across the kink to spoil the differences (the
    // stack above checks ReLUs).
    let rows = ROWS_PER_PASS + 3;
    check_stack_gradient("conv16x3,conv3x3,flatten,dense3", 7, rows, 31);
}

#[test]
fn a_chunk_run_in_several_passes_gives_the_sum_of_its_parts() {
    // More rows than one pass holds: the passes' gradients and losses must add up to what the
    // parts give on their own (each part checked against finite differences above).
    let architecture = Architecture {
        inputs: 36,
        outputs: 3,
        ..Architecture::stack(
            parse_layers("conv2x3,relu,pool2,flatten,dense5,relu,dense3").unwrap(),
        )
    };
    let mlp = Mlp::new(architecture);
    let params = mlp.initial_parameters(3);
    let rows = ROWS_PER_PASS + 5;
    let inputs = random_values(rows * 36, 1);
    let labels: Vec<u8> = (0..rows).map(|row| (row % 3) as u8).collect();
    let run = |range: std::ops::Range<usize>| {
        let count = range.len();
        let mut workspace = mlp.workspace(count);
        workspace
            .inputs
            .copy_from_slice(&inputs[range.start * 36..range.end * 36]);
        workspace.labels.copy_from_slice(&labels[range]);
        let mut grads = vec![0.0; params.len()];
        let gradient = GradientSink::adding(&mut grads, 1.0);
        let mut rng = Rng::from_u64(5);
        let (loss, _) = mlp.train_chunk(&params, &mut workspace, count, &mut rng, gradient);
        (loss, grads)
    };
    let (loss, grads) = run(0..rows);
    let (loss_a, grads_a) = run(0..ROWS_PER_PASS);
    let (loss_b, grads_b) = run(ROWS_PER_PASS..rows);
    assert!(
        (loss - (loss_a + loss_b)).abs() < 1e-9 * loss.abs().max(1.0),
        "{loss}"
    );
    for (index, (g, (a, b))) in grads.iter().zip(grads_a.iter().zip(&grads_b)).enumerate() {
        assert!(
            (g - (a + b)).abs() <= 1e-5 * (1.0 + g.abs()),
            "param {index}: {g} vs {a} + {b}"
        );
    }
    assert!(grads_b.iter().any(|&g| g != 0.0));
}

/// Loss, logits and parameter gradient of `spec` on fixed random 6×6 images (with dropout).
fn stack_loss_logits_gradient(spec: &str) -> (f64, Vec<f32>, Vec<f32>) {
    let architecture = Architecture {
        inputs: 36,
        outputs: 3,
        ..Architecture::stack(parse_layers(spec).unwrap())
    };
    let mlp = Mlp::new(architecture);
    let mut params = mlp.initial_parameters(4);
    // Non-zero biases, so the ReLU sees both signs.
    for (value, noise) in params.iter_mut().zip(random_values(10_000, 5)) {
        *value += 0.1 * noise;
    }
    let rows = 5;
    let mut workspace = mlp.workspace(rows);
    workspace
        .inputs
        .copy_from_slice(&random_values(rows * 36, 6));
    for (row, label) in workspace.labels.iter_mut().enumerate() {
        *label = (row % 3) as u8;
    }
    let mut grads = vec![0.0; params.len()];
    let gradient = GradientSink::adding(&mut grads, 1.0);
    let (loss, _) = mlp.train_chunk(
        &params,
        &mut workspace,
        rows,
        &mut Rng::from_u64(7),
        gradient,
    );
    (loss, workspace.logits(rows, 3).to_vec(), grads)
}

#[test]
fn relu_steps_done_inside_convolution_and_pooling_give_the_bits_of_separate_steps() {
    // conv→relu runs the ReLU in the product's last step and relu→pool runs the ReLU's backward
    // step in the pool's; a rate-0 dropout between them (the identity) keeps every step separate.
    let fused = stack_loss_logits_gradient("conv4x3,relu,pool2,flatten,dropout0.5,dense3");
    let separate = stack_loss_logits_gradient(
        "conv4x3,dropout0,relu,dropout0,pool2,flatten,dropout0.5,dense3",
    );
    assert_eq!(fused.0.to_bits(), separate.0.to_bits());
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    assert_eq!(bits(&fused.1), bits(&separate.1));
    assert_eq!(bits(&fused.2), bits(&separate.2));
    // The convolution's gradient is not all zeros (a rate-0 dropout must not mask it).
    assert!(fused.2[..36].iter().any(|&g| g != 0.0));
}

#[test]
fn the_mlp_written_as_a_stack_starts_from_the_same_weights_and_predicts_the_same() {
    let mlp = Mlp::new(Architecture::tutorial());
    let stack = Mlp::new(Architecture::stack(mlp_layers(&[128], 0.2, 10)));
    assert_eq!(stack.parameter_count(), 101_770);
    let params = mlp.initial_parameters(42);
    assert_eq!(stack.initial_parameters(42), params);
    let rows = 3;
    let inputs: Vec<f32> = random_values(rows * 784, 8)
        .iter()
        .map(|v| v.abs())
        .collect();
    let mut a = mlp.workspace(rows);
    let mut b = stack.workspace(rows);
    a.inputs.copy_from_slice(&inputs);
    b.inputs.copy_from_slice(&inputs);
    mlp.forward(&params, &mut a, rows, None);
    stack.forward(&params, &mut b, rows, None);
    for (x, y) in a.logits(rows, 10).iter().zip(b.logits(rows, 10)) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn the_keras_convnet_has_34826_parameters() {
    let cnn = Architecture::cnn();
    assert_eq!(cnn.parameter_count(), 34_826);
    let names: Vec<(String, Vec<usize>)> = cnn
        .tensor_names()
        .into_iter()
        .map(|(name, shape, _)| (name, shape))
        .collect();
    assert_eq!(
        names,
        [
            ("0.weight".to_string(), vec![3, 3, 1, 32]),
            ("0.bias".to_string(), vec![32]),
            ("3.weight".to_string(), vec![3, 3, 32, 64]),
            ("3.bias".to_string(), vec![64]),
            ("8.weight".to_string(), vec![1600, 10]),
            ("8.bias".to_string(), vec![10]),
        ]
    );
}
