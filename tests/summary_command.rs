//! `mnist-train summary`: the Keras-style table and totals, with and without a model file, the
//! file's checksum and format version read back from the bytes, and one-line errors.

use serde_json::Value;

use crate::support::{assert_one_line_error, mnist_train, stdout_of};

fn summary_json(args: &[&str]) -> Value {
    let output = mnist_train()
        .arg("summary")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_default_mlp_has_101_770_parameters_in_a_keras_table() {
    let text = stdout_of(mnist_train().arg("summary"));
    for needle in [
        "Layer (type)",
        "Output Shape",
        "Param #",
        "0 flatten (Flatten)",
        "(None, 784)",
        "100,480",
        "1,290",
        // 101,770 · 4 bytes / 1024 = 397.54 KB, as Keras prints it.
        "Total params: 101,770 (397.54 KB)",
        "Trainable params: 101,770 (397.54 KB)",
        "Non-trainable params: 0 (0.00 B)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn an_architecture_given_by_options_is_counted_by_layer() {
    let json = summary_json(&["--hidden", "256,128", "--dropout", "0.5"]);
    assert_eq!(json["type"], "model_summary");
    // 784·256 + 256, 256·128 + 128, 128·10 + 10, by hand.
    assert_eq!(json["total_parameters"], 200_960 + 32_896 + 1_290);
    let types: Vec<&str> = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    );
    assert_eq!(json["input_shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(json["file"], Value::Null);
}

#[test]
fn a_model_file_shows_its_metadata_format_version_and_stored_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.bin");
    mnist_train()
        .args(["--limit", "500", "--epochs", "1", "--quiet", "--output"])
        .arg(&model)
        .assert()
        .success();
    let path = model.to_str().unwrap();
    let json = summary_json(&["--model", path]);
    assert_eq!(json["total_parameters"], 101_770);
    assert_eq!(json["dataset"], "mnist");
    assert_eq!(json["class_names"].as_array().unwrap().len(), 10);
    let bytes = std::fs::read(&model).unwrap();
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(json["file"]["checksum"], format!("{stored:08x}"));
    assert_eq!(
        json["file"]["format_version"],
        u32::from_le_bytes(bytes[8..12].try_into().unwrap())
    );
    assert_eq!(json["file"]["bytes"], bytes.len());

    let text = mnist_train()
        .args(["summary", "--model", path])
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Dataset: mnist"), "{text}");
    assert!(
        text.contains(&format!("Checksum: {stored:08x} (stored CRC-32 verified)")),
        "{text}"
    );

    // The same weights as safetensors: the same table, the format named.
    let exported = dir.path().join("model.safetensors");
    mnist_train()
        .args(["export", "--model", path])
        .arg(&exported)
        .assert()
        .success();
    let json = summary_json(&["--model", exported.to_str().unwrap()]);
    assert_eq!(json["total_parameters"], 101_770);
    assert_eq!(json["file"]["format"], "safetensors");
}

#[test]
fn bad_summary_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    assert_one_line_error(
        mnist_train().args(["summary", "--model", missing.to_str().unwrap()]),
        1,
        &["missing.bin"],
    );
    assert_one_line_error(
        mnist_train().args(["summary", "--hidden", "0"]),
        2,
        &["--hidden"],
    );
    assert_one_line_error(
        mnist_train().args(["summary", "--model", "x.bin", "--hidden", "5"]),
        2,
        &["--hidden"],
    );
}
