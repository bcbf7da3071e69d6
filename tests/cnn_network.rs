//! The convolutional network end to end: thread invariance and exact resume of CNN training,
//! the `--arch cnn` / `--layers` command line, model files with a layer list next to MLP files
//! written before layer stacks existed, and the PyTorch-layout safetensors export read back by
//! an independent reader.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{
    self, assert_one_line_error, assert_same_training_state, bits, fit_on_threads, random_dataset,
    small_run, succeeded, test_run, BINARY,
};

use assert_cmd::Command;
use mnist_train::checkpoint::Checkpoint;
use mnist_train::data::DatasetKind;
use mnist_train::interop::safetensors::{export_bytes, import_bytes};
use mnist_train::model_file::Model;
use mnist_train::nn::layer_spec::parse_layers;
use mnist_train::nn::{Architecture, Mlp};
use mnist_train::train::{
    BatchSize, Callback, Control, Progress, ProgressMode, TrainConfig, Trainer,
};

/// A CNN small enough for debug-build tests, with every layer kind.
const SMALL_CNN: &str = "conv4x3,relu,pool2,conv6x3,relu,pool2,flatten,dropout0.5,dense10";

fn small_cnn_config(batch_size: BatchSize, epochs: usize) -> TrainConfig {
    let cnn = Architecture::stack(parse_layers(SMALL_CNN).unwrap());
    TrainConfig {
        learning_rate: 0.002,
        seed: 13,
        ..small_run(cnn, batch_size, epochs)
    }
}

#[test]
fn cnn_training_is_bit_identical_for_every_thread_count() {
    // Batch 128 is split into 2 shards of 64 rows, each run in 4 passes.
    let train = random_dataset(300, 21);
    let config = small_cnn_config(BatchSize::Examples(128), 1);
    let run = |threads: usize| fit_on_threads(config.clone(), &train, threads).params;
    let one = bits(&run(1));
    for threads in [2, 3, 8] {
        assert_eq!(bits(&run(threads)), one, "{threads} threads differ from 1");
    }
}

/// Asks the loop to stop once `stop_after` optimization steps are done.
struct StopAfter(usize);

impl Callback for StopAfter {
    fn on_step_end(&mut self, trainer: &Trainer) -> mnist_train::Result<Control> {
        Ok(if trainer.optimizer.steps as usize == self.0 {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

#[test]
fn cnn_resumed_after_any_step_ends_bit_identical() {
    // 40 examples at batch 16: 3 steps per epoch with a short last batch; 2 epochs.
    let train = random_dataset(40, 4);
    let config = small_cnn_config(BatchSize::Examples(16), 2);
    let mut progress = Progress::new(ProgressMode::None, config.epochs);
    let mut reference = Trainer::new(config.clone());
    reference.fit(&train, &mut progress, &mut []).unwrap();
    let total_steps = reference.optimizer.steps as usize;
    assert_eq!(total_steps, 6);
    for stop_after in 1..total_steps {
        let mut first = Trainer::new(config.clone());
        first
            .fit(&train, &mut progress, &mut [&mut StopAfter(stop_after)])
            .unwrap();
        let (spec, data) = test_run(train.len());
        let bytes = Checkpoint::capture(&first, &spec, &data).encode();
        let mut resumed = Checkpoint::decode(&bytes).unwrap().into_trainer();
        assert!(
            resumed.mlp.stack.is_some(),
            "the checkpoint keeps the layer list"
        );
        resumed.fit(&train, &mut progress, &mut []).unwrap();
        assert_same_training_state(&resumed, &reference, &format!("stopped after {stop_after}"));
    }
}

/// `train` on the synthetic data in `dir` with extra arguments.
fn train_command(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .args(["train", "--data-dir", "data", "--progress", "none"]);
    command
}

#[test]
fn arch_cnn_trains_evaluates_and_predicts_and_its_model_file_lists_the_layers() {
    let work = support::Workdir::new(96);
    let dir = work.temp.path();
    let output = succeeded(
        train_command(dir).args(["--arch", "cnn", "--epochs", "1", "--json", "-o", "cnn.bin"]),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    // The CNN recipe: batch 64, Adam 0.002 on a cosine schedule.
    let config = &summary["config"];
    assert_eq!(
        config["layers"],
        mnist_train::nn::layer_spec::CNN_SPEC,
        "{summary}"
    );
    assert_eq!(config["batch_size"], 64, "{summary}");
    assert_eq!(config["learning_rate"], 0.002, "{summary}");
    assert_eq!(config["schedule"]["kind"]["name"], "cosine", "{summary}");

    let model = Model::load(&dir.join("cnn.bin")).unwrap();
    assert_eq!(model.architecture, Architecture::cnn());
    assert_eq!(model.parameters.len(), 34_826);
    let bytes = std::fs::read(dir.join("cnn.bin")).unwrap();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).to_string();
    assert!(
        header.contains(r#""layers":["conv32x3","relu","pool2","conv64x3","relu","pool2","flatten","dropout0.5","dense10"]"#),
        "{header}"
    );

    let eval = succeeded(Command::new(BINARY).current_dir(dir).args([
        "eval",
        "--model",
        "cnn.bin",
        "--data-dir",
        "data",
        "--json",
    ]));
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    // The same model on the same test set: eval agrees with train's own test evaluation.
    assert_eq!(eval["accuracy"], summary["test_accuracy"], "{eval}");

    succeeded(Command::new(BINARY).current_dir(dir).args([
        "predict",
        "--model",
        "cnn.bin",
        "--data-dir",
        "data",
        "--index",
        "3",
    ]));
}

#[test]
fn layers_spec_trains_the_stack_it_describes() {
    let work = support::Workdir::new(64);
    let dir = work.temp.path();
    train_command(dir)
        .args([
            "--layers",
            "conv2x5,relu,pool4,flatten,dense10",
            "--epochs",
            "1",
            "-o",
            "s.bin",
        ])
        .assert()
        .success();
    let model = Model::load(&dir.join("s.bin")).unwrap();
    // conv: 5·5·1·2 + 2 = 52; 24×24 → pool4 → 6×6×2 = 72 → dense: 72·10 + 10 = 730.
    assert_eq!(model.parameters.len(), 52 + 730);
}

#[test]
fn bad_layer_specs_and_mlp_options_with_a_stack_are_usage_errors_naming_the_culprit() {
    let work = support::Workdir::new(16);
    let dir = work.temp.path();
    for (args, needles) in [
        (
            vec!["--layers", "conv8x3,dense10"],
            vec!["--layers", "layer 2 (dense10)", "flatten"],
        ),
        (
            vec!["--layers", "conv8x3,sigmoid,flatten,dense10"],
            vec!["--layers", "sigmoid"],
        ),
        (
            vec!["--layers", "flatten,dense12"],
            vec!["--layers", "dense12", "10 classes"],
        ),
        (
            vec!["--layers", "pool32,flatten,dense10"],
            vec!["--layers", "layer 1 (pool32)"],
        ),
        (
            vec!["--arch", "cnn", "--hidden", "64"],
            vec!["--hidden", "--arch mlp"],
        ),
        (
            vec!["--arch", "cnn", "--dropout", "0.3"],
            vec!["--dropout", "--arch mlp"],
        ),
    ] {
        assert_one_line_error(train_command(dir).args(&args), 2, &needles);
    }
}

#[test]
fn an_mlp_model_file_written_before_layer_stacks_loads_and_reencodes_byte_for_byte() {
    // Written by mnist-train at main 49ee226 (before this change):
    // `mnist-train --hidden 8 --epochs 1 --limit 500 --seed 5 --threads 1` (test accuracy 0.2259).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/mlp-hidden8-written-before-layer-stacks.bin");
    let bytes = std::fs::read(&path).unwrap();
    let model = Model::load(&path).unwrap();
    assert_eq!(model.architecture.layers, None);
    assert_eq!(model.architecture.hidden, [8]);
    assert_eq!(model.encode(), bytes, "the MLP file format is unchanged");
    let eval = succeeded(Command::new(BINARY).args(["eval", "--model"]).arg(&path));
    assert!(
        String::from_utf8_lossy(&eval.stdout).contains("0.2259"),
        "{}",
        String::from_utf8_lossy(&eval.stdout)
    );
}

/// A minimal safetensors reader written from the format description (8-byte little-endian
/// header length, JSON header, raw data), independent of the `safetensors` crate.
fn read_safetensors(bytes: &[u8]) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let mut tensors = BTreeMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32");
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
        let offsets: Vec<usize> = serde_json::from_value(info["data_offsets"].clone()).unwrap();
        let values = data[offsets[0]..offsets[1]]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        tensors.insert(name.clone(), (shape, values));
    }
    tensors
}

/// PyTorch's semantics for the CNN, written out directly on NCHW tensors: Conv2d (cross-
/// correlation, weight [out, in, k, k]), ReLU, MaxPool2d(2), Flatten (channel-major), Linear
/// (weight [out, in]). Returns the logits of one 28×28 image.
fn pytorch_cnn_logits(
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    image: &[f32],
) -> Vec<f64> {
    // x: [channels][height][width]
    let mut x: Vec<Vec<Vec<f64>>> = vec![(0..28)
        .map(|y| (0..28).map(|col| image[y * 28 + col] as f64).collect())
        .collect()];
    for layer in ["0", "3"] {
        let (shape, w) = &tensors[&format!("{layer}.weight")];
        let (_, b) = &tensors[&format!("{layer}.bias")];
        let (outs, ins, k) = (shape[0], shape[1], shape[2]);
        let (h, wd) = (x[0].len() - k + 1, x[0][0].len() - k + 1);
        let conv: Vec<Vec<Vec<f64>>> = (0..outs)
            .map(|o| {
                (0..h)
                    .map(|y| {
                        (0..wd)
                            .map(|c| {
                                let mut sum = b[o] as f64;
                                for i in 0..ins {
                                    for ky in 0..k {
                                        for kx in 0..k {
                                            sum += w[((o * ins + i) * k + ky) * k + kx] as f64
                                                * x[i][y + ky][c + kx];
                                        }
                                    }
                                }
                                sum.max(0.0)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        x = conv
            .iter()
            .map(|plane| {
                (0..plane.len() / 2)
                    .map(|y| {
                        (0..plane[0].len() / 2)
                            .map(|c| {
                                let window = [
                                    plane[2 * y][2 * c],
                                    plane[2 * y][2 * c + 1],
                                    plane[2 * y + 1][2 * c],
                                    plane[2 * y + 1][2 * c + 1],
                                ];
                                window.into_iter().fold(f64::NEG_INFINITY, f64::max)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
    }
    let flat: Vec<f64> = x.into_iter().flatten().flatten().collect();
    let (shape, w) = &tensors["8.weight"];
    let (_, b) = &tensors["8.bias"];
    (0..shape[0])
        .map(|o| {
            b[o] as f64
                + (0..shape[1])
                    .map(|j| w[o * shape[1] + j] as f64 * flat[j])
                    .sum::<f64>()
        })
        .collect()
}

#[test]
fn cnn_safetensors_are_pytorch_layout_predict_the_same_and_import_back_exactly() {
    let architecture = Architecture::cnn();
    let mlp = Mlp::new(architecture.clone());
    let mut parameters = mlp.initial_parameters(3);
    // Non-zero biases, so a bias mixed up with another tensor would show.
    for (index, value) in parameters.iter_mut().enumerate() {
        *value += (index % 7) as f32 * 0.01;
    }
    let model = Model::for_dataset(architecture, DatasetKind::Mnist, parameters);
    let bytes = export_bytes(&model).unwrap();
    let tensors = read_safetensors(&bytes);
    let shapes: Vec<(&str, Vec<usize>)> = tensors
        .iter()
        .map(|(name, (shape, _))| (name.as_str(), shape.clone()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("0.bias", vec![32]),
            ("0.weight", vec![32, 1, 3, 3]),
            ("3.bias", vec![64]),
            ("3.weight", vec![64, 32, 3, 3]),
            ("8.bias", vec![10]),
            ("8.weight", vec![10, 1600]),
        ]
    );
    let dataset = random_dataset(3, 8);
    let mut workspace = mlp.workspace(3);
    for (input, &pixel) in workspace.inputs.iter_mut().zip(&dataset.images) {
        *input = pixel as f32 / 255.0;
    }
    mlp.forward(&model.parameters, &mut workspace, 3, None);
    for row in 0..3 {
        let expected = pytorch_cnn_logits(&tensors, &workspace.inputs[row * 784..(row + 1) * 784]);
        for (ours, theirs) in workspace.logits(3, 10)[row * 10..(row + 1) * 10]
            .iter()
            .zip(&expected)
        {
            assert!(
                (*ours as f64 - theirs).abs() < 1e-4 * (1.0 + theirs.abs()),
                "image {row}: {ours} vs {theirs}"
            );
        }
    }
    let imported = import_bytes(&bytes, None).unwrap();
    assert_eq!(imported, model);
}

#[test]
fn the_default_mlp_trains_as_before_layer_stacks() {
    // The fixture's own command, run by today's binary: the same seed gives the same weights, up to
    // the summation order of the matrix kernels (the fixture was written with the gemm crate's
    // AVX-512 kernels; bit identity across kernels is not promised, agreement to rounding is).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/mlp-hidden8-written-before-layer-stacks.bin");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("again.bin");
    Command::new(BINARY)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--hidden", "8", "--epochs", "1", "--limit", "500", "--seed", "5",
        ])
        .args(["--threads", "1", "--progress", "none", "-o"])
        .arg(&output)
        .assert()
        .success();
    let before = Model::load(&fixture).unwrap();
    let now = Model::load(&output).unwrap();
    assert_eq!(now.parameters.len(), before.parameters.len());
    let worst = now
        .parameters
        .iter()
        .zip(&before.parameters)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest relative weight difference {worst}");
}

#[test]
fn bench_measures_the_cnn() {
    let work = support::Workdir::new(64);
    let output = succeeded(
        Command::new(BINARY)
            .current_dir(work.temp.path())
            .args([
                "bench",
                "--arch",
                "cnn",
                "--data-dir",
                "data",
                "--limit",
                "64",
            ])
            .args([
                "--epochs",
                "1",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--batch-sizes",
                "32",
            ])
            .args(["--threads", "1", "--json"]),
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["cases"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
}
