//! `mnist-train compare` end to end on a tiny synthetic dataset: the table on stdout, and the
//! CSV, JSON, Markdown and SVG files it writes, checked field by field.

use crate::support;

use support::{assert_one_line_error, mnist_train, stdout_of};

/// `mnist-train compare --quiet` on the dataset in `data`, writing into `out`.
fn compare_on(data: &std::path::Path, out: &std::path::Path) -> assert_cmd::Command {
    let mut compare = mnist_train();
    compare.args(["compare", "--quiet", "--data-dir"]).arg(data);
    compare.arg("--output-dir").arg(out);
    compare
}

#[test]
fn compare_prints_a_table_and_writes_history_table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), 120, 30, true);
    let out = dir.path().join("results");
    let stdout = stdout_of(
        compare_on(dir.path(), &out)
            .args(["--epochs", "2", "--limit", "100"])
            .args(["--variants", "full-batch-gd,momentum-sgd,adam"])
            .args(["--lr", "adam=0.003"]),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("variant") && lines[0].contains("test accuracy"));
    assert!(lines[0].contains("samples/s") && lines[0].contains("final train loss"));
    for (line, name) in lines[1..]
        .iter()
        .zip(["full-batch-gd", "momentum-sgd", "adam"])
    {
        assert!(line.starts_with(name), "{line}");
    }
    // 100 images: full batch takes 1 step per epoch, batch 1 takes 100, batch 32 takes 4.
    let steps: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(steps, ["2", "200", "8"]);

    let csv = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "variant,epoch,loss,accuracy,test_loss,test_accuracy,learning_rate,seconds,samples_per_second"
    );
    assert_eq!(rows.len(), 1 + 3 * 2);
    assert!(rows[5].starts_with("adam,1,") && rows[5].contains(",0.003,"));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("history.json")).unwrap()).unwrap();
    assert_eq!(json["epochs"], 2);
    assert_eq!(json["train_images"], 100);
    assert_eq!(json["test_images"], 30);
    let variants = json["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 3);
    assert_eq!(variants[0]["batch_size"], "full");
    assert_eq!(variants[1]["batch_size"], "1");
    assert_eq!(variants[1]["optimizer"]["name"], "momentum");
    assert_eq!(variants[1]["steps"], 200);
    for variant in variants {
        let history = variant["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        let accuracy = variant["test_accuracy"].as_f64().unwrap();
        // The final test accuracy is the one measured after the last epoch.
        assert_eq!(history[1]["test_accuracy"].as_f64().unwrap(), accuracy);
        assert!(variant["final_train_loss"].as_f64().unwrap() > 0.0);
        assert!(variant["diverged"].is_null());
    }

    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert_eq!(table.lines().count(), 2 + 3);
    assert!(table.starts_with("| variant |"));
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for name in [
        "full-batch-gd",
        "momentum-sgd",
        "adam",
        "Training loss",
        "Test error",
    ] {
        assert!(svg.contains(name), "{name} missing from the plot");
    }
}

#[test]
fn a_diverging_variant_is_reported_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), 64, 20, false);
    let stdout = stdout_of(
        compare_on(dir.path(), &dir.path().join("out"))
            .args(["--epochs", "3", "--limit", "64"])
            .args(["--variants", "mini-batch-gd,adam"])
            .args(["--lr", "mini-batch-gd=1e30"]),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].starts_with("mini-batch-gd") && lines[1].contains("diverged"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("adam") && lines[2].contains('%'),
        "{stdout}"
    );
}

#[test]
fn bad_compare_options_are_usage_errors() {
    for (args, option) in [
        (&["compare", "--lr", "rmsprop=0.1"][..], "--lr"),
        (&["compare", "--lr", "sgd=-1"], "--lr"),
        (&["compare", "--lr", "sgd"], "--lr"),
        (
            &["compare", "--variants", "adam", "--lr", "sgd=0.1"],
            "--lr",
        ),
        (&["compare", "--variants", "lbfgs"], "--variants"),
        (&["compare", "--epochs", "0"], "--epochs"),
        (&["compare", "--limit", "0"], "--limit"),
        (&["compare", "--momentum", "1"], "--momentum"),
        (&["compare", "--plot", "curves.pdf"], "--plot"),
    ] {
        assert_one_line_error(mnist_train().args(args), 2, &[option]);
    }
}
