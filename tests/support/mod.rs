//! The one support module of the integration tests: the binary under test, tiny synthetic
//! MNIST-format datasets built in code, and helpers to run and signal the binary.
#![allow(dead_code)]

pub mod finite_difference;
pub mod protobuf;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use mnist_train::checkpoint::TrainingData;
use mnist_train::data::idx::encode_idx;
use mnist_train::data::{Dataset, DatasetKind};
use mnist_train::nn::Architecture;
use mnist_train::rng::Rng;
use mnist_train::run::RunSpec;
use mnist_train::train::{BatchSize, EpochRecord, Progress, ProgressMode, TrainConfig, Trainer};

/// Path of the binary under test, for tests that spawn it as a child process.
pub const BINARY: &str = env!("CARGO_BIN_EXE_mnist-train");

/// The binary under test, for end-to-end assertions.
pub fn mnist_train() -> assert_cmd::Command {
    assert_cmd::Command::new(BINARY)
}

/// Trains quietly with `args` into the model file `model` (a test's fixture, expected to work).
pub fn train_model(model: &Path, args: &[&str]) {
    mnist_train()
        .args(args)
        .arg("--quiet")
        .arg("--output")
        .arg(model)
        .assert()
        .success();
}

/// Trains with `args` into the model file `model`, expecting success; returns what it printed.
pub fn train_printing(model: &Path, args: &[&str]) -> Output {
    succeeded(mnist_train().args(args).arg("--output").arg(model))
}

/// Every stdout line parsed as JSON (`--json` output is JSON Lines).
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(stdout.to_vec())
        .expect("stdout is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect()
}

/// Runs `command`, expecting success; returns what it printed.
pub fn succeeded(command: &mut assert_cmd::Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    output
}

/// Runs `command`, expecting success; returns its stdout.
pub fn stdout_of(command: &mut assert_cmd::Command) -> String {
    String::from_utf8(succeeded(command).stdout).unwrap()
}

/// Runs `command`, expecting exit `code`; returns its stderr.
pub fn stderr_of(command: &mut assert_cmd::Command, code: i32) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    String::from_utf8(output.stderr).unwrap()
}

/// Resumes the run of `checkpoint` alone (copied into its own folder under `work`, so the resumed
/// run checkpoints there) with nothing but `--resume`, writing the model to `output`.
pub fn resume_copy_of(work: &Workdir, checkpoint: &Path, output: &str) -> std::process::Output {
    let name = checkpoint.file_name().unwrap();
    let single = work.path(&format!("single-{}", name.to_string_lossy()));
    std::fs::create_dir(&single).unwrap();
    std::fs::copy(checkpoint, single.join(name)).unwrap();
    Command::new(BINARY)
        .current_dir(work.temp.path())
        .args(["train", "--resume"])
        .arg(&single)
        .args(["-o", output])
        .output()
        .unwrap()
}

/// Runs the binary, expecting failure with `code` and a single stderr line containing every `needle`.
pub fn assert_one_line_error(command: &mut assert_cmd::Command, code: i32, needles: &[&str]) {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An IDX file of unsigned bytes: magic 00 00 08 NDIMS, big-endian dimensions, data.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for dim in dims {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes a learnable synthetic dataset (class k lights up the k-th horizontal band of the image)
/// with `train_count` training and `test_count` test images into `dir`, gzip-compressed or raw.
pub fn write_synthetic_dataset(
    dir: &Path,
    train_count: usize,
    test_count: usize,
    compressed: bool,
) {
    for (stem, count) in [("train", train_count), ("t10k", test_count)] {
        let mut images = Vec::with_capacity(count * 784);
        let mut labels = Vec::with_capacity(count);
        for index in 0..count {
            let label = (index * 7 + 3) % 10;
            labels.push(label as u8);
            for row in 0..28 {
                for col in 0..28 {
                    let band = row * 10 / 28;
                    let noise = ((index * 31 + row * 17 + col * 13) % 40) as u8;
                    images.push(if band == label { 200 + noise } else { noise });
                }
            }
        }
        let image_bytes = encode_idx(&[count, 28, 28], &images);
        let label_bytes = encode_idx(&[count], &labels);
        write_idx(
            dir,
            &format!("{stem}-images-idx3-ubyte"),
            &image_bytes,
            compressed,
        );
        write_idx(
            dir,
            &format!("{stem}-labels-idx1-ubyte"),
            &label_bytes,
            compressed,
        );
    }
}

pub fn write_idx(dir: &Path, name: &str, bytes: &[u8], compressed: bool) {
    if compressed {
        std::fs::write(dir.join(format!("{name}.gz")), gzip(bytes)).expect("write fixture");
    } else {
        std::fs::write(dir.join(name), bytes).expect("write fixture");
    }
}

/// `count` random 28×28 images with random labels 0–9.
pub fn random_examples(count: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::from_u64(seed);
    let images = (0..count * 784)
        .map(|_| (rng.next_u64_fast() >> 56) as u8)
        .collect();
    let labels = (0..count)
        .map(|_| (rng.next_u64_fast() % 10) as u8)
        .collect();
    (images, labels)
}

pub fn random_dataset(count: usize, seed: u64) -> Dataset {
    let (images, labels) = random_examples(count, seed);
    Dataset {
        images,
        labels,
        rows: 28,
        cols: 28,
        class_names: (0..10).map(|c| c.to_string()).collect(),
    }
}

/// Writes the four MNIST files (train gzip-compressed, test raw) into `dir`.
pub fn write_dataset(dir: &Path, train: usize, test: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (images, labels) = random_examples(train, seed);
    let n = train as u32;
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gzip(&idx_bytes(&[n, 28, 28], &images)),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx_bytes(&[n], &labels)),
    )
    .unwrap();
    let (images, labels) = random_examples(test, seed + 1);
    let n = test as u32;
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(&[n, 28, 28], &images),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(&[n], &labels)).unwrap();
}

/// A temporary folder with a small synthetic dataset in `data/`.
pub struct Workdir {
    pub temp: tempfile::TempDir,
}

impl Workdir {
    /// Resumes each of `checkpoints` alone (a copy in its own folder, so the resumed run
    /// checkpoints there) with nothing but `--resume`, and checks that the model it writes is
    /// byte-identical to `reference`.
    pub fn assert_each_checkpoint_resumes_to(&self, checkpoints: &[PathBuf], reference: &[u8]) {
        for file in checkpoints {
            let output = resume_copy_of(self, file, "resumed.bin");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                std::fs::read(self.path("resumed.bin")).unwrap() == reference,
                "resuming {} gave a different model",
                file.display()
            );
        }
    }

    pub fn new(train: usize) -> Workdir {
        let temp = tempfile::tempdir().unwrap();
        write_dataset(&temp.path().join("data"), train, 64, 7);
        Workdir { temp }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    /// [`Workdir::train`] for practically ever (a million epochs), for tests that stop the run.
    pub fn endless_train(&self) -> Command {
        let mut command = self.train();
        command.args(["--epochs", "1000000"]);
        command
    }

    /// The binary, run in this folder on its synthetic data with a small network.
    pub fn train(&self) -> Command {
        let mut command = Command::new(BINARY);
        command.current_dir(self.temp.path()).args([
            "train",
            "--data-dir",
            "data",
            "--hidden",
            "16",
            "--batch-size",
            "16",
            "--progress",
            "plain",
        ]);
        command
    }
}

/// Starts `command` (e.g. [`Workdir::train`]) and returns once a line of its stderr contains
/// `marker`, with a thread that keeps draining stderr (so the child never blocks on a full pipe)
/// and returns all of it.
pub fn spawn_until(command: &mut Command, marker: &'static str) -> (Child, JoinHandle<String>) {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (seen, wait_for_marker) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains(marker) {
                let _ = seen.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if wait_for_marker.recv().is_err() {
        let status = child.wait().unwrap();
        panic!(
            "the run ended ({status}) before printing {marker:?}:\n{}",
            reader.join().unwrap()
        );
    }
    (child, reader)
}

pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn run_fails(command: &mut Command, code: i32) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(code), "{command:?}: {stderr}");
    stderr
}

/// Sends `signal` (e.g. "INT", "KILL") to a process.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// History records without the wall-time fields (the only fields a resumed run may change).
pub fn timeless(history: &[EpochRecord]) -> Vec<EpochRecord> {
    history
        .iter()
        .map(|record| EpochRecord {
            seconds: 0.0,
            samples_per_second: 0.0,
            ..record.clone()
        })
        .collect()
}

/// A run and its training data for checkpoints built in tests (no validation, no checkpoint
/// folder).
pub fn test_run(train_examples: usize) -> (RunSpec, TrainingData) {
    let spec = RunSpec {
        data_dir: "data".into(),
        output: Some("weights.bin".into()),
        ..RunSpec::new(TrainConfig::default(), DatasetKind::Mnist)
    };
    let data = TrainingData {
        examples: train_examples,
        fingerprint: "crc32:01234567".to_string(),
    };
    (spec, data)
}

/// A small run for tests that compare runs bit for bit: `epochs` epochs of `architecture` at
/// `batch_size`, learning rate 0.01, seed 11, the defaults otherwise.
pub fn small_run(architecture: Architecture, batch_size: BatchSize, epochs: usize) -> TrainConfig {
    TrainConfig {
        architecture,
        learning_rate: 0.01,
        epochs,
        batch_size,
        seed: 11,
        ..TrainConfig::default()
    }
}

/// A trainer that has run `config` on `dataset` on `threads` threads, without progress output.
pub fn fit_on_threads(config: TrainConfig, dataset: &Dataset, threads: usize) -> Trainer {
    let mut trainer = Trainer::new(config);
    trainer.threads = threads;
    let mut progress = Progress::new(ProgressMode::None, trainer.config.epochs);
    trainer
        .fit(dataset, &mut progress, &mut [])
        .expect("training succeeds");
    trainer
}

/// The bit patterns of `values`, for comparisons that must be exact.
pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Fails unless `resumed` ended where `reference` did: the same parameters and optimizer state
/// bit for bit, and the same history but for wall time.
pub fn assert_same_training_state(resumed: &Trainer, reference: &Trainer, context: &str) {
    assert_eq!(bits(&resumed.params), bits(&reference.params), "{context}");
    assert_eq!(
        resumed.optimizer.steps, reference.optimizer.steps,
        "{context}"
    );
    for (a, b) in resumed
        .optimizer
        .slots
        .iter()
        .zip(&reference.optimizer.slots)
    {
        assert_eq!(bits(a), bits(b), "{context}");
    }
    assert_eq!(
        timeless(&resumed.history),
        timeless(&reference.history),
        "{context}"
    );
}
