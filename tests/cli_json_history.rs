//! `train --json` and `train --history`: the JSON lines parsed field by field, and the CSV history
//! keeping one header across two runs into the same file (what a resumed run does).

use crate::support::{json_lines, mnist_train, succeeded, train_printing};

#[test]
fn train_json_prints_one_line_per_epoch_and_a_summary_with_text_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.bin");
    let output = train_printing(
        &model,
        &["--limit", "600", "--epochs", "2", "--seed", "5", "--json"],
    );
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 3, "2 epochs + summary: {lines:?}");
    for (index, line) in lines[..2].iter().enumerate() {
        assert_eq!(line["type"], "epoch");
        assert_eq!(line["epoch"], index + 1);
        assert_eq!(line["epochs"], 2);
        let loss = line["loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        let accuracy = line["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy));
        assert!(line["val_loss"].is_null() && line["val_accuracy"].is_null());
        assert!((line["learning_rate"].as_f64().unwrap() - 0.001).abs() < 1e-9);
        assert!(line["seconds"].as_f64().unwrap() > 0.0);
        assert!(line["samples_per_second"].as_f64().unwrap() > 0.0);
    }
    assert!(lines[1]["loss"].as_f64() < lines[0]["loss"].as_f64());
    let summary = &lines[2];
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["test_count"], 10000);
    let accuracy = summary["test_accuracy"].as_f64().unwrap();
    assert_eq!(
        summary["test_correct"].as_u64().unwrap(),
        (accuracy * 10000.0).round() as u64
    );
    assert!(accuracy > 0.5, "600 images, 2 epochs: {accuracy}");
    assert!(summary["test_loss"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["epochs_completed"], 2);
    assert_eq!(summary["model"], model.display().to_string());
    assert_eq!(summary["dataset"], "mnist");
    assert_eq!(summary["class_names"].as_array().unwrap().len(), 10);
    let config = &summary["config"];
    assert_eq!(config["epochs"], 2);
    assert_eq!(config["batch_size"], 32);
    assert_eq!(config["seed"], 5);
    assert_eq!(config["optimizer"], "adam");
    assert_eq!(config["hidden"], serde_json::json!([128]));
    assert_eq!(config["limit"], 600);
    // The human-readable lines went to stderr.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("Epoch 2/2"), "{stderr}");
    assert!(stderr.contains("Test loss:"), "{stderr}");
}

#[test]
fn a_fresh_run_replaces_an_old_history_under_one_header() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.csv");
    for epochs in ["2", "1"] {
        mnist_train()
            .args(["--limit", "300", "--quiet", "--epochs", epochs])
            .arg("--output")
            .arg(dir.path().join("model.bin"))
            .arg("--history")
            .arg(&history)
            .assert()
            .success();
    }
    let text = std::fs::read_to_string(&history).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,samples_per_second"
    );
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(text.matches("epoch,loss").count(), 1);
    let epochs: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["1"], "the second (1-epoch) run replaced the first");
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 8, "{line}");
        assert!(fields[1].parse::<f64>().unwrap() > 0.0);
        assert_eq!(fields[3], "", "no validation split, no val_loss");
    }
}

#[test]
fn history_refuses_a_file_that_is_not_a_history() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("results.csv");
    std::fs::write(&history, "something else\n").unwrap();
    let assert = mnist_train()
        .args(["--limit", "100", "--quiet", "--epochs", "1"])
        .arg("--output")
        .arg(dir.path().join("model.bin"))
        .arg("--history")
        .arg(&history)
        .assert()
        .failure()
        .code(2);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("--history") && stderr.contains("results.csv"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&history).unwrap(),
        "something else\n"
    );
    assert!(!dir.path().join("model.bin").exists());
}

#[test]
fn resumed_run_continues_the_history_without_a_second_header() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.csv");
    let checkpoints = dir.path().join("checkpoints");
    let model = dir.path().join("model.bin");
    // Two epochs writing checkpoints, then two more resumed from them, into one history.
    for (epochs, folder_option) in [("2", "--checkpoint-dir"), ("4", "--resume")] {
        mnist_train()
            .args(["--limit", "400", "--epochs", epochs, "--quiet"])
            .arg(folder_option)
            .arg(&checkpoints)
            .arg("--history")
            .arg(&history)
            .arg("--output")
            .arg(&model)
            .assert()
            .success();
    }
    let text = std::fs::read_to_string(&history).unwrap();
    assert_eq!(text.matches("epoch,loss").count(), 1, "{text}");
    // The header, then epochs 1 to 4, each once and in order.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("epoch,loss"), "{text}");
    for (epoch, line) in (1..).zip(&lines[1..]) {
        assert!(line.starts_with(&format!("{epoch},")), "{text}");
    }
}

#[test]
fn bench_json_is_one_typed_line_like_every_json_output() {
    let args =
        "bench --limit 200 --epochs 1 --warmup 0 --runs 1 --batch-sizes 32 --threads 1 --json";
    let output = succeeded(mnist_train().args(args.split(' ')));
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 1, "one line on stdout");
    assert_eq!(lines[0]["type"], "bench");
    assert_eq!(lines[0]["cases"].as_array().unwrap().len(), 1);
    assert!(
        !String::from_utf8(output.stderr).unwrap().is_empty(),
        "the table goes to stderr"
    );
}
