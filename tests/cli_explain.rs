//! `predict --explain` and `eval --explain-check` end to end on a small model trained on the
//! synthetic band dataset: JSON fields, pictures, the terminal drawing, and bad options.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use mnist_train::explain::Method;
use serde_json::Value;

use crate::support::{self, mnist_train};

/// A folder with the synthetic dataset (class k lights band k) and a model trained on it.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        support::write_synthetic_dataset(&dir, 300, 40, true);
        let model = dir.join("model.bin");
        mnist_train()
            .args([
                "--epochs",
                "3",
                "--hidden",
                "32",
                "--batch-size",
                "16",
                "-q",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--output")
            .arg(&model)
            .assert()
            .success();
        (dir, model)
    })
}

/// `mnist-train <subcommand> --model M --data-dir D <args>`.
fn on_fixture(subcommand: &str, args: &[&str]) -> Command {
    let (dir, model) = fixture();
    let mut command = mnist_train();
    command
        .arg(subcommand)
        .arg("--model")
        .arg(model)
        .arg("--data-dir")
        .arg(dir)
        .args(args);
    command
}

fn json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    serde_json::from_str(lines[0]).expect("stdout is JSON")
}

fn explanation(args: &[&str]) -> Value {
    let output = on_fixture("predict", args).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    json_line(&output.stdout)["explanation"].clone()
}

#[test]
fn predict_explain_json_has_the_map_method_parameters_target_and_completeness() {
    let explanation = explanation(&["--index", "0", "--explain", "--json"]);
    assert_eq!(explanation["method"], "integrated-gradients");
    assert_eq!(explanation["parameters"]["steps"], 50);
    assert_eq!(explanation["parameters"]["quadrature"], "gauss-legendre");
    assert_eq!(explanation["parameters"]["baseline"], 0.0);
    assert_eq!(explanation["score"], "logit");
    assert_eq!(explanation["target_is_prediction"], true);
    // Test image 0 of the synthetic set is class 3 ((0·7 + 3) mod 10), which the model learnt.
    assert_eq!(explanation["target_index"], 3);
    assert_eq!(explanation["target"], "3");
    let rows = explanation["attributions"].as_array().unwrap();
    assert_eq!(rows.len(), 28);
    assert!(rows.iter().all(|row| row.as_array().unwrap().len() == 28));
    let sum: f64 = rows
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_f64().unwrap())
        .sum();
    let completeness = &explanation["completeness"];
    let difference = completeness["score_input"].as_f64().unwrap()
        - completeness["score_baseline"].as_f64().unwrap();
    let error = explanation["completeness_error"].as_f64().unwrap();
    assert!(((sum - difference) / difference).abs() - error < 1e-4);
    assert!(error < 0.02, "completeness error {error}");
    // The band of class 3 (rows 9-11) carries the positive evidence.
    let band_sum: f64 = rows[9..11]
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(band_sum > 0.5 * sum, "band {band_sum} of {sum}");
}

#[test]
fn predict_explain_honours_method_target_and_its_options() {
    let occlusion = explanation(&[
        "--index",
        "1",
        "--explain",
        "occlusion",
        "--occlusion-patch",
        "5",
        "--baseline",
        "0.5",
        "--target",
        "7",
        "--json",
    ]);
    assert_eq!(occlusion["method"], "occlusion");
    assert_eq!(occlusion["parameters"]["patch"], 5);
    assert_eq!(occlusion["parameters"]["stride"], 1);
    assert_eq!(occlusion["parameters"]["baseline"], 0.5);
    assert!(occlusion["parameters"].get("steps").is_none());
    assert_eq!(occlusion["target_index"], 7);
    assert_eq!(occlusion["completeness_error"], Value::Null);
    // Test image 1 is class 0, so 7 is not the prediction.
    assert_eq!(occlusion["target_is_prediction"], false);

    let saliency = explanation(&["--index", "1", "--explain", "saliency", "--json"]);
    let values: Vec<f64> = saliency["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert!(values.iter().all(|&v| v >= 0.0), "saliency is |gradient|");
    let steps = explanation(&["--index", "1", "--explain", "--ig-steps", "7", "--json"]);
    assert_eq!(steps["parameters"]["steps"], 7);
}

#[test]
fn predict_explain_draws_digit_map_and_legend_and_accepts_an_image_right_after_the_flag() {
    let (dir, _) = fixture();
    let image = dir.join("band.png");
    let mut pixels = image::GrayImage::new(28, 28);
    for y in 22..25 {
        for x in 4..24 {
            pixels.put_pixel(x, y, image::Luma([255]));
        }
    }
    pixels.save(&image).unwrap();
    let output = on_fixture("predict", &["--color", "never", "--explain"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("integrated gradients (50 steps"), "{text}");
    assert!(text.contains("completeness error"), "{text}");
    assert!(text.contains("# + raise the score"), "{text}");
    assert!(
        text.contains('█') && text.contains('#'),
        "digit and map: {text}"
    );
    assert!(!text.contains('\x1b'), "no colours with --color never");
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap()
}

#[test]
fn explain_out_writes_png_and_svg_pictures_numbered_for_several_images() {
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("map.png");
    on_fixture("predict", &["--index", "2", "--explain"])
        .arg("--explain-out")
        .arg(&png)
        .assert()
        .success();
    let (width, height) = png_size(&png);
    assert!(width > 3 * 28 * 4 && height > 28 * 4, "{width}×{height}");
    let svg = out.path().join("maps.svg");
    on_fixture("predict", &["--index", "2,3", "--explain", "saliency"])
        .arg("--explain-out")
        .arg(&svg)
        .assert()
        .success();
    for name in ["maps-1.svg", "maps-2.svg"] {
        let text = std::fs::read_to_string(out.path().join(name)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("overlay"),
            "{name}"
        );
    }
}

#[test]
fn eval_explain_check_reports_every_method_in_text_and_json() {
    let output = on_fixture("eval", &["--explain-check", "12", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = json_line(&output.stdout)["explain_check"].clone();
    assert_eq!(report["images"], 12);
    assert_eq!(report["ig_steps"], 50);
    let methods = report["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    // Every method, in the library's order.
    assert_eq!(names, Method::ALL.map(Method::name));
    let ig = &methods[0];
    assert!(
        ig["completeness_median"].as_f64().unwrap() <= ig["completeness_worst"].as_f64().unwrap()
    );
    assert!(ig["completeness_worst"].as_f64().unwrap() < 0.05);
    assert!(ig["deletion_auc"].as_f64().unwrap() < ig["random_auc"].as_f64().unwrap());
    assert_eq!(methods[1]["completeness_median"], Value::Null);
    // The table went to stderr, since JSON owns stdout.
    let table = String::from_utf8(output.stderr).unwrap();
    for name in names {
        assert!(table.contains(name), "{table}");
    }
    assert!(table.contains("beats random"), "{table}");
}

#[test]
fn bad_explain_options_fail_with_one_line_naming_the_option() {
    // `predict --index 0 --explain <args>`
    let explain_cases: [(&[&str], &str); 7] = [
        (&["lime"], "--explain"),
        (&["--ig-steps", "0"], "--ig-steps"),
        (&["--ig-steps", "99999"], "--ig-steps"),
        (
            &["occlusion", "--occlusion-patch", "29"],
            "--occlusion-patch",
        ),
        (&["--baseline", "-0.5"], "--baseline"),
        (&["--target", "12"], "--target"),
        (&["--explain-out", "x.gif"], "--explain-out"),
    ];
    for (args, option) in explain_cases {
        let args = [&["--index", "0", "--explain"][..], args].concat();
        support::assert_one_line_error(&mut on_fixture("predict", &args), 2, &[option]);
    }
    let other_cases: [(&str, &[&str], &str); 3] = [
        ("predict", &["--index", "0", "--target", "3"], "--target"),
        ("eval", &["--explain-check", "0"], "--explain-check"),
        ("eval", &["--explain-check", "41"], "--explain-check"),
    ];
    for (subcommand, args, option) in other_cases {
        support::assert_one_line_error(&mut on_fixture(subcommand, args), 2, &[option]);
    }
}
