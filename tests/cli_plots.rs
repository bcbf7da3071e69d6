//! `train --plot` and `eval --plot`: the files are real pictures with the expected content (SVG
//! text and shapes checked, PNG decoded and checked for size and drawn pixels), and a bad file
//! name is refused before any training.

use crate::support::{mnist_train, stderr_of, succeeded, train_model};
use serde_json::Value;

/// The contents of every `<text>` element of an SVG, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let (_, rest) = element.split_once('>')?;
            let (content, _) = rest.split_once("</text>")?;
            Some(content.trim().to_string())
        })
        .collect()
}

#[test]
fn train_plot_draws_loss_and_accuracy_curves_as_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("curves.svg");
    let png = dir.path().join("curves.png");
    for (plot, extra) in [(&svg, vec!["--validation-split", "0.2"]), (&png, vec![])] {
        mnist_train()
            .args(["--limit", "500", "--epochs", "3", "--quiet"])
            .args(extra)
            .arg("--output")
            .arg(dir.path().join("model.bin"))
            .arg("--plot")
            .arg(plot)
            .assert()
            .success();
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
    let texts = svg_texts(&text);
    for label in ["loss", "accuracy", "epoch", "train", "validation"] {
        assert!(
            texts.iter().any(|t| t == label),
            "missing {label} in {texts:?}"
        );
    }
    // Two panels × (train + validation) lines drawn as polylines.
    assert!(text.matches("<polyline").count() >= 4);

    let image = image::open(&png).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (1200, 480));
    let drawn = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(drawn > 5_000, "only {drawn} non-white pixels");
    // The training line's colour is present.
    assert!(image.pixels().any(|p| p.0 == [0, 114, 178]));
}

#[test]
fn eval_plot_writes_the_confusion_heat_map_with_counts_and_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.bin");
    train_model(&model, &["--limit", "500", "--epochs", "1"]);
    let svg = dir.path().join("confusion.svg");
    let output = succeeded(
        mnist_train()
            .arg("eval")
            .arg("-m")
            .arg(&model)
            .arg("--json")
            .arg("--plot")
            .arg(&svg),
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let matrix: Vec<Vec<u64>> = serde_json::from_value(json["confusion_matrix"].clone()).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    // 100 cells, each a filled rectangle with its count written in it.
    assert!(text.matches("<rect").count() >= 100);
    let texts = svg_texts(&text);
    for row in &matrix {
        for count in row {
            assert!(
                texts.contains(&count.to_string()),
                "count {count} not drawn"
            );
        }
    }
    for class in 0..10 {
        assert!(texts.iter().filter(|t| **t == class.to_string()).count() >= 2);
    }

    let png = dir.path().join("confusion.png");
    mnist_train()
        .arg("eval")
        .arg("-m")
        .arg(&model)
        .arg("--plot")
        .arg(&png)
        .assert()
        .success();
    let image = image::open(&png).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (130 + 10 * 78 + 30, 100 + 10 * 78 + 60));
    // The darkest blue of a well-classified diagonal cell is there.
    assert!(image.pixels().any(|p| p.0[2] > 90 && p.0[0] < 40));
}

#[test]
fn plot_with_an_unknown_extension_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = stderr_of(
        mnist_train()
            .args(["--limit", "100", "--epochs", "1"])
            .arg("--output")
            .arg(dir.path().join("model.bin"))
            .arg("--plot")
            .arg(dir.path().join("curves.gif")),
        2,
    );
    assert!(
        stderr.contains("--plot") && stderr.contains(".svg or .png"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Epoch"),
        "refused before training: {stderr}"
    );
    assert!(!dir.path().join("model.bin").exists());
}
