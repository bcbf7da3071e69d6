//! `mnist-train bench` end to end: the JSON report's schema, the matrix it measures, and the files
//! it exports.

use assert_cmd::Command;
use serde_json::Value;

/// Runs `mnist-train bench` with `args` (space-separated) and then `extra`, expecting success;
/// returns the JSON report it prints on stdout and its stderr (the table).
fn bench_report(args: &str, extra: &[&std::ffi::OsStr]) -> (Value, String) {
    let output = Command::cargo_bin("mnist-train")
        .expect("binary built")
        .arg("bench")
        .args(args.split(' '))
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .assert()
        .success()
        .get_output()
        .clone();
    let report = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    (report, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bench_measures_the_matrix_and_reports_json_and_markdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("bench.json");
    let markdown_path = dir.path().join("bench.md");
    let (report, stderr) = bench_report(
        "--limit 400 --epochs 2 --warmup 0 --runs 2 --batch-sizes 32,full --threads 1,2 \
         --optimizers adam,sgd --json --export-json",
        &[
            json_path.as_os_str(),
            "--export-markdown".as_ref(),
            markdown_path.as_os_str(),
        ],
    );
    assert_eq!(report["schema"], "mnist-train-bench/1");
    assert!(report["cpu"].as_str().is_some_and(|cpu| !cpu.is_empty()));
    let kernel = report["kernel"].as_str().expect("kernel named");
    assert!(["avx512", "avx2", "neon", "portable"].contains(&kernel));
    assert!(
        stderr.contains("CPU: ") && stderr.contains("Kernel: ") && stderr.contains("FMA peak"),
        "{stderr}"
    );
    let peak = &report["fma_peak"];
    let one_thread = peak["one_thread_gflops"].as_f64().expect("1-thread peak");
    let all_threads = peak["all_threads_gflops"]
        .as_f64()
        .expect("all-threads peak");
    assert!(one_thread > 0.0 && all_threads > 0.0, "{peak}");
    assert!(peak["threads"].as_u64().is_some_and(|t| t >= 1), "{peak}");

    assert_eq!(report["network"], "784-128-10");
    assert_eq!(
        report["training_flops_per_example"]["forward"].as_f64(),
        Some(203_264.0)
    );
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2 * 2 * 2, "batch sizes × threads × optimizers");
    for case in cases {
        for field in [
            "epoch_seconds",
            "samples_per_second",
            "load_seconds",
            "eval_seconds",
            "total_seconds",
        ] {
            let stats = &case[field];
            let (min, median, max) = (
                stats["min"].as_f64().expect("min"),
                stats["median"].as_f64().expect("median"),
                stats["max"].as_f64().expect("max"),
            );
            assert!(
                0.0 < min && min <= median && median <= max,
                "{field}: {stats}"
            );
            assert!(stats["stddev"].as_f64().expect("stddev") >= 0.0);
        }
        // Two runs of two epochs each.
        assert_eq!(case["epoch_seconds"]["count"], 4);
        assert_eq!(case["runs"].as_array().map(Vec::len), Some(2));
        assert_eq!(case["train_examples"], 400);
        assert!(case["peak_rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1_000_000));
        let accuracy = case["test_accuracy"].as_f64().expect("accuracy");
        assert!((0.0..=1.0).contains(&accuracy));
        // 400 images × 409,088 flops of the 784-128-10 network's products per image.
        let gflop = case["training_gflop_per_epoch"].as_f64().expect("GFLOP");
        assert!((gflop - 400.0 * 409_088.0 / 1e9).abs() < 1e-9, "{gflop}");
        let field = |name: &str| case[name].as_f64().expect(name);
        let median = case["epoch_seconds"]["median"].as_f64().expect("median");
        let relative = |a: f64, b: f64| ((a - b) / b).abs() < 1e-9;
        assert!(relative(field("achieved_gflops"), gflop / median));
        assert!(relative(
            field("fraction_of_peak"),
            field("achieved_gflops") / field("peak_gflops")
        ));
        assert!(relative(
            field("floor_seconds"),
            gflop / field("peak_gflops")
        ));
        assert!(relative(
            field("ratio_to_floor"),
            median / field("floor_seconds")
        ));
        let expected_peak = if case["threads"] == 1 {
            one_thread
        } else {
            all_threads.min(2.0 * one_thread)
        };
        assert!(relative(field("peak_gflops"), expected_peak));
    }
    // Same batch size and optimizer, 1 vs 2 threads: the same model, so the same accuracy.
    for batch in ["32", "full"] {
        for optimizer in ["adam", "sgd"] {
            let accuracies: Vec<f64> = cases
                .iter()
                .filter(|c| c["batch_size"] == batch && c["optimizer"] == optimizer)
                .map(|c| c["test_accuracy"].as_f64().expect("accuracy"))
                .collect();
            assert_eq!(accuracies.len(), 2);
            assert_eq!(accuracies[0], accuracies[1], "{batch} {optimizer}");
        }
    }

    let exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON exported"))
            .expect("exported JSON parses");
    assert_eq!(exported["cases"].as_array().map(Vec::len), Some(8));
    let markdown = std::fs::read_to_string(&markdown_path).expect("Markdown exported");
    assert!(markdown.contains("| batch | threads | optimizer |"));
    assert!(markdown.contains("| of peak | × floor |") && markdown.contains("FMA peak"));
    assert_eq!(
        markdown.lines().filter(|l| l.starts_with("| ")).count(),
        1 + 8
    );
}

#[test]
fn bench_rejects_nonsense_options() {
    for (args, option) in [
        (vec!["bench", "--runs", "0"], "--runs"),
        (vec!["bench", "--threads", "0"], "--threads"),
        (vec!["bench", "--batch-sizes", "0"], "--batch-sizes"),
    ] {
        Command::cargo_bin("mnist-train")
            .expect("binary built")
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(option));
    }
}

#[test]
fn bench_counts_the_cnns_arithmetic_from_its_layers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let markdown_path = dir.path().join("bench.md");
    let (report, stderr) = bench_report(
        "--arch cnn --limit 64 --epochs 1 --warmup 0 --runs 1 --batch-sizes 64 --threads 1 \
         --json --export-markdown",
        &[markdown_path.as_os_str()],
    );
    assert_eq!(
        report["network"],
        "conv32x3,relu,pool2,conv64x3,relu,pool2,flatten,dropout0.5,dense10"
    );
    // Issue 12: 4.88 MFLOP forward, 9.37 backward per training image (conv1 needs no input
    // gradient), not the MLP's 409,088.
    let flops = &report["training_flops_per_example"];
    assert_eq!(flops["forward"].as_f64(), Some(4_881_920.0));
    assert_eq!(flops["backward"].as_f64(), Some(9_374_464.0));
    let case = &report["cases"][0];
    let gflop = case["training_gflop_per_epoch"].as_f64().expect("GFLOP");
    assert!((gflop - 64.0 * 14_256_384.0 / 1e9).abs() < 1e-9, "{gflop}");
    let median = case["epoch_seconds"]["median"].as_f64().expect("median");
    let achieved = case["achieved_gflops"].as_f64().expect("achieved");
    assert!(((achieved - gflop / median) / achieved).abs() < 1e-9);
    let markdown = std::fs::read_to_string(&markdown_path).expect("Markdown exported");
    assert!(
        markdown.contains("- Network: conv32x3,relu,pool2,conv64x3")
            && markdown.contains("14.256 MFLOP"),
        "{markdown}"
    );
    assert!(stderr.contains("Network: conv32x3"), "{stderr}");
}
