//! The command line end to end, through the real binary.

use crate::support;

use support::{assert_one_line_error, mnist_train, stdout_of, train_printing};

use std::path::Path;

use predicates::prelude::*;

/// Extracts the number after `label` in `text`.
fn number_after(text: &str, label: &str) -> f64 {
    let start = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {text}"))
        + label.len();
    text[start..]
        .split_whitespace()
        .next()
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {text}"))
}

#[test]
fn train_on_real_mnist_subset_then_eval_reports_the_same_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.bin");
    let args = ["--epochs", "2", "--limit", "3000", "--progress", "plain"];
    let train_output = String::from_utf8(train_printing(&model, &args).stdout).unwrap();
    let train_accuracy = number_after(&train_output, "test accuracy:");
    assert!(
        train_accuracy > 0.85,
        "accuracy {train_accuracy} after 2 epochs on 3000 images"
    );

    let eval_output = stdout_of(mnist_train().args(["eval", "--model"]).arg(&model));
    assert_eq!(number_after(&eval_output, "test accuracy:"), train_accuracy);
    assert_eq!(
        number_after(&eval_output, "Test loss:"),
        number_after(&train_output, "Test loss:")
    );
    // The confusion matrix has a labelled row per class whose counts add up to the test set.
    let rows: Vec<&str> = eval_output
        .lines()
        .filter(|line| {
            line.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
                && line.contains('|')
        })
        .collect();
    assert_eq!(rows.len(), 10, "{eval_output}");
    let total: u64 = rows
        .iter()
        .flat_map(|row| row.split('|').nth(1).unwrap().split_whitespace())
        .map(|count| count.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 10_000);
}

#[test]
fn the_same_seed_gives_byte_identical_models_and_train_is_the_default_command() {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), 300, 50, true);
    let run = |args: &[&str], name: &str| -> Vec<u8> {
        let path = dir.path().join(name);
        mnist_train()
            .args(args)
            .args(["--epochs", "2", "--batch-size", "16", "-q", "--data-dir"])
            .arg(dir.path())
            .arg("--output")
            .arg(&path)
            .assert()
            .success();
        std::fs::read(&path).unwrap()
    };
    let first = run(&["--seed", "7"], "a.bin");
    let second = run(&["train", "--seed", "7"], "b.bin");
    let other_seed = run(&["--seed", "8"], "c.bin");
    assert_eq!(first, second);
    assert_ne!(first, other_seed);
}

#[test]
fn raw_idx_files_train_like_gzip_ones() {
    let gzip_dir = tempfile::tempdir().unwrap();
    let raw_dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(gzip_dir.path(), 200, 40, true);
    support::write_synthetic_dataset(raw_dir.path(), 200, 40, false);
    let train = |data: &Path| {
        let output = data.join("model.bin");
        let stdout = stdout_of(
            mnist_train()
                .args(["--epochs", "3", "--batch-size", "8", "-q", "--data-dir"])
                .arg(data)
                .arg("--output")
                .arg(&output),
        );
        (
            std::fs::read(&output).unwrap(),
            number_after(&stdout, "test accuracy:"),
        )
    };
    let (gzip_model, gzip_accuracy) = train(gzip_dir.path());
    let (raw_model, _) = train(raw_dir.path());
    assert_eq!(gzip_model, raw_model);
    assert!(
        gzip_accuracy >= 0.9,
        "synthetic bands are easy: {gzip_accuracy}"
    );
}

#[test]
fn summary_lines_without_control_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), 64, 16, true);
    let output = mnist_train()
        .args(["--epochs", "2", "--data-dir"])
        .arg(dir.path())
        .arg("--output")
        .arg(dir.path().join("m.bin"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("Epoch 1/2 - "), "{stderr}");
    assert!(stderr.contains("Epoch 2/2 - "), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
}

#[test]
fn help_shows_every_default_and_version_prints() {
    let help = stdout_of(mnist_train().args(["train", "--help"]));
    for expected in [
        "--epochs",
        "[default: 5]",
        "--batch-size",
        "[default: 32]",
        "--learning-rate",
        "[default: 0.001 for adam",
        "--seed",
        "--data-dir",
        "--output",
        "[default: weights.bin]",
        "--limit",
    ] {
        assert!(help.contains(expected), "{expected} missing from\n{help}");
    }
    assert!(stdout_of(mnist_train().arg("--help")).contains("eval"));
    assert!(stdout_of(mnist_train().args(["eval", "--help"])).contains("--model"));
    assert!(stdout_of(mnist_train().arg("--version")).starts_with("mnist-train "));
}

#[test]
fn nonsense_option_values_are_usage_errors_naming_the_option() {
    assert_one_line_error(
        mnist_train().args(["--batch-size", "0"]),
        2,
        &["--batch-size", "at least 1"],
    );
    assert_one_line_error(mnist_train().args(["--epochs", "0"]), 2, &["--epochs"]);
    assert_one_line_error(
        mnist_train().args(["--learning-rate", "-1"]),
        2,
        &["--learning-rate"],
    );
    assert_one_line_error(mnist_train().args(["--dropout", "1.5"]), 2, &["--dropout"]);
    assert_one_line_error(mnist_train().args(["--hidden", "0"]), 2, &["--hidden"]);
    assert_one_line_error(mnist_train().args(["--epochs", "many"]), 2, &["--epochs"]);
}

#[test]
fn missing_and_malformed_data_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // Run in the temporary folder, so the default --output (weights.bin) is not shared with
    // concurrent tests: a run locks its model file.
    let mnist_train = || {
        let mut command = mnist_train();
        command.current_dir(dir.path());
        command
    };
    let missing = dir.path().join("nowhere");
    assert_one_line_error(
        mnist_train().arg("--data-dir").arg(&missing),
        1,
        &["nowhere", "does not exist"],
    );

    support::write_synthetic_dataset(dir.path(), 20, 10, true);
    // Labels out of range.
    let bad_labels = mnist_train::data::idx::encode_idx(&[20], &[12; 20]);
    support::write_idx(dir.path(), "train-labels-idx1-ubyte", &bad_labels, true);
    assert_one_line_error(
        mnist_train().arg("--data-dir").arg(dir.path()),
        1,
        &["train-labels-idx1-ubyte.gz", "label 12"],
    );
    // A corrupt gzip stream.
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte.gz"),
        [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    )
    .unwrap();
    assert_one_line_error(
        mnist_train().arg("--data-dir").arg(dir.path()),
        1,
        &["train-labels-idx1-ubyte.gz"],
    );
}

#[test]
fn corrupt_model_files_are_rejected_by_eval() {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), 40, 10, true);
    let model = dir.path().join("model.bin");
    mnist_train()
        .args(["--epochs", "1", "-q", "--data-dir"])
        .arg(dir.path())
        .arg("--output")
        .arg(&model)
        .assert()
        .success();
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&model, &bytes).unwrap();
    assert_one_line_error(
        mnist_train()
            .args(["eval", "--data-dir"])
            .arg(dir.path())
            .arg("--model")
            .arg(&model),
        1,
        &["model.bin", "checksum"],
    );
    std::fs::write(&model, b"hello").unwrap();
    assert_one_line_error(
        mnist_train().args(["eval", "--model"]).arg(&model),
        1,
        &["model.bin", "not an mnist-train model"],
    );
    mnist_train()
        .args(["eval", "--model"])
        .arg(dir.path().join("absent.bin"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("absent.bin"));
}
