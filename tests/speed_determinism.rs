//! The speed work must not change what is computed: the thread count never changes a single bit,
//! and every kernel backend agrees with the fastest one to rounding.

use std::path::Path;

use assert_cmd::Command;

use crate::support::{bits, fit_on_threads};
use mnist_train::data::{load_split, Dataset, DatasetKind, Split};
use mnist_train::kernels::{self, Backend};
use mnist_train::optim::OptimizerConfig;
use mnist_train::train::step::{StepBatch, StepEngine};
use mnist_train::train::{
    evaluate, BatchSize, Callback, Control, Progress, ProgressMode, TrainConfig, Trainer,
};

fn mnist(split: Split, limit: usize) -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let mut dataset = load_split(&dir, split, DatasetKind::Mnist).expect("data/ holds MNIST");
    dataset.truncate(limit);
    dataset
}

fn train(
    config: TrainConfig,
    dataset: &Dataset,
    threads: usize,
    backend: Option<Backend>,
) -> Vec<f32> {
    let run = || fit_on_threads(config, dataset, threads).params;
    match backend {
        Some(backend) => kernels::with_backend(backend, run),
        None => run(),
    }
}

#[test]
fn every_thread_count_gives_bit_identical_parameters() {
    let dataset = mnist(Split::Train, 1000);
    let optimizers = [
        OptimizerConfig::adam_default(),
        OptimizerConfig::Momentum { momentum: 0.9 },
    ];
    // 32: two shards; 100: uneven shards; 300: four shards; full: eight shards in chunks.
    let batch_sizes = [
        BatchSize::Examples(32),
        BatchSize::Examples(100),
        BatchSize::Examples(300),
        BatchSize::Full,
    ];
    for optimizer in optimizers {
        for batch_size in batch_sizes {
            let config = TrainConfig {
                optimizer,
                epochs: 2,
                batch_size,
                learning_rate: 0.01,
                ..TrainConfig::default()
            };
            let reference = bits(&train(config.clone(), &dataset, 1, None));
            for threads in [2, 3, 8] {
                let params = bits(&train(config.clone(), &dataset, threads, None));
                assert!(
                    params == reference,
                    "{threads} threads differ from 1 thread ({optimizer:?}, {batch_size:?})"
                );
            }
        }
    }
}

#[test]
fn one_and_two_threads_write_byte_identical_model_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for threads in ["1", "2"] {
        let output = dir.path().join(format!("model-{threads}.bin"));
        Command::cargo_bin("mnist-train")
            .expect("binary built")
            .args([
                "--limit",
                "2000",
                "--epochs",
                "2",
                "--quiet",
                "--threads",
                threads,
            ])
            .arg("--output")
            .arg(&output)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .assert()
            .success();
        files.push(std::fs::read(&output).expect("model written"));
    }
    assert!(
        files[0] == files[1],
        "model files differ between 1 and 2 threads"
    );
}

#[test]
fn every_backend_matches_the_fastest_within_1e_5() {
    let dataset = mnist(Split::Train, 256);
    let config = TrainConfig::default();
    let fastest = Backend::detect();
    let batch: Vec<u32> = (0..32).collect();
    let gradient_with = |backend: Backend| {
        kernels::with_backend(backend, || {
            let trainer = Trainer::new(config.clone());
            let mut engine = StepEngine::new(&trainer.mlp, 32, 2);
            engine.gradient(&StepBatch {
                mlp: &trainer.mlp,
                params: &trainer.params,
                dataset: &dataset,
                indices: &batch,
                next_indices: &[],
                seed: 7,
                global_step: 0,
            });
            let mut grads = vec![0.0; trainer.params.len()];
            engine.batch_gradient(&mut grads);
            grads
        })
    };
    let reference_grads = gradient_with(fastest);
    let reference_params = train(config.clone(), &dataset, 2, Some(fastest));
    assert!(reference_grads.iter().any(|&g| g.abs() > 1e-3));
    for backend in Backend::supported() {
        let grads = gradient_with(backend);
        let worst = max_difference(&grads, &reference_grads);
        assert!(worst <= 1e-5, "{backend:?} gradient differs by {worst}");
        // Eight epochs of 8 Adam steps: the small rounding differences must not grow.
        let params = train(config.clone(), &dataset, 2, Some(backend));
        let worst = max_difference(&params, &reference_params);
        assert!(
            worst <= 1e-5,
            "{backend:?} trained parameters differ by {worst}"
        );
    }
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn portable_fallback_keeps_end_to_end_accuracy() {
    let train_set = mnist(Split::Train, 12_000);
    let test_set = mnist(Split::Test, 10_000);
    let config = TrainConfig {
        epochs: 2,
        ..TrainConfig::default()
    };
    let accuracy = |backend: Backend| {
        let params = train(config.clone(), &train_set, 2, Some(backend));
        let trainer = Trainer::new(config.clone());
        kernels::with_backend(backend, || {
            evaluate(&trainer.mlp, &params, &test_set, 500).accuracy
        })
    };
    let portable = accuracy(Backend::Portable);
    let fastest = accuracy(Backend::detect());
    eprintln!("accuracy after 2 epochs on 12,000 images: portable {portable}, fastest {fastest}");
    assert!(portable >= 0.92, "portable accuracy {portable}");
    assert!(
        (portable - fastest).abs() <= 0.003,
        "portable {portable} vs fastest {fastest}"
    );
}

#[test]
fn the_kernel_can_be_forced_from_the_environment_and_bad_choices_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("portable.bin");
    // On the repository's data, 300 images, the model written to `output`.
    let train = |args: &[&str]| {
        let mut command = Command::cargo_bin("mnist-train").expect("binary built");
        command
            .args(["--limit", "300"])
            .args(args)
            .arg("--output")
            .arg(&output)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        command
    };
    train(&["--epochs", "1", "--quiet"])
        .env("MNIST_TRAIN_KERNEL", "portable")
        .assert()
        .success();
    assert!(output.exists());
    train(&["--epochs", "1"])
        .env("MNIST_TRAIN_KERNEL", "sse9")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("sse9"));
    train(&["--threads", "0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--threads"));
}

/// The parameters and optimizer state a callback sees after each step, as bit patterns.
#[derive(Default)]
struct StateRecorder {
    seen: Vec<(Vec<u32>, Vec<Vec<u32>>)>,
}

impl Callback for StateRecorder {
    fn on_step_end(&mut self, trainer: &Trainer) -> mnist_train::error::Result<Control> {
        let slots = trainer
            .optimizer
            .slots
            .iter()
            .map(|slot| bits(slot))
            .collect();
        self.seen.push((bits(&trainer.params), slots));
        Ok(Control::Continue)
    }
}

#[test]
fn a_callback_reading_the_state_after_every_step_sees_the_same_bits_on_one_and_two_threads() {
    // Two threads run the column-split step, which keeps W1 and its Adam state in its own
    // blocks between steps: a callback that does not say otherwise must still see them current.
    let dataset = mnist(Split::Train, 320);
    let config = TrainConfig {
        epochs: 2,
        batch_size: BatchSize::Examples(32),
        ..TrainConfig::default()
    };
    let record = |threads: usize| {
        let mut trainer = Trainer::new(config.clone());
        trainer.threads = threads;
        let mut recorder = StateRecorder::default();
        let mut progress = Progress::new(ProgressMode::None, config.epochs);
        trainer
            .fit(&dataset, &mut progress, &mut [&mut recorder])
            .expect("training succeeds");
        recorder.seen
    };
    let (one, two) = (record(1), record(2));
    assert_eq!(one.len(), 20, "10 steps per epoch, 2 epochs");
    assert_ne!(
        one[0].0, one[1].0,
        "the parameters change from step to step"
    );
    for (step, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(a.0 == b.0, "parameters after step {step} differ");
        assert!(a.1 == b.1, "optimizer state after step {step} differs");
    }
}
