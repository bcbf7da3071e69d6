//! `export`/`import` and `--model x.safetensors`, checked against a reader written here from the
//! safetensors specification (8-byte little-endian header length, JSON header, raw little-endian
//! data) rather than through our own loader; and `completions`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{mnist_train, stderr_of, succeeded};
use mnist_train::data::{load_split, DatasetKind, Split};
use mnist_train::model_file::Model;
use serde_json::Value;

fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let model = dir.join(name);
    mnist_train()
        .args(["--limit", "2000", "--epochs", "1", "--quiet"])
        .args(extra)
        .arg("--output")
        .arg(&model)
        .assert()
        .success();
    model
}

fn export(model: &Path, out: &Path) {
    mnist_train()
        .arg("export")
        .arg("--model")
        .arg(model)
        .args(["--format", "safetensors"])
        .arg(out)
        .assert()
        .success();
}

/// A tensor read straight from the file bytes.
struct RawTensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Parses a safetensors file by the specification.
fn read_safetensors(path: &Path) -> (BTreeMap<String, RawTensor>, BTreeMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    let mut covered = 0;
    for (name, entry) in header {
        if name == "__metadata__" {
            metadata = serde_json::from_value(entry).unwrap();
            continue;
        }
        assert_eq!(entry["dtype"], "F32", "{name}");
        let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone()).unwrap();
        let offsets: [usize; 2] = serde_json::from_value(entry["data_offsets"].clone()).unwrap();
        assert_eq!(offsets[1] - offsets[0], shape.iter().product::<usize>() * 4);
        covered += offsets[1] - offsets[0];
        let values = data[offsets[0]..offsets[1]]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        tensors.insert(name, RawTensor { shape, values });
    }
    assert_eq!(
        covered,
        data.len(),
        "the tensors cover the data section exactly"
    );
    (tensors, metadata)
}

/// PyTorch's nn.Sequential(Flatten, Linear, ReLU, Dropout, Linear) in eval mode, written out:
/// each Linear computes x · Wᵀ + b with W stored [out, in].
fn pytorch_forward(
    tensors: &BTreeMap<String, RawTensor>,
    layers: &[usize],
    pixels: &[u8],
) -> Vec<f32> {
    let mut x: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    for (position, index) in layers.iter().enumerate() {
        let weight = &tensors[&format!("{index}.weight")];
        let bias = &tensors[&format!("{index}.bias")];
        let (outputs, inputs) = (weight.shape[0], weight.shape[1]);
        assert_eq!(inputs, x.len());
        let mut y: Vec<f32> = (0..outputs)
            .map(|o| {
                bias.values[o]
                    + (0..inputs)
                        .map(|i| weight.values[o * inputs + i] * x[i])
                        .sum::<f32>()
            })
            .collect();
        if position + 1 < layers.len() {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        x = y;
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// A default model trained in a new folder and exported there as `name`:
/// (the folder, the model file, the exported file).
fn trained_and_exported(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model_path = train(dir.path(), "model.bin", &[]);
    let exported = dir.path().join(name);
    export(&model_path, &exported);
    (dir, model_path, exported)
}

#[test]
fn export_writes_pytorch_sequential_keys_transposed_weights_and_metadata() {
    let (_dir, model_path, out) = trained_and_exported("model.safetensors");
    let (tensors, metadata) = read_safetensors(&out);
    let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    assert_eq!(names, ["1.bias", "1.weight", "4.bias", "4.weight"]);
    assert_eq!(tensors["1.weight"].shape, [128, 784]);
    assert_eq!(tensors["1.bias"].shape, [128]);
    assert_eq!(tensors["4.weight"].shape, [10, 128]);
    assert_eq!(tensors["4.bias"].shape, [10]);
    assert_eq!(metadata["format"], "pt");
    assert_eq!(metadata["dataset"], "mnist");
    let classes: Vec<String> = serde_json::from_str(&metadata["class_names"]).unwrap();
    assert_eq!(classes, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let architecture: Value = serde_json::from_str(&metadata["architecture"]).unwrap();
    assert_eq!(architecture["hidden"], serde_json::json!([128]));
    assert_eq!(
        metadata["pytorch_module"],
        "nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))"
    );

    // Every value is our [in, out] weight transposed.
    let model = Model::load(&model_path).unwrap();
    let layouts = model.architecture.dense_layouts();
    for (layer, index) in [(0, 1), (1, 4)] {
        let layout = &layouts[layer];
        let ours = &model.parameters[layout.weights.clone()];
        let theirs = &tensors[&format!("{index}.weight")].values;
        for input in 0..layout.inputs {
            for output in 0..layout.outputs {
                assert_eq!(
                    theirs[output * layout.inputs + input],
                    ours[input * layout.outputs + output]
                );
            }
        }
        assert_eq!(
            tensors[&format!("{index}.bias")].values,
            model.parameters[layout.bias.clone()]
        );
    }

    // The PyTorch-convention forward pass over the exported tensors gives what predict says.
    let test = load_split(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data")),
        Split::Test,
        DatasetKind::Mnist,
    )
    .unwrap();
    let output = succeeded(
        mnist_train()
            .arg("predict")
            .arg("--model")
            .arg(&model_path)
            .args(["--index", "0,1,2,3,4,5,6,7", "--json"]),
    );
    for (index, line) in String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .enumerate()
    {
        let line: Value = serde_json::from_str(line).unwrap();
        let expected = pytorch_forward(&tensors, &[1, 4], test.image(index));
        for (class, probability) in line["probabilities"].as_array().unwrap().iter().enumerate() {
            assert!((probability.as_f64().unwrap() as f32 - expected[class]).abs() < 1e-4);
        }
    }
}

#[test]
fn deeper_mlps_continue_the_index_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = train(dir.path(), "deep.bin", &["--hidden", "64,32"]);
    let out = dir.path().join("deep.safetensors");
    export(&model_path, &out);
    let (tensors, metadata) = read_safetensors(&out);
    assert_eq!(tensors["1.weight"].shape, [64, 784]);
    assert_eq!(tensors["4.weight"].shape, [32, 64]);
    assert_eq!(tensors["7.weight"].shape, [10, 32]);
    assert_eq!(tensors.len(), 6);
    assert!(metadata["pytorch_module"]
        .contains("nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10)"));
}

#[test]
fn safetensors_models_work_everywhere_and_import_round_trips_byte_for_byte() {
    // A name that does not say what the file is: detection is by content.
    let (dir, model_path, exported) = trained_and_exported("exported.weights");
    let accuracy_line = |model: &Path| {
        let output = succeeded(mnist_train().arg("eval").arg("-m").arg(model));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .find(|line| line.starts_with("Test loss"))
            .unwrap()
            .to_string()
    };
    assert_eq!(accuracy_line(&model_path), accuracy_line(&exported));
    let predict = mnist_train()
        .arg("predict")
        .arg("-m")
        .arg(&exported)
        .args(["--index", "0"])
        .output()
        .unwrap();
    assert!(predict.status.success());

    let imported = dir.path().join("imported.bin");
    succeeded(
        mnist_train()
            .arg("import")
            .arg(&exported)
            .arg("--output")
            .arg(&imported),
    );
    assert_eq!(
        std::fs::read(&imported).unwrap(),
        std::fs::read(&model_path).unwrap(),
        "export then import gives back the same model file"
    );
}

#[test]
fn import_rejects_files_that_are_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = train(dir.path(), "model.bin", &[]);
    let stderr = stderr_of(
        mnist_train()
            .arg("import")
            .arg(&model_path)
            .arg("--output")
            .arg(dir.path().join("x.bin")),
        1,
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("model.bin") && stderr.contains("safetensors"),
        "{stderr}"
    );
    assert!(!dir.path().join("x.bin").exists());
}

#[test]
fn completions_are_generated_for_each_shell_and_parse() {
    for shell in ["bash", "zsh", "fish"] {
        let output = mnist_train().args(["completions", shell]).output().unwrap();
        assert!(output.status.success());
        let script = String::from_utf8(output.stdout).unwrap();
        for word in ["predict", "export", "show-errors", "json", "history"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        // When the shell is installed, the script must at least be valid syntax.
        let syntax_check = match shell {
            "fish" => vec!["--no-execute"],
            _ => vec!["-n"],
        };
        if let Ok(mut child) = std::process::Command::new(shell)
            .args(&syntax_check)
            .stdin(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(
                child.wait().unwrap().success(),
                "{shell} rejects its completion script"
            );
        }
    }
    mnist_train()
        .args(["completions", "tcsh"])
        .assert()
        .failure()
        .code(2);
}
