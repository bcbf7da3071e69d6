//! Options that size memory (`--hidden`, `--batch-size`, `--test-batch-size`) are checked against
//! the memory available before anything is allocated: an oversized run is one line naming the
//! option, the estimate and what is available, exit 2; never an allocation abort.

use crate::support::{self, assert_one_line_error, mnist_train, stderr_of};

/// The number before `unit` after "would need about " in `message`, converted to GiB.
fn estimate_gib(message: &str) -> f64 {
    let rest = message
        .split("would need about ")
        .nth(1)
        .unwrap_or_else(|| panic!("no estimate in {message}"));
    let mut words = rest.split_whitespace();
    let value: f64 = words.next().and_then(|v| v.parse().ok()).unwrap();
    let scale = match words.next() {
        Some("MiB") => 1.0 / 1024.0,
        Some("GiB") => 1.0,
        Some("TiB") => 1024.0,
        other => panic!("unexpected unit {other:?} in {message}"),
    };
    value * scale
}

/// Training `--hidden hidden` on 100 images from a data folder that does not exist, in `dir`: a
/// check that refuses the run must come before reading data.
fn train_without_data(dir: &tempfile::TempDir, hidden: &str) -> assert_cmd::Command {
    let mut command = mnist_train();
    command
        .current_dir(dir.path())
        .args(["--hidden", hidden])
        .args(["--limit", "100", "--data-dir", "missing"]);
    command
}

#[test]
fn six_layers_of_65536_are_refused_before_reading_data_without_aborting() {
    // The issue's command: it used to die by SIGABRT after "memory allocation of 86109061160
    // bytes failed". The data folder does not exist: the check comes before reading data.
    let dir = tempfile::tempdir().unwrap();
    let mut command = train_without_data(&dir, "65536,65536,65536,65536,65536,65536");
    command.env_remove("MNIST_TRAIN_MAX_MEMORY");
    assert_one_line_error(
        &mut command,
        2,
        &["--hidden", "would need about", "TiB", "available"],
    );
    let stderr = stderr_of(&mut command, 2);
    assert!(!stderr.contains("memory allocation"), "{stderr}");
    assert!(!stderr.contains("data directory"), "{stderr}");
}

#[test]
fn two_wide_layers_are_refused_with_an_estimate_matching_a_hand_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = train_without_data(&dir, "65536,65536");
    command.args(["--max-memory", "16G"]);
    assert_one_line_error(
        &mut command,
        2,
        &[
            "--hidden",
            "more than the 16.0 GiB allowed by the memory limit",
        ],
    );
    // 784·65536 + 65536 + 65536·65536 + 65536 + 65536·10 + 10 parameters of 4 bytes; Adam keeps
    // two more copies, a batch of 32 has two shard gradients, and writing a checkpoint holds
    // three copies of parameters and both moments: 14 parameter-sized buffers in all (the
    // step workspaces of 32 rows add under 0.1 GiB).
    let parameters = 784.0 * 65536.0 + 65536.0 + 65536.0 * 65536.0 + 65536.0 + 655_360.0 + 10.0;
    let hand_count_gib = 14.0 * parameters * 4.0 / (1u64 << 30) as f64;
    let reported = estimate_gib(&stderr_of(&mut command, 2));
    assert!(
        (reported - hand_count_gib).abs() < 0.2,
        "{reported} GiB reported, {hand_count_gib} GiB counted"
    );
}

/// A synthetic dataset with `train` training and `test` test images in a temporary folder.
fn synthetic(train: usize, test: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), train, test, true);
    dir
}

/// One quiet epoch of SGD with `hidden` hidden units on the dataset in `data`, within
/// `max_memory`, writing the model there.
fn train_on(data: &tempfile::TempDir, hidden: &str, max_memory: &str) -> assert_cmd::Command {
    let mut command = mnist_train();
    command
        .args(["--hidden", hidden, "--optimizer", "sgd", "--epochs", "1"])
        .args(["--max-memory", max_memory, "--quiet", "--output"])
        .arg(data.path().join("model.bin"))
        .arg("--data-dir")
        .arg(data.path());
    command
}

#[test]
fn a_batch_whose_step_workspaces_do_not_fit_is_refused_naming_batch_size() {
    let data = synthetic(2100, 100);
    let run = |batch: &str| {
        let mut command = train_on(&data, "2048", "100M");
        command.args(["--batch-size", batch, "--test-batch-size", "10"]);
        command
    };
    // A full batch of 2100 rows: 8 shards, each working on up to 256 rows of
    // 784 + 4 × 2048 + 10 floats (about 72 MiB in all) beside its own gradient buffer.
    assert_one_line_error(
        &mut run("full"),
        2,
        &[
            "--batch-size",
            "step workspaces",
            "more than the 100.0 MiB allowed",
        ],
    );
    support::succeeded(&mut run("32"));
}

#[test]
fn an_evaluation_batch_that_does_not_fit_is_refused_naming_test_batch_size() {
    let data = synthetic(300, 2000);
    let run = |test_batch: &str| {
        let mut command = train_on(&data, "4096", "150M");
        command.args(["--limit", "64", "--test-batch-size", test_batch]);
        command
    };
    // 2000 test rows of 784 + 4 × 4096 + 10 floats: about 130 MiB on top of the model.
    assert_one_line_error(
        &mut run("2000"),
        2,
        &["--test-batch-size", "evaluation buffers", "150.0 MiB"],
    );
    support::succeeded(&mut run("100"));

    // `eval` checks the same before evaluating the saved model.
    let mut eval = mnist_train();
    eval.arg("eval")
        .arg("--model")
        .arg(data.path().join("model.bin"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["--test-batch-size", "2000"])
        .env("MNIST_TRAIN_MAX_MEMORY", "100M");
    assert_one_line_error(&mut eval, 2, &["--test-batch-size", "100.0 MiB"]);
}
