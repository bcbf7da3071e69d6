//! `train`'s optimizer, schedule, validation and early-stopping options through the binary:
//! invalid values and combinations are one-line usage errors naming the option, and a run using
//! all of them reports what it did.

use crate::support;

use assert_cmd::Command;
use support::{assert_one_line_error, mnist_train};

/// `mnist-train train` on a tiny synthetic dataset in a fresh folder.
fn train_on_synthetic(train_count: usize) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), train_count, 20, true);
    let mut command = mnist_train();
    command
        .arg("train")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--output")
        .arg(dir.path().join("model.bin"));
    (dir, command)
}

#[test]
fn options_that_do_not_belong_to_the_optimizer_are_refused() {
    for (args, option, words) in [
        (&["--momentum", "0.9"][..], "--momentum", "not adam"),
        (&["--optimizer", "sgd", "--rho", "0.9"], "--rho", "rmsprop"),
        (&["--optimizer", "sgd", "--beta1", "0.8"], "--beta1", "adam"),
        (
            &["--optimizer", "momentum", "--weight-decay", "0.01"],
            "--weight-decay",
            "adam",
        ),
        (
            &["--optimizer", "nesterov", "--epsilon", "1e-8"],
            "--epsilon",
            "adam or rmsprop",
        ),
        (
            &["--lr-schedule", "step", "--lr-min", "0.0001"],
            "--lr-min",
            "cosine",
        ),
        (&["--lr-decay", "0.5"], "--lr-decay", "step or exponential"),
    ] {
        assert_one_line_error(mnist_train().args(args), 2, &[option, words]);
    }
}

#[test]
fn out_of_range_values_are_refused() {
    for (args, option) in [
        (
            &["--optimizer", "momentum", "--momentum", "1.5"][..],
            "--momentum",
        ),
        (
            &["--optimizer", "momentum", "--momentum", "-0.1"],
            "--momentum",
        ),
        (
            &["--optimizer", "sgd", "--learning-rate", "0"],
            "--learning-rate",
        ),
        (&["--beta2", "1"], "--beta2"),
        (&["--epsilon", "-1e-7"], "--epsilon"),
        (&["--weight-decay", "-0.01"], "--weight-decay"),
        (&["--optimizer", "rmsprop", "--rho", "1.2"], "--rho"),
        (
            &["--lr-schedule", "step", "--lr-decay", "1.5"],
            "--lr-decay",
        ),
        (
            &["--lr-schedule", "step", "--lr-step-size", "0"],
            "--lr-step-size",
        ),
        (&["--lr-schedule", "cosine", "--lr-min", "0.5"], "--lr-min"),
        (&["--warmup-epochs", "-1"], "--warmup-epochs"),
        (&["--validation-split", "1.5"], "--validation-split"),
        (&["--validation-split", "0"], "--validation-split"),
        (&["--validation-split", "-0.2"], "--validation-split"),
        (
            &[
                "--validation-split",
                "0.1",
                "--early-stopping",
                "2",
                "--min-delta",
                "-1",
            ],
            "--min-delta",
        ),
        (&["--optimizer", "adagrad"], "--optimizer"),
        (&["--lr-schedule", "linear"], "--lr-schedule"),
        (&["--warmup-epochs", "1", "--warmup-steps", "5"], "--warmup"),
    ] {
        assert_one_line_error(mnist_train().args(args), 2, &[option]);
    }
}

#[test]
fn monitoring_val_loss_needs_a_validation_split() {
    assert_one_line_error(
        mnist_train().args(["--early-stopping", "3"]),
        2,
        &["--early-stopping", "val_loss", "--validation-split"],
    );
    assert_one_line_error(
        mnist_train().arg("--restore-best"),
        2,
        &["--restore-best", "--validation-split"],
    );
    assert_one_line_error(
        mnist_train().args(["--min-delta", "0.01"]),
        2,
        &["--min-delta", "no effect"],
    );
}

#[test]
fn a_validation_split_that_leaves_nothing_to_train_on_is_refused() {
    let (_dir, mut command) = train_on_synthetic(30);
    assert_one_line_error(
        command.args([
            "--quiet",
            "--batch-size",
            "full",
            "--limit",
            "3",
            "--validation-split",
            "0.9",
        ]),
        2,
        &["--validation-split", "nothing to train on"],
    );
    let (_dir, mut command) = train_on_synthetic(30);
    assert_one_line_error(
        command.args(["--quiet", "--limit", "4", "--validation-split", "0.1"]),
        2,
        &["--validation-split", "no validation images"],
    );
}

#[test]
fn a_run_with_validation_schedule_and_early_stopping_reports_all_of_it() {
    let (_dir, mut command) = train_on_synthetic(200);
    let output = command
        .args([
            "--epochs",
            "4",
            "--optimizer",
            "nesterov",
            "--learning-rate",
            "0.05",
        ])
        .args([
            "--validation-split",
            "0.25",
            "--early-stopping",
            "2",
            "--restore-best",
        ])
        .args([
            "--lr-schedule",
            "cosine",
            "--warmup-steps",
            "2",
            "--seed",
            "9",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("Optimizer: nesterov (momentum 0.9), learning rate 0.05, cosine"));
    // 200 images, 20 per class: 5 per class held out.
    assert!(
        stderr.contains("held out 50 of 200 training images")
            && stderr.contains("seed 9; per class 5 5 5 5 5 5 5 5 5 5; training on 150"),
        "{stderr}"
    );
    let epoch_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Epoch ")).collect();
    assert!(
        !epoch_lines.is_empty() && epoch_lines.len() <= 4,
        "{stderr}"
    );
    for line in &epoch_lines {
        assert!(
            line.contains(" - val_loss: ") && line.contains(" - val_accuracy: "),
            "{line}"
        );
    }
    // Cosine from 0.05 to 0 over the run: the reported rate falls epoch by epoch.
    let rates: Vec<f64> = epoch_lines
        .iter()
        .map(|line| {
            line.rsplit("learning_rate: ")
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rates.windows(2).all(|pair| pair[1] < pair[0]), "{rates:?}");
    assert!(stderr.contains("Restored the weights of epoch"), "{stderr}");
}

#[test]
fn sgd_family_defaults_to_keras_learning_rate() {
    let (_dir, mut command) = train_on_synthetic(64);
    let output = command
        .args(["--epochs", "1", "--optimizer", "momentum", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("momentum (momentum 0.9), learning rate 0.01,"),
        "{stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!((lines[0]["learning_rate"].as_f64().unwrap() - 0.01).abs() < 1e-9);
    let config = &lines.last().unwrap()["config"];
    assert_eq!(config["optimizer_settings"]["name"], "momentum");
    assert!((config["optimizer_settings"]["momentum"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(config["schedule"]["kind"]["name"], "constant");
    assert!(config["validation_split"].is_null() && config["early_stopping"].is_null());
    assert_eq!(config["restore_best"], false);
}
