//! `export --format onnx`, checked without our own decoder: a protobuf wire-format walker written
//! here reads the file by the field numbers of onnx.proto, and a small ONNX interpreter on ndarray
//! (Flatten, Gemm, Relu, Softmax, by their operator specifications) runs the decoded graph on the
//! 10,000 MNIST test images. It must give the probabilities `predict` computes.

use std::collections::HashMap;
use std::path::Path;

use mnist_train::data::{load_split, DatasetKind, Split};
use mnist_train::model_file::Model;
use mnist_train::nn::Mlp;
use ndarray::{ArrayD, Axis, IxDyn};

use crate::support::mnist_train;
use crate::support::protobuf::{int, ints, messages, string, strings};

/// ModelProto.graph (7) → GraphProto; ValueInfoProto's shape as numbers or names.
fn value_info_shape(value_info: &[u8]) -> Vec<String> {
    let type_proto = messages(value_info, 2)[0];
    let tensor_type = messages(type_proto, 1)[0];
    assert_eq!(int(tensor_type, 1), Some(1), "elem_type FLOAT");
    let shape = messages(tensor_type, 2)[0];
    messages(shape, 1)
        .into_iter()
        .map(|dim| match int(dim, 1) {
            Some(size) => size.to_string(),
            None => string(dim, 2),
        })
        .collect()
}

struct Node {
    op_type: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attributes: HashMap<String, i64>,
}

struct DecodedModel {
    ir_version: i64,
    opset: i64,
    metadata: HashMap<String, String>,
    input_name: String,
    input_shape: Vec<String>,
    outputs: Vec<(String, Vec<String>)>,
    nodes: Vec<Node>,
    initializers: HashMap<String, ArrayD<f32>>,
}

fn decode(bytes: &[u8]) -> DecodedModel {
    let opsets = messages(bytes, 8);
    assert_eq!(opsets.len(), 1);
    assert_eq!(string(opsets[0], 1), "", "the default ai.onnx domain");
    let metadata = messages(bytes, 14)
        .into_iter()
        .map(|entry| (string(entry, 1), string(entry, 2)))
        .collect();
    let graph = messages(bytes, 7)[0];
    let nodes = messages(graph, 1)
        .into_iter()
        .map(|node| Node {
            op_type: string(node, 4),
            inputs: strings(node, 1),
            outputs: strings(node, 2),
            attributes: messages(node, 5)
                .into_iter()
                .map(|attribute| {
                    assert_eq!(int(attribute, 20), Some(2), "INT attributes only");
                    (string(attribute, 1), int(attribute, 3).unwrap_or(0))
                })
                .collect(),
        })
        .collect();
    let initializers = messages(graph, 5)
        .into_iter()
        .map(|tensor| {
            assert_eq!(int(tensor, 2), Some(1), "FLOAT data");
            let dims: Vec<usize> = ints(tensor, 1).iter().map(|&d| d as usize).collect();
            let values: Vec<f32> = messages(tensor, 9)[0]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let array = ArrayD::from_shape_vec(IxDyn(&dims), values).unwrap();
            (string(tensor, 8), array)
        })
        .collect();
    let inputs = messages(graph, 11);
    assert_eq!(inputs.len(), 1);
    DecodedModel {
        ir_version: int(bytes, 1).unwrap(),
        opset: int(opsets[0], 2).unwrap(),
        metadata,
        input_name: string(inputs[0], 1),
        input_shape: value_info_shape(inputs[0]),
        outputs: messages(graph, 12)
            .into_iter()
            .map(|output| (string(output, 1), value_info_shape(output)))
            .collect(),
        nodes,
        initializers,
    }
}

/// Runs the graph's nodes in order by the ONNX operator specifications (opset 13).
fn run_graph(model: &DecodedModel, input: ArrayD<f32>) -> HashMap<String, ArrayD<f32>> {
    let mut values = model.initializers.clone();
    values.insert(model.input_name.clone(), input);
    for node in &model.nodes {
        let x = &values[&node.inputs[0]];
        let attribute = |name: &str, default: i64| *node.attributes.get(name).unwrap_or(&default);
        let y = match node.op_type.as_str() {
            "Flatten" => {
                let axis = attribute("axis", 1) as usize;
                let outer: usize = x.shape()[..axis].iter().product();
                let inner: usize = x.shape()[axis..].iter().product();
                x.to_shape(IxDyn(&[outer, inner])).unwrap().to_owned()
            }
            "Gemm" => {
                // Y = alpha · A' · B' + beta · C (alpha = beta = 1 when absent).
                assert!(!node.attributes.contains_key("alpha"));
                let a = x.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
                let a = if attribute("transA", 0) == 1 {
                    a.reversed_axes()
                } else {
                    a
                };
                let b = values[&node.inputs[1]]
                    .clone()
                    .into_dimensionality::<ndarray::Ix2>()
                    .unwrap();
                let b = if attribute("transB", 0) == 1 {
                    b.reversed_axes()
                } else {
                    b
                };
                let c = &values[&node.inputs[2]];
                (a.dot(&b).into_dyn() + c).into_dyn()
            }
            "Relu" => x.mapv(|v| v.max(0.0)),
            "Softmax" => {
                let axis = Axis(attribute("axis", -1).rem_euclid(x.ndim() as i64) as usize);
                let max = x.map_axis(axis, |row| row.fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
                let exp = (x - &max.insert_axis(axis)).mapv(f32::exp);
                let sum = exp.sum_axis(axis).insert_axis(axis);
                exp / &sum
            }
            other => panic!("operator {other} is not expected in an MLP export"),
        };
        values.insert(node.outputs[0].clone(), y);
    }
    values
}

fn train_and_export(dir: &Path, format_args: &[&str], out_name: &str) -> (Model, Vec<u8>) {
    let model_path = dir.join("model.bin");
    if !model_path.exists() {
        mnist_train()
            .args(["--limit", "2000", "--epochs", "1", "--quiet", "--output"])
            .arg(&model_path)
            .assert()
            .success();
    }
    let out = dir.join(out_name);
    mnist_train()
        .args(["export", "--model"])
        .arg(&model_path)
        .args(format_args)
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("onnxruntime.InferenceSession"));
    (
        Model::load(&model_path).unwrap(),
        std::fs::read(out).unwrap(),
    )
}

#[test]
fn onnx_export_runs_to_the_same_probabilities_as_predict_on_all_test_images() {
    let dir = tempfile::tempdir().unwrap();
    let (model, bytes) = train_and_export(dir.path(), &["--format", "onnx"], "model.onnx");
    let decoded = decode(&bytes);
    assert!(decoded.opset >= 13, "opset {}", decoded.opset);
    assert!(decoded.ir_version >= 7);
    assert_eq!(decoded.input_shape, ["N", "1", "28", "28"]);
    let outputs: Vec<&str> = decoded.outputs.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(outputs, ["probabilities", "logits"]);
    assert_eq!(decoded.outputs[0].1, ["N", "10"]);
    let ops: Vec<&str> = decoded.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Flatten", "Gemm", "Relu", "Gemm", "Softmax"]);
    assert!(decoded.nodes[1..4]
        .iter()
        .filter(|n| n.op_type == "Gemm")
        .all(|n| n.attributes["transB"] == 1));
    assert_eq!(decoded.initializers["1.weight"].shape(), [128, 784]);
    assert_eq!(decoded.metadata["dataset"], "mnist");
    assert!(decoded.metadata["producer"].starts_with("mnist-train "));
    assert_eq!(decoded.metadata["version"], env!("CARGO_PKG_VERSION"));
    let classes: Vec<String> = serde_json::from_str(&decoded.metadata["class_names"]).unwrap();
    assert_eq!(classes, DatasetKind::Mnist.class_names());

    let test = load_split(Path::new("data"), Split::Test, DatasetKind::Mnist).unwrap();
    let count = test.len();
    assert_eq!(count, 10_000);
    let pixels: Vec<f32> = test.images.iter().map(|&p| p as f32 / 255.0).collect();
    let input = ArrayD::from_shape_vec(IxDyn(&[count, 1, 28, 28]), pixels).unwrap();
    let results = run_graph(&decoded, input);
    let onnx_probabilities = &results["probabilities"];
    let ours = mnist_train::predict::probabilities(
        &Mlp::new(model.architecture.clone()),
        &model.parameters,
        model.normalization,
        &test.images,
    );
    let mut worst = 0.0f32;
    for (index, row) in ours.iter().enumerate() {
        let theirs = onnx_probabilities.index_axis(Axis(0), index);
        for (a, b) in row.iter().zip(theirs.iter()) {
            worst = worst.max((a - b).abs());
        }
        let argmax = |values: Vec<f32>| {
            (0..values.len())
                .max_by(|&i, &j| values[i].total_cmp(&values[j]))
                .unwrap()
        };
        assert_eq!(
            argmax(row.clone()),
            argmax(theirs.iter().copied().collect()),
            "image {index}"
        );
    }
    assert!(worst < 1e-5, "largest probability difference {worst}");
    assert_eq!(results["logits"].shape(), [count, 10]);
}

#[test]
fn an_onnx_file_name_selects_the_onnx_format() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = train_and_export(dir.path(), &[], "by-name.onnx");
    assert_eq!(
        decode(&bytes).nodes.last().map(|n| n.op_type.clone()),
        Some("Softmax".to_string())
    );
}
