//! ONNX export: the model as a standard ONNX graph that onnxruntime (or any ONNX runtime) runs.
//!
//! The graph follows what `torch.onnx.export` emits for the documented `nn.Sequential`:
//!
//! ```text
//! input  float32 [N, 1, 28, 28]   pixels already scaled as in training: pixel / 255 (0..1)
//!   → Flatten(axis 1)             [N, 784]
//!   → Gemm(1.weight, 1.bias, transB 1) → Relu      (per hidden layer; Dropout is the identity)
//!   → Gemm(4.weight, 4.bias, transB 1) = logits    [N, 10]
//!   → Softmax(axis 1) = probabilities              [N, 10]
//! ```
//! Outputs: `probabilities` first, then `logits`. Initializers carry the safetensors keys
//! (`1.weight` [out, in], `1.bias` [out]). The scaling is not in the graph, as with PyTorch's
//! `ToTensor()`; the model's `normalization` (scale, offset) is recorded in `metadata_props`
//! beside `producer`, `version`, `dataset`, `class_names`, `architecture` and, for a privately
//! trained model, `privacy` (its (ε, δ) guarantee as JSON).
//!
//! The protobuf messages are the subset of `onnx.proto` (ONNX IR version 7, opset 13) that the
//! graph needs, declared with `prost` derives and the field numbers of the official schema.

use std::path::Path;

use crate::error::Result;
use crate::interop::pytorch_weight;
use crate::model_file::{write_atomic, Model};
use crate::nn::layers::{input_shape, layer_list, LayerKind};

/// The opset the graph is written for; every operator used exists unchanged since 13.
pub const OPSET_VERSION: i64 = 13;
/// ONNX IR version 7 is the first to support opset 13.
pub const IR_VERSION: i64 = 7;
/// The graph's input and output names.
pub const INPUT_NAME: &str = "input";
pub const PROBABILITIES_NAME: &str = "probabilities";
pub const LOGITS_NAME: &str = "logits";

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;
/// `AttributeProto.AttributeType.INT`.
const ATTRIBUTE_INT: i32 = 2;

/// The messages of onnx.proto that the export writes (field numbers as in the schema).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(string, tag = "4")]
        pub domain: String,
        #[prost(int64, tag = "5")]
        pub model_version: i64,
        #[prost(string, tag = "6")]
        pub doc_string: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(string, tag = "10")]
        pub doc_string: String,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int64, tag = "3")]
        pub i: i64,
        /// `AttributeProto.AttributeType`.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        /// `TensorProto.DataType`.
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(string, tag = "8")]
        pub name: String,
        /// Little-endian values, row-major.
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    /// `TypeProto` with only the `tensor_type` member of its `value` oneof.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorTypeProto>,
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`: a fixed size or a named (batch) dimension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
}

use proto::*;

/// A float32 tensor type whose first dimension is the batch `N`.
fn batched_tensor(name: &str, shape: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        dim_value: None,
        dim_param: Some("N".to_string()),
    }];
    dim.extend(shape.iter().map(|&size| Dimension {
        dim_value: Some(size as i64),
        dim_param: None,
    }));
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn float_tensor(name: String, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        name,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        i: value,
        r#type: ATTRIBUTE_INT,
    }
}

fn node(
    op_type: &str,
    name: String,
    inputs: Vec<String>,
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output.to_string()],
        name,
        op_type: op_type.to_string(),
        attribute,
    }
}

/// The ONNX model of `model`, built by walking its layer list.
pub fn to_onnx(model: &Model) -> ModelProto {
    let layers = layer_list(&model.architecture);
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut current = INPUT_NAME.to_string();
    let last_dense = layers
        .iter()
        .rposition(|layer| matches!(layer.kind, LayerKind::Dense { .. }));
    for (index, layer) in layers.iter().enumerate() {
        let output = if Some(index) == last_dense {
            LOGITS_NAME.to_string()
        } else {
            format!("{index}.output")
        };
        let name = format!("{index}.{}", layer.type_name());
        match &layer.kind {
            LayerKind::Flatten => nodes.push(node(
                "Flatten",
                name,
                vec![current.clone()],
                &output,
                vec![int_attribute("axis", 1)],
            )),
            LayerKind::Dense {
                inputs,
                outputs,
                weights,
                bias,
            } => {
                let weight_name = format!("{index}.weight");
                let bias_name = format!("{index}.bias");
                let weight = pytorch_weight(&model.parameters[weights.clone()], *inputs, *outputs);
                initializers.push(float_tensor(
                    weight_name.clone(),
                    &[*outputs, *inputs],
                    &weight,
                ));
                initializers.push(float_tensor(
                    bias_name.clone(),
                    &[*outputs],
                    &model.parameters[bias.clone()],
                ));
                nodes.push(node(
                    "Gemm",
                    name,
                    vec![current.clone(), weight_name, bias_name],
                    &output,
                    vec![int_attribute("transB", 1)],
                ));
            }
            LayerKind::Relu => {
                nodes.push(node("Relu", name, vec![current.clone()], &output, vec![]))
            }
            // The identity at inference: no node, the next layer reads the same tensor.
            LayerKind::Dropout { .. } => continue,
            // `export` refuses layer stacks before getting here (no Conv/MaxPool nodes yet).
            LayerKind::Conv2d { .. } | LayerKind::MaxPool2d { .. } => continue,
        }
        current = output;
    }
    nodes.push(node(
        "Softmax",
        "Softmax".to_string(),
        vec![current],
        PROBABILITIES_NAME,
        vec![int_attribute("axis", 1)],
    ));
    let classes = model.architecture.outputs;
    let version = env!("CARGO_PKG_VERSION");
    let metadata = [
        ("producer", format!("mnist-train {version}")),
        ("version", version.to_string()),
        ("dataset", model.dataset.name().to_string()),
        ("class_names", to_json(&model.class_names)),
        ("architecture", to_json(&model.architecture)),
        ("normalization", to_json(&model.normalization)),
        (
            "input",
            format!(
                "float32 [N, {}]: pixel * {} + {} (not inside the graph)",
                input_shape(&model.architecture)
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                model.normalization.scale,
                model.normalization.offset
            ),
        ),
    ];
    let privacy = model
        .privacy
        .as_ref()
        .map(|guarantee| ("privacy", to_json(guarantee)));
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "mnist-train".to_string(),
        producer_version: version.to_string(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!(
            "{} classifier ({}) exported by mnist-train",
            model.dataset,
            model.architecture.widths_label()
        ),
        graph: Some(GraphProto {
            node: nodes,
            name: "mnist_train".to_string(),
            initializer: initializers,
            doc_string: String::new(),
            input: vec![batched_tensor(
                INPUT_NAME,
                &input_shape(&model.architecture),
            )],
            output: vec![
                batched_tensor(PROBABILITIES_NAME, &[classes]),
                batched_tensor(LOGITS_NAME, &[classes]),
            ],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET_VERSION,
        }],
        metadata_props: metadata
            .into_iter()
            .chain(privacy)
            .map(|(key, value)| StringStringEntryProto {
                key: key.to_string(),
                value,
            })
            .collect(),
    }
}

/// Our metadata values as JSON strings; serializing these plain types cannot fail.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The `.onnx` file's bytes.
pub fn export_bytes(model: &Model) -> Vec<u8> {
    prost::Message::encode_to_vec(&to_onnx(model))
}

/// Writes `model` as an ONNX file to `path`, atomically.
pub fn export(model: &Model, path: &Path) -> Result<()> {
    if model.architecture.layers.is_some() {
        return Err(crate::error::Error::model(
            path,
            "ONNX export supports the MLP only so far; use --format safetensors for a layer stack",
        ));
    }
    write_atomic(path, &export_bytes(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn model(hidden: Vec<usize>) -> Model {
        crate::interop::test_model(hidden, 5, crate::data::DatasetKind::Mnist)
    }

    #[test]
    fn the_graph_is_flatten_gemm_relu_gemm_softmax() {
        let onnx = to_onnx(&model(vec![128]));
        let graph = onnx.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Flatten", "Gemm", "Relu", "Gemm", "Softmax"]);
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["1.weight", "1.bias", "4.weight", "4.bias"]);
        assert_eq!(graph.initializer[0].dims, [128, 784]);
        assert_eq!(graph.initializer[0].raw_data.len(), 128 * 784 * 4);
        let deeper = to_onnx(&model(vec![64, 32])).graph.unwrap();
        // Flatten, (Gemm, Relu) twice, Gemm, Softmax.
        assert_eq!(deeper.node.len(), 7);
    }

    #[test]
    fn the_bytes_decode_back_to_the_same_message() {
        let original = to_onnx(&model(vec![16]));
        let bytes = original.encode_to_vec();
        assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), original);
    }
}
