//! `predict` and `eval` end to end: hand-made images of real test digits (dark ink on light
//! paper, off-centre, on 100×100 canvases, as PNG, JPEG and PGM) must be classified correctly by
//! a model trained here, and eval's JSON is checked field by field.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::{self, json_lines, mnist_train, stdout_of, succeeded};
use image::imageops::FilterType;
use image::{GrayImage, Luma};
use mnist_train::data::{load_split, Dataset, DatasetKind, Split};

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
}

/// `mnist-train COMMAND --model <the trained model>`.
fn with_trained_model(command: &str) -> assert_cmd::Command {
    let mut with_model = mnist_train();
    with_model.arg(command).arg("--model").arg(trained_model());
    with_model
}

/// A model trained once for this test binary: one epoch on the full MNIST training set (≈97 %).
fn trained_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let model = dir.join("model.bin");
        support::train_model(&model, &["--epochs", "1", "--seed", "7"]);
        model
    })
}

fn test_set() -> Dataset {
    load_split(&data_dir(), Split::Test, DatasetKind::Mnist).unwrap()
}

/// Test image `index` drawn as dark ink on a light 100×100 page: scaled up to `size` pixels and
/// placed at (`x`, `y`), away from the centre.
fn hand_made(test: &Dataset, index: usize, size: u32, x: u32, y: u32) -> GrayImage {
    let digit = GrayImage::from_fn(28, 28, |px, py| {
        Luma([255 - test.image(index)[(py * 28 + px) as usize]])
    });
    let digit = image::imageops::resize(&digit, size, size, FilterType::Triangle);
    let mut page = GrayImage::from_pixel(100, 100, Luma([235]));
    image::imageops::overlay(&mut page, &digit, x as i64, y as i64);
    page
}

#[test]
fn predict_classifies_hand_made_dark_on_light_off_centre_images() {
    let test = test_set();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let count = 20;
    for index in 0..count {
        // Sizes 40-59 pixels, positions spread over the page, never centred.
        let size = 40 + (index as u32 * 7) % 20;
        let x = (index as u32 * 13) % (100 - size);
        let y = 100 - size - (index as u32 * 5) % (100 - size);
        let page = hand_made(&test, index, size, x, y);
        let extension = match index % 10 {
            3 => "jpg",
            7 => "pgm",
            _ => "png",
        };
        let path = dir.path().join(format!("digit-{index}.{extension}"));
        page.save(&path).unwrap();
        files.push(path);
    }
    let lines =
        json_lines(stdout_of(with_trained_model("predict").arg("--json").args(&files)).as_bytes());
    assert_eq!(lines.len(), count);
    let mut correct = 0;
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["type"], "prediction");
        assert_eq!(line["source"], files[index].display().to_string());
        assert!(line["test_index"].is_null() && line["true_class"].is_null());
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let probabilities: Vec<f64> = top
            .iter()
            .map(|score| score["probability"].as_f64().unwrap())
            .collect();
        assert!(probabilities.windows(2).all(|pair| pair[0] >= pair[1]));
        assert_eq!(line["predicted"], top[0]["class"]);
        assert_eq!(line["predicted_index"], top[0]["index"]);
        let all = line["probabilities"].as_array().unwrap();
        assert_eq!(all.len(), 10);
        let sum: f64 = all.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        if line["predicted_index"] == test.labels[index] as u64 {
            correct += 1;
        }
    }
    eprintln!("{correct}/{count} hand-made digits classified correctly");
    assert!(
        correct >= 18,
        "only {correct}/{count} hand-made digits right"
    );
}

#[test]
fn predict_human_output_lists_top_three_per_file() {
    let test = test_set();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seven.png");
    hand_made(&test, 0, 50, 3, 45).save(&path).unwrap();
    let output = succeeded(with_trained_model("predict").arg(&path));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout.lines().next().unwrap();
    assert!(
        line.starts_with(&format!("{}: 7 (", path.display())),
        "{line}"
    );
    assert_eq!(line.matches('%').count(), 3, "{line}");
}

#[test]
fn predict_index_show_draws_the_digit_beside_the_prediction() {
    let test = test_set();
    let output = succeeded(
        with_trained_model("predict")
            .args(["--index", "0", "--show"])
            .env_remove("NO_COLOR"),
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let true_label = test.labels[0];
    assert!(
        stdout.contains(&format!("test:0 (true: {true_label})")),
        "{stdout}"
    );
    assert!(stdout.contains("1. "), "{stdout}");
    assert!(stdout.contains('█'), "half blocks drawn: {stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no colour codes when stdout is not a terminal"
    );
    // The drawing: 14 lines of 28 columns for the 28×28 image, lit where the digit is.
    let art: Vec<String> = stdout
        .lines()
        .take(14)
        .map(|line| line.chars().take(28).collect())
        .collect();
    for (pair, line) in art.iter().enumerate() {
        for (x, symbol) in line.chars().enumerate() {
            let upper = test.image(0)[2 * pair * 28 + x] >= 128;
            let lower = test.image(0)[(2 * pair + 1) * 28 + x] >= 128;
            let expected = match (upper, lower) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            };
            assert_eq!(symbol, expected, "row pair {pair}, column {x}");
        }
    }
}

#[test]
fn predict_index_json_reports_the_true_class() {
    let test = test_set();
    let output =
        succeeded(with_trained_model("predict").args(["--index", "1,2", "--json", "--top", "2"]));
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 2);
    for (line, index) in lines.iter().zip([1usize, 2]) {
        assert_eq!(line["source"], format!("test:{index}"));
        assert_eq!(line["test_index"], index);
        assert_eq!(line["true_class"], test.labels[index].to_string());
        assert_eq!(line["top"].as_array().unwrap().len(), 2);
    }
    // Human text went to stderr.
    assert!(String::from_utf8(output.stderr).unwrap().contains("test:1"));
}

#[test]
fn predict_rejects_bad_inputs_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.png");
    GrayImage::from_pixel(50, 50, Luma([255]))
        .save(&blank)
        .unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image at all").unwrap();
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (vec![blank.display().to_string()], 1, "no digit".into()),
        (vec![text.display().to_string()], 1, "notes.png".into()),
        (vec!["missing.png".into()], 1, "missing.png".into()),
        (vec!["--index".into(), "10000".into()], 2, "--index".into()),
        (vec![], 2, "IMAGE".into()),
    ];
    for (args, code, needle) in cases {
        let output = with_trained_model("predict").args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(&needle), "{args:?}: {stderr}");
    }
}

#[test]
fn eval_prints_per_class_metrics_confusions_and_the_most_confident_mistakes() {
    let stdout = stdout_of(with_trained_model("eval").args(["--show-errors", "4"]));
    for needle in [
        "precision",
        "recall",
        "support",
        "macro avg",
        "weighted avg",
        "Confusion matrix",
        "Most confused (true → predicted: count)",
        "The 4 most confident mistakes",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}:\n{stdout}");
    }
    assert_eq!(stdout.matches("test image ").count(), 4, "{stdout}");
    assert_eq!(stdout.matches("true: ").count(), 4);
    assert_eq!(stdout.matches("pred: ").count(), 4);
}

#[test]
fn eval_json_is_complete_and_consistent() {
    let test = test_set();
    let lines = json_lines(
        stdout_of(with_trained_model("eval").args([
            "--json",
            "--show-errors",
            "3",
            "--confused",
            "4",
        ]))
        .as_bytes(),
    );
    assert_eq!(lines.len(), 1);
    let json = &lines[0];
    assert_eq!(json["type"], "evaluation");
    assert_eq!(json["dataset"], "mnist");
    assert_eq!(json["count"], 10000);
    let accuracy = json["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.95, "one epoch on MNIST: {accuracy}");
    assert!(json["loss"].as_f64().unwrap() > 0.0);
    let matrix: Vec<Vec<u64>> = serde_json::from_value(json["confusion_matrix"].clone()).unwrap();
    assert_eq!(matrix.len(), 10);
    let diagonal: u64 = (0..10).map(|i| matrix[i][i]).sum();
    assert_eq!(diagonal, json["correct"].as_u64().unwrap());
    let per_class = json["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    for (class, metrics) in per_class.iter().enumerate() {
        assert_eq!(metrics["index"], class);
        assert_eq!(metrics["class"], class.to_string());
        let support: u64 = matrix[class].iter().sum();
        assert_eq!(metrics["support"], support);
        let recall = matrix[class][class] as f64 / support as f64;
        assert!((metrics["recall"].as_f64().unwrap() - recall).abs() < 1e-12);
        let predicted: u64 = matrix.iter().map(|row| row[class]).sum();
        let precision = matrix[class][class] as f64 / predicted as f64;
        assert!((metrics["precision"].as_f64().unwrap() - precision).abs() < 1e-12);
        let f1 = metrics["f1"].as_f64().unwrap();
        assert!((f1 - 2.0 * precision * recall / (precision + recall)).abs() < 1e-12);
    }
    assert!((json["weighted_avg"]["recall"].as_f64().unwrap() - accuracy).abs() < 1e-12);
    assert!(json["macro_avg"]["f1"].as_f64().unwrap() > 0.9);
    let pairs = json["most_confused"].as_array().unwrap();
    assert_eq!(pairs.len(), 4);
    for pair in pairs {
        let (t, p) = (
            pair["true_index"].as_u64().unwrap() as usize,
            pair["predicted_index"].as_u64().unwrap() as usize,
        );
        assert_ne!(t, p);
        assert_eq!(pair["count"], matrix[t][p]);
    }
    assert!(pairs[0]["count"].as_u64() >= pairs[3]["count"].as_u64());
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3);
    for error in errors {
        let index = error["index"].as_u64().unwrap() as usize;
        assert_eq!(error["true"], test.labels[index].to_string());
        assert_ne!(error["predicted"], error["true"]);
        assert!(error["confidence"].as_f64().unwrap() > 0.5);
    }
    assert!(errors[0]["confidence"].as_f64() >= errors[2]["confidence"].as_f64());
}

/// Fashion-MNIST's class names in label order, as published with the dataset (Zalando's README).
#[rustfmt::skip]
const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
];

/// `--dataset fashion` on a small synthetic dataset in the Fashion-MNIST layout (the same four
/// IDX files as MNIST) in a temporary folder: nothing outside the repository is needed.
#[test]
fn fashion_class_names_appear_in_train_eval_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fashion-mnist");
    std::fs::create_dir(&data).unwrap();
    support::write_synthetic_dataset(&data, 300, 50, true);
    let test = load_split(&data, Split::Test, DatasetKind::Mnist).unwrap();
    let model = dir.path().join("fashion.bin");
    let output = succeeded(
        mnist_train()
            .args(["--dataset", "fashion", "--epochs", "1", "--json"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--output")
            .arg(&model),
    );
    let summary = json_lines(&output.stdout).pop().unwrap();
    assert_eq!(summary["dataset"], "fashion");
    for (label, name) in FASHION_CLASSES.iter().enumerate() {
        assert_eq!(summary["class_names"][label], *name);
    }

    let eval = mnist_train()
        .arg("eval")
        .arg("-m")
        .arg(&model)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(eval.status.success(), "{eval:?}");
    let stdout = String::from_utf8(eval.stdout).unwrap();
    for name in FASHION_CLASSES {
        // In the per-class table and as a confusion-matrix row label.
        assert!(
            stdout.matches(name).count() >= 2,
            "{name} missing from eval output:\n{stdout}"
        );
    }

    let predict = mnist_train()
        .arg("predict")
        .arg("-m")
        .arg(&model)
        .arg("--data-dir")
        .arg(&data)
        .args(["--index", "0", "--json"])
        .output()
        .unwrap();
    assert!(predict.status.success(), "{predict:?}");
    let line = &json_lines(&predict.stdout)[0];
    assert_eq!(
        line["true_class"],
        FASHION_CLASSES[usize::from(test.labels[0])]
    );
    assert!(FASHION_CLASSES.contains(&line["predicted"].as_str().unwrap()));
}

#[test]
fn color_flag_forces_or_suppresses_grey_levels() {
    let run = |color: &str| {
        let output = succeeded(
            with_trained_model("predict").args(["--index", "0", "--show", "--color", color]),
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let always = run("always");
    assert!(always.contains("\x1b[38;5;"), "{always}");
    assert_eq!(
        always.matches("\x1b[0m").count(),
        14,
        "each of 14 lines resets"
    );
    assert!(!run("never").contains('\x1b'));
}

/// Runs `predict --show` on a pseudo-terminal (util-linux `script`) so that `--color auto` sees a
/// terminal; returns None where `script` is not installed.
fn predict_show_on_a_terminal(env: &[(&str, &str)], remove_no_color: bool) -> Option<String> {
    let command = format!(
        "{} predict -m {} --index 0 --show",
        crate::support::BINARY,
        trained_model().display()
    );
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    if remove_no_color {
        script.env_remove("NO_COLOR");
    }
    script.envs(env.iter().copied());
    let output = script.output().ok()?;
    assert!(output.status.success(), "{output:?}");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn on_a_terminal_colours_follow_no_color_and_term() {
    let Some(colored) = predict_show_on_a_terminal(&[("TERM", "xterm-256color")], true) else {
        eprintln!("`script` is not installed; skipping the pseudo-terminal check");
        return;
    };
    assert!(colored.contains("\x1b[38;5;"), "grey levels on a terminal");
    let no_color =
        predict_show_on_a_terminal(&[("TERM", "xterm-256color"), ("NO_COLOR", "1")], false)
            .unwrap();
    assert!(!no_color.contains("\x1b["), "NO_COLOR=1 disables colours");
    assert!(no_color.contains('█'));
    let dumb = predict_show_on_a_terminal(&[("TERM", "dumb")], true).unwrap();
    assert!(!dumb.contains("\x1b["), "TERM=dumb disables colours");
}

/// Pen strokes, each a polyline of page coordinates.
type Strokes = Vec<Vec<(f32, f32)>>;

/// A 400×400 white page with black pen strokes of radius `pen` along the polylines.
fn pen_drawing(strokes: &[Vec<(f32, f32)>], pen: f32) -> GrayImage {
    let mut page = GrayImage::from_pixel(400, 400, Luma([255]));
    for stroke in strokes {
        for pair in stroke.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize + 1;
            for step in 0..=steps {
                let t = step as f32 / steps as f32;
                let (cx, cy) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
                let r = pen.ceil() as i32;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (x, y) = (cx as i32 + dx, cy as i32 + dy);
                        if (dx * dx + dy * dy) as f32 <= pen * pen
                            && (0..400).contains(&x)
                            && (0..400).contains(&y)
                        {
                            page.put_pixel(x as u32, y as u32, Luma([20]));
                        }
                    }
                }
            }
        }
    }
    page
}

fn circle(cx: f32, cy: f32, r: f32, from_degrees: f32, to_degrees: f32) -> Vec<(f32, f32)> {
    (0..=40)
        .map(|i| {
            let angle = (from_degrees + (to_degrees - from_degrees) * i as f32 / 40.0).to_radians();
            (cx + r * angle.cos(), cy + r * angle.sin())
        })
        .collect()
}

#[test]
fn predict_reads_pen_drawings_with_thin_and_thick_strokes() {
    let digits: Vec<(u8, Strokes)> = vec![
        (0, vec![circle(200.0, 200.0, 90.0, 0.0, 360.0)]),
        (1, vec![vec![(200.0, 80.0), (200.0, 320.0)]]),
        (
            3,
            vec![
                circle(200.0, 140.0, 60.0, -150.0, 90.0),
                circle(200.0, 260.0, 60.0, -90.0, 150.0),
            ],
        ),
        (
            4,
            vec![
                vec![(220.0, 80.0), (120.0, 240.0), (260.0, 240.0)],
                vec![(230.0, 150.0), (230.0, 330.0)],
            ],
        ),
        (
            7,
            vec![vec![(120.0, 100.0), (280.0, 100.0), (170.0, 320.0)]],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, strokes) in &digits {
        for pen in [2.0, 12.0] {
            let path = dir.path().join(format!("drawn-{label}-{pen}.png"));
            pen_drawing(strokes, pen).save(&path).unwrap();
            files.push(path);
            labels.push(*label);
        }
    }
    let output = succeeded(with_trained_model("predict").arg("--json").args(&files));
    let predicted: Vec<u64> = json_lines(&output.stdout)
        .iter()
        .map(|line| line["predicted_index"].as_u64().unwrap())
        .collect();
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| **p == **l as u64)
        .count();
    eprintln!("pen drawings: predicted {predicted:?} for {labels:?}");
    assert!(
        correct >= 9,
        "only {correct}/10 pen drawings right: {predicted:?} vs {labels:?}"
    );
}
