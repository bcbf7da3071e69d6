//! Private training: the accountant against dp-accounting, ghost clipping, noise, and the CLI.

use mnist_train::optim::privacy::SampledGaussian;

/// Reference ε from Google's dp-accounting (scripts/dp-reference regenerates the table).
const REFERENCE: &str = include_str!("data/dp_reference.tsv");

#[test]
fn accountant_agrees_with_dp_accounting_within_one_percent() {
    let mut cases = 0;
    for line in REFERENCE.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let fields: Vec<f64> = line
            .split('\t')
            .map(|f| f.parse().expect("numeric field"))
            .collect();
        let [q, sigma, steps, delta, expected] = fields[..] else {
            panic!("bad reference line {line:?}");
        };
        let epsilon = SampledGaussian {
            sampling_rate: q,
            noise_multiplier: sigma,
        }
        .epsilon(steps as u64, delta);
        let error = (epsilon - expected).abs() / expected;
        assert!(
            error < 0.01,
            "q {q} σ {sigma} steps {steps} δ {delta}: ours {epsilon}, dp-accounting {expected}"
        );
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} reference cases");
}

use crate::support::{self, bits, fit_on_threads, random_dataset};
use mnist_train::data::gather_normalized;
use mnist_train::nn::layer_spec::parse_layers;
use mnist_train::nn::sequential::ROWS_PER_PASS;
use mnist_train::nn::{Architecture, GradientSink, Mlp};
use mnist_train::optim::privacy::DpConfig;
use mnist_train::optim::OptimizerConfig;
use mnist_train::rng::Rng;
use mnist_train::train::step::{PrivateStep, StepBatch, StepEngine};
use mnist_train::train::{BatchSize, Progress, ProgressMode, TrainConfig, Trainer};

/// 784 → 12 → 8 → 10 without dropout (dropout makes per-example gradients depend on the draw
/// order, which the materialized reference would have to replicate).
fn small_mlp() -> Mlp {
    Mlp::new(Architecture {
        hidden: vec![12, 8],
        dropout: 0.0,
        ..Architecture::tutorial()
    })
}

/// Every example's gradient, formed explicitly: one example per backward pass.
/// Parameters from `seed`, 24 example indices, each example's gradient formed explicitly, and
/// its norm.
type Fixture = (Vec<f32>, Vec<u32>, Vec<Vec<f32>>, Vec<f64>);

fn materialized_fixture(mlp: &Mlp, seed: u64) -> Fixture {
    let params = mlp.initial_parameters(seed);
    let indices: Vec<u32> = (0..24).collect();
    let per_example = materialized_gradients(mlp, &params, &indices);
    let norms = per_example.iter().map(|g| norm(g)).collect();
    (params, indices, per_example, norms)
}

fn materialized_gradients(mlp: &Mlp, params: &[f32], indices: &[u32]) -> Vec<Vec<f32>> {
    let data = random_dataset(40, 5);
    let mut workspace = mlp.workspace(1);
    indices
        .iter()
        .map(|&index| {
            gather_normalized(
                &data,
                &[index],
                &mut workspace.inputs,
                &mut workspace.labels,
            );
            let mut grads = vec![0.0; mlp.parameter_count()];
            let gradient = GradientSink::writing(&mut grads, 1.0);
            mlp.train_chunk(params, &mut workspace, 1, &mut Rng::from_u64(0), gradient);
            grads
        })
        .collect()
}

fn norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

fn chunk_workspace(mlp: &Mlp, indices: &[u32]) -> mnist_train::nn::Workspace {
    let data = random_dataset(40, 5);
    let mut workspace = mlp.workspace(indices.len());
    gather_normalized(&data, indices, &mut workspace.inputs, &mut workspace.labels);
    workspace
}

/// A small CNN over MNIST-shaped images, without dropout: two convolutions (28 → 26 → pool 13 →
/// 11 → pool 5) and a dense layer, so the norms cover conv, pool and dense layers. The second
/// convolution reads 16 channels, so it runs as Winograd F(2×2, 3×3); the first is im2col.
fn small_cnn() -> Mlp {
    Mlp::new(Architecture::stack(
        parse_layers("conv16x3,relu,pool2,conv6x3,relu,pool2,flatten,dense10")
            .expect("a valid layer list"),
    ))
}

#[test]
fn fast_per_example_norms_equal_norms_of_materialized_gradients() {
    assert_fast_norms_match_materialized(&small_mlp());
}

#[test]
fn cnn_per_example_norms_equal_norms_of_materialized_gradients() {
    // 24 examples: more than one pass of the stack (ROWS_PER_PASS), the last one partial.
    const { assert!(24 > ROWS_PER_PASS) };
    assert_fast_norms_match_materialized(&small_cnn());
}

#[test]
fn cnn_clipped_sum_is_the_sum_of_individually_clipped_gradients_each_at_most_c() {
    assert_clipped_sum_matches_materialized(&small_cnn());
}

fn assert_fast_norms_match_materialized(mlp: &Mlp) {
    let (params, indices, _, expected) = materialized_fixture(mlp, 3);
    let mut workspace = chunk_workspace(mlp, &indices);
    mlp.example_gradient_norms_sq(
        &params,
        &mut workspace,
        indices.len(),
        &mut Rng::from_u64(0),
    );
    for (i, (&fast_sq, slow)) in workspace
        .example_norms_sq(indices.len())
        .iter()
        .zip(&expected)
        .enumerate()
    {
        let fast = f64::from(fast_sq).sqrt();
        assert!(
            (fast - slow).abs() <= 1e-4 * slow,
            "example {i}: ghost {fast}, materialized {slow}"
        );
    }
}

#[test]
fn clipped_sum_is_the_sum_of_individually_clipped_gradients_each_at_most_c() {
    assert_clipped_sum_matches_materialized(&small_mlp());
}

fn assert_clipped_sum_matches_materialized(mlp: &Mlp) {
    let (params, indices, per_example, norms) = materialized_fixture(mlp, 4);
    // A clip norm between the smallest and largest gradient: some examples clipped, some not.
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    let clip = sorted[sorted.len() / 2] as f32;
    assert!(sorted[0] < f64::from(clip) && f64::from(clip) < sorted[sorted.len() - 1]);

    // Each example alone: its contribution to the noiseless sum has norm min(‖g_i‖, C) ≤ C.
    for (offset, (&index, &full_norm)) in indices.iter().zip(&norms).enumerate() {
        let mut workspace = chunk_workspace(mlp, &[index]);
        let mut grads = vec![0.0; mlp.parameter_count()];
        let gradient = GradientSink::writing(&mut grads, 1.0);
        let mut rng = Rng::from_u64(0);
        mlp.train_chunk_clipped(&params, &mut workspace, 1, clip, &mut rng, gradient);
        let contribution = norm(&grads);
        assert!(
            contribution <= f64::from(clip) * (1.0 + 1e-5),
            "example {offset}: {contribution} > C = {clip}"
        );
        let expected = full_norm.min(f64::from(clip));
        assert!(
            (contribution - expected).abs() <= 1e-4 * expected,
            "example {offset}: {contribution} vs {expected}"
        );
    }

    // The whole chunk at once equals Σ min(1, C/‖g_i‖)·g_i formed explicitly, times the scale.
    let scale = 0.25;
    let mut workspace = chunk_workspace(mlp, &indices);
    let mut grads = vec![0.0; mlp.parameter_count()];
    let gradient = GradientSink::writing(&mut grads, scale);
    let rows = indices.len();
    let mut rng = Rng::from_u64(0);
    mlp.train_chunk_clipped(&params, &mut workspace, rows, clip, &mut rng, gradient);
    let mut expected = vec![0.0f64; mlp.parameter_count()];
    for (g, &n) in per_example.iter().zip(&norms) {
        let factor = f64::from(scale) * (f64::from(clip) / n).min(1.0);
        for (e, &v) in expected.iter_mut().zip(g) {
            *e += factor * f64::from(v);
        }
    }
    let difference: f64 = grads
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| (f64::from(a) - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let size = expected.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(
        difference <= 1e-4 * size,
        "clipped sum differs by {difference} (norm {size})"
    );
}

#[test]
fn noise_has_mean_zero_and_standard_deviation_sigma_c_over_expected_batch_and_is_seeded() {
    let mlp = Mlp::new(Architecture::tutorial());
    let params = mlp.initial_parameters(1);
    let data = random_dataset(10, 2);
    let private = PrivateStep {
        clip_norm: 2.0,
        noise_multiplier: 1.5,
        expected_batch: 64.0,
    };
    let noise_only = |threads: usize, seed: u64, step: u64| {
        let mut engine = StepEngine::new(&mlp, 64, threads);
        // An empty Poisson sample: the step's gradient is the noise alone.
        let empty = StepBatch {
            mlp: &mlp,
            params: &params,
            dataset: &data,
            indices: &[],
            next_indices: &[],
            seed,
            global_step: step,
        };
        engine.private_gradient(&empty, private);
        let mut grads = vec![0.0; params.len()];
        engine.batch_gradient(&mut grads);
        grads
    };
    let noise = noise_only(1, 7, 3);
    let n = noise.len() as f64;
    let mean = noise.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (noise
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let expected_std = 1.5 * 2.0 / 64.0;
    // 101,770 samples: the mean's standard error is std/319, the std's about std/451.
    assert!(mean.abs() < 5.0 * expected_std / n.sqrt(), "mean {mean}");
    assert!(
        (std / expected_std - 1.0).abs() < 0.012,
        "std {std}, expected {expected_std}"
    );
    // Seeded: the same (seed, step) gives the same noise on any thread count; others differ.
    assert_eq!(noise, noise_only(2, 7, 3));
    assert_eq!(noise, noise_only(3, 7, 3));
    assert_ne!(noise, noise_only(1, 7, 4));
    assert_ne!(noise, noise_only(1, 8, 3));
}

fn private_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        architecture: Architecture {
            hidden: vec![16],
            ..Architecture::tutorial()
        },
        optimizer: OptimizerConfig::Momentum { momentum: 0.9 },
        learning_rate: 0.1,
        epochs,
        batch_size: BatchSize::Examples(20),
        seed: 5,
        privacy: Some(DpConfig {
            noise_multiplier: 1.0,
            clip_norm: 1.0,
            delta: 1e-5,
        }),
        ..TrainConfig::default()
    }
}

#[test]
fn private_training_is_bit_identical_for_every_thread_count_and_reports_growing_epsilon() {
    let train = random_dataset(200, 8);
    let run = |threads: usize| fit_on_threads(private_config(3), &train, threads);
    let reference = run(1);
    for threads in [2, 3, 4] {
        let other = run(threads);
        assert_eq!(
            bits(&other.params),
            bits(&reference.params),
            "{threads} threads"
        );
    }
    // ε after each epoch is the accountant's ε for the steps so far: 10 steps per epoch at q = 0.1.
    let epsilons: Vec<f64> = reference
        .history
        .iter()
        .map(|r| r.epsilon.unwrap())
        .collect();
    for (epoch, &epsilon) in epsilons.iter().enumerate() {
        let expected = mnist_train::optim::privacy::SampledGaussian {
            sampling_rate: 0.1,
            noise_multiplier: 1.0,
        }
        .epsilon(10 * (epoch as u64 + 1), 1e-5);
        assert_eq!(epsilon, expected);
    }
    assert!(epsilons.windows(2).all(|w| w[0] < w[1]), "{epsilons:?}");
    let guarantee = reference.privacy_guarantee(train.len()).unwrap();
    assert_eq!((guarantee.steps, guarantee.epsilon), (30, epsilons[2]));
}

#[test]
fn private_cnn_training_is_bit_identical_for_every_thread_count_and_learns() {
    // A Poisson batch of ~40 splits into 2 or more shards; each shard runs in stack passes.
    let train = random_dataset(200, 8);
    let config = TrainConfig {
        architecture: Architecture::stack(
            parse_layers("conv4x3,relu,pool2,flatten,dropout0.25,dense10")
                .expect("a valid layer list"),
        ),
        batch_size: BatchSize::Examples(40),
        ..private_config(2)
    };
    let run = |threads: usize| fit_on_threads(config.clone(), &train, threads);
    let reference = run(1);
    assert_eq!(bits(&run(2).params), bits(&reference.params));
    assert_eq!(bits(&run(3).params), bits(&reference.params));
    let initial = Mlp::new(config.architecture.clone()).initial_parameters(config.seed);
    assert_ne!(bits(&initial), bits(&reference.params));
    assert!(reference.params.iter().all(|v| v.is_finite()));
    assert!(reference.history.iter().all(|r| r.epsilon.is_some()));
}

#[test]
fn the_same_seed_gives_the_same_private_model_and_another_seed_does_not() {
    let train = random_dataset(120, 9);
    let run = |seed: u64| {
        let mut trainer = Trainer::new(TrainConfig {
            seed,
            ..private_config(2)
        });
        trainer
            .fit(&train, &mut Progress::new(ProgressMode::None, 2), &mut [])
            .unwrap();
        trainer.params
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

mod cli {

    use crate::support::{
        assert_one_line_error, json_lines, mnist_train, succeeded, train_printing,
    };

    #[test]
    fn target_epsilon_finds_the_noise_reports_epsilon_and_the_model_and_eval_carry_the_guarantee() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("private.bin");
        let private = ["--dp-target-epsilon", "3", "--dp-clip-norm", "1.5"];
        let run = ["--limit", "2000", "--epochs", "2", "--batch-size", "100"];
        let args = [&run[..], &private, &["--learning-rate", "0.5", "--json"]].concat();
        let output = train_printing(&model, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("Private training (DP-SGD): noise multiplier"),
            "{stderr}"
        );
        assert!(stderr.contains("Privacy guarantee: (ε = "), "{stderr}");
        let lines = json_lines(&output.stdout);
        assert_eq!(lines.len(), 3, "{lines:?}");
        let first = lines[0]["epsilon"].as_f64().unwrap();
        let second = lines[1]["epsilon"].as_f64().unwrap();
        assert!(
            0.0 < first && first < second && second <= 3.0,
            "{first} {second}"
        );
        let privacy = &lines[2]["privacy"];
        assert_eq!(privacy["epsilon"].as_f64(), Some(second));
        assert!(
            second > 2.9,
            "the smallest noise spends nearly the whole budget: {second}"
        );
        assert_eq!(privacy["delta"].as_f64(), Some(1e-5));
        assert_eq!(privacy["clip_norm"].as_f64(), Some(1.5));
        assert_eq!(privacy["sampling_rate"].as_f64(), Some(0.05));
        assert_eq!(privacy["steps"].as_u64(), Some(40));
        assert_eq!(privacy["accountant"], "rdp");
        assert!(privacy["noise_multiplier"].as_f64().unwrap() > 0.3);
        // The recipe does not override options given explicitly.
        assert_eq!(lines[2]["config"]["batch_size"], 100);
        assert_eq!(lines[2]["config"]["epochs"], 2);

        let eval = succeeded(
            mnist_train()
                .args(["eval", "--json", "--model"])
                .arg(&model),
        );
        let evaluation = &json_lines(&eval.stdout)[0];
        assert_eq!(&evaluation["privacy"], privacy);

        let exported = dir.path().join("private.safetensors");
        let export = succeeded(
            mnist_train()
                .args(["export", "--model"])
                .arg(&model)
                .arg(&exported),
        );
        let stdout = String::from_utf8_lossy(&export.stdout);
        assert!(
            stdout.contains(&format!("(ε = {second:.2}, δ = 1e-5)")),
            "{stdout}"
        );
    }

    #[test]
    fn target_epsilon_alone_uses_the_private_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let output = succeeded(
            mnist_train()
                .args(["--limit", "1200", "--json", "--dp-target-epsilon", "4"])
                .args(["--epochs", "1"])
                .arg("--output")
                .arg(dir.path().join("m.bin")),
        );
        let lines = json_lines(&output.stdout);
        let config = &lines.last().unwrap()["config"];
        use mnist_train::optim::privacy::recipe;
        let budget = recipe::for_target(4.0);
        assert_eq!(
            config["batch_size"].as_u64(),
            Some(recipe::BATCH_SIZE as u64)
        );
        assert_eq!(config["optimizer"], recipe::OPTIMIZER);
        assert_eq!(config["dropout"].as_f64(), Some(f64::from(recipe::DROPOUT)));
        assert_eq!(config["schedule"]["kind"]["name"], recipe::SCHEDULE);
        let rate = config["learning_rate"].as_f64().unwrap();
        assert!((rate - f64::from(budget.learning_rate)).abs() < 1e-6);
        let clip = lines.last().unwrap()["privacy"]["clip_norm"]
            .as_f64()
            .unwrap();
        assert!((clip - f64::from(budget.clip_norm)).abs() < 1e-6);
    }

    #[test]
    fn monitoring_training_metrics_of_a_private_run_is_refused_with_the_reason() {
        for args in [
            &["--early-stopping", "2", "--monitor", "loss"][..],
            &["--restore-best", "--monitor", "accuracy"][..],
        ] {
            assert_one_line_error(
                mnist_train()
                    .args(["--limit", "100", "--dp-noise-multiplier", "1"])
                    .args(args),
                2,
                &["private training data", "accountant"],
            );
        }
        // On a held-out split it is post-processing: accepted.
        let dir = tempfile::tempdir().unwrap();
        mnist_train()
            .args([
                "--limit",
                "300",
                "--epochs",
                "1",
                "--dp-noise-multiplier",
                "1",
            ])
            .args([
                "--validation-split",
                "0.2",
                "--early-stopping",
                "1",
                "--quiet",
            ])
            .arg("--output")
            .arg(dir.path().join("m.bin"))
            .assert()
            .success();
    }

    #[test]
    fn bad_privacy_options_name_the_option() {
        for (args, needle) in [
            (&["--dp-noise-multiplier", "0"][..], "--dp-noise-multiplier"),
            (&["--dp-target-epsilon", "-1"][..], "--dp-target-epsilon"),
            (
                &["--dp-noise-multiplier", "1", "--dp-clip-norm", "0"][..],
                "--dp-clip-norm",
            ),
            (
                &["--dp-noise-multiplier", "1", "--dp-delta", "1"][..],
                "--dp-delta",
            ),
            (&["--dp-delta", "1e-6"][..], "--dp-delta"),
        ] {
            assert_one_line_error(
                mnist_train().args(["--limit", "50"]).args(args),
                2,
                &[needle],
            );
        }
    }
}

#[test]
fn bench_dp_measures_every_case_also_privately() {
    let output = support::mnist_train()
        .args([
            "bench", "--dp", "--json", "--quiet", "--limit", "300", "--epochs", "1",
        ])
        .args([
            "--runs",
            "1",
            "--warmup",
            "0",
            "--batch-sizes",
            "64",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2, "{cases:?}");
    assert_eq!(cases[0]["private"], false);
    assert_eq!(cases[1]["private"], true);
    assert_eq!(cases[0]["batch_size"], cases[1]["batch_size"]);
}

#[test]
fn a_private_run_resumed_from_any_checkpoint_writes_a_byte_identical_model_with_the_same_epsilon() {
    let work = support::Workdir::new(40);
    let private = [
        "--dp-target-epsilon",
        "5",
        "--dp-clip-norm",
        "0.7",
        "--epochs",
        "2",
    ];
    let checkpoints = [
        "--checkpoint-dir",
        "ck",
        "--checkpoint-every",
        "1",
        "--keep-checkpoints",
        "20",
    ];
    let output = work
        .train()
        .args(private)
        .args(checkpoints)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let reference = std::fs::read(work.path("weights.bin")).unwrap();
    let reference_model = mnist_train::model_file::Model::load(&work.path("weights.bin")).unwrap();
    let epsilon = reference_model
        .privacy
        .expect("the model records its guarantee")
        .epsilon;
    assert!(epsilon > 4.0 && epsilon <= 5.0, "{epsilon}");
    let files = mnist_train::checkpoint::list_checkpoints(&work.path("ck")).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    // Only --resume: the noise multiplier, clipping and δ come from the checkpoint.
    work.assert_each_checkpoint_resumes_to(&files[..files.len() - 1], &reference);
}
