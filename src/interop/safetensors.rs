//! Safetensors export and import, laid out for PyTorch.
//!
//! The tutorial network in PyTorch is
//! `nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))`,
//! whose `state_dict` keys are the module's index in the Sequential and the parameter name. Each
//! hidden layer adds three modules (Linear, ReLU, Dropout), so dense layer `k` is module `1 + 3k`:
//!
//! | our tensor (flat buffer)   | safetensors key | shape        | conversion  |
//! |----------------------------|-----------------|--------------|-------------|
//! | `dense_0.weight` [784,128] | `1.weight`      | [128, 784]   | transposed  |
//! | `dense_0.bias` [128]       | `1.bias`        | [128]        | as is       |
//! | `dense_1.weight` [128,10]  | `4.weight`      | [10, 128]    | transposed  |
//! | `dense_1.bias` [10]        | `4.bias`        | [10]         | as is       |
//!
//! (`--hidden 256,128` continues with `7.weight`, …). PyTorch's `nn.Linear` stores its weight as
//! `[out_features, in_features]` and computes `x · Wᵀ + b`; we store `[in, out]` and compute
//! `x · W + b`, hence the transpose. All tensors are F32, little-endian.
//!
//! A layer stack (`--arch cnn`, `--layers`) is exported as the `nn.Sequential` with one module
//! per layer (Conv2d, ReLU, MaxPool2d, Flatten, Dropout, Linear), so tensor keys are the layer's
//! position in the list: for the CNN `0.weight` [32, 1, 3, 3], `3.weight` [64, 32, 3, 3] and
//! `8.weight` [10, 1600]. Our kernels are `[k, k, in, out]` and our activations channels-last,
//! PyTorch's `[out, in, k, k]` and channels-first, so convolution kernels are permuted, and the
//! first Linear after a Flatten has its input columns reordered from (y, x, c) to (c, y, x).
//! [`stack_layout`] states that mapping once; export gathers through it and import scatters back.
//!
//! `__metadata__` (string values, as the format requires) records `format: "pt"`, `producer`,
//! `architecture` (our JSON), `normalization` (JSON), `dataset`, `class_names` (JSON array) and
//! `pytorch_module` (the `nn.Sequential(...)` expression that loads it). Import uses them when
//! present; a safetensors file written by PyTorch without them is read from its `N.weight`/`N.bias`
//! keys alone (hidden widths from the shapes, ReLU, dropout 0.2, MNIST classes, pixels / 255).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::interop::pytorch_weight;
use crate::model_file::{validate_architecture, write_atomic, Model, Normalization};
use crate::nn::layer_spec::Shape;
use crate::nn::sequential::Layer;
use crate::nn::Architecture;

/// Files larger than this are refused before reading (far above any MLP we train).
const MAX_FILE_LEN: u64 = 4 << 30;

/// The Sequential index of dense layer `layer`: Flatten is 0, each hidden layer is Linear, ReLU, Dropout.
pub fn sequential_index(layer: usize) -> usize {
    1 + 3 * layer
}

/// The PyTorch expression whose `load_state_dict` accepts the exported tensors.
pub fn pytorch_module(architecture: &Architecture) -> String {
    if let Some(Ok(stack)) = architecture.sequential() {
        let modules: Vec<String> = stack
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv(conv) => format!(
                    "nn.Conv2d({}, {}, {})",
                    conv.in_channels, conv.filters, conv.kernel
                ),
                Layer::Relu => "nn.ReLU()".to_string(),
                Layer::MaxPool(pool) => format!("nn.MaxPool2d({})", pool.size),
                Layer::Flatten => "nn.Flatten()".to_string(),
                Layer::Dropout { rate } => format!("nn.Dropout({rate})"),
                Layer::Dense(dense) => format!("nn.Linear({}, {})", dense.inputs, dense.outputs),
            })
            .collect();
        return format!("nn.Sequential({})", modules.join(", "));
    }
    let widths = architecture.widths();
    let mut modules = vec!["nn.Flatten()".to_string()];
    for (index, pair) in widths.windows(2).enumerate() {
        modules.push(format!("nn.Linear({}, {})", pair[0], pair[1]));
        if index + 2 < widths.len() {
            modules.push("nn.ReLU()".to_string());
            modules.push(format!("nn.Dropout({})", architecture.dropout));
        }
    }
    format!("nn.Sequential({})", modules.join(", "))
}

/// One exported tensor of a layer stack: its key, its PyTorch shape, and for each of its values
/// (in PyTorch's row-major order) the index of that value in our flat parameter buffer.
pub struct StackTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub source: Vec<usize>,
}

/// The PyTorch layout of a stack's parameters (see the module documentation).
pub fn stack_layout(architecture: &Architecture) -> std::result::Result<Vec<StackTensor>, String> {
    let stack = architecture
        .sequential()
        .ok_or("the architecture is not a layer stack")??;
    let mut tensors = Vec::new();
    for (index, layer) in stack.layers.iter().enumerate() {
        let (shape, source, bias) = match layer {
            Layer::Conv(conv) => {
                let (k, channels, filters) = (conv.kernel, conv.in_channels, conv.filters);
                let mut source = Vec::with_capacity(conv.weights.len());
                // PyTorch [out, in, ky, kx] ← ours [ky, kx, in, out].
                for out in 0..filters {
                    for channel in 0..channels {
                        for ky in 0..k {
                            for kx in 0..k {
                                source.push(
                                    conv.weights.start
                                        + ((ky * k + kx) * channels + channel) * filters
                                        + out,
                                );
                            }
                        }
                    }
                }
                (vec![filters, channels, k, k], source, conv.bias.clone())
            }
            Layer::Dense(dense) => {
                // Input column j in PyTorch's flatten order → our row (channels-last).
                let row_of: Box<dyn Fn(usize) -> usize> =
                    match flattened_image(&stack.layers, &stack.shapes, index) {
                        Some((height, width, channels)) => Box::new(move |j| {
                            let (channel, pixel) = (j / (height * width), j % (height * width));
                            pixel * channels + channel
                        }),
                        None => Box::new(|j| j),
                    };
                let mut source = Vec::with_capacity(dense.weights.len());
                // PyTorch [out, in] ← ours [in, out].
                for out in 0..dense.outputs {
                    for j in 0..dense.inputs {
                        source.push(dense.weights.start + row_of(j) * dense.outputs + out);
                    }
                }
                (
                    vec![dense.outputs, dense.inputs],
                    source,
                    dense.bias.clone(),
                )
            }
            _ => continue,
        };
        tensors.push(StackTensor {
            name: format!("{index}.weight"),
            shape,
            source,
        });
        tensors.push(StackTensor {
            name: format!("{index}.bias"),
            shape: vec![bias.len()],
            source: bias.collect(),
        });
    }
    Ok(tensors)
}

/// The image (height, width, channels) flattened into the input of layer `index`, if its input
/// comes from a Flatten of an image through only element-wise layers.
fn flattened_image(
    layers: &[Layer],
    shapes: &[(Shape, Shape)],
    index: usize,
) -> Option<(usize, usize, usize)> {
    for below in (0..index).rev() {
        match (&layers[below], shapes[below].0) {
            (Layer::Relu | Layer::Dropout { .. }, _) => continue,
            (
                Layer::Flatten,
                Shape::Image {
                    height,
                    width,
                    channels,
                },
            ) => return Some((height, width, channels)),
            _ => return None,
        }
    }
    None
}

/// A stack's tensors in PyTorch's layout: (key, shape, little-endian F32 bytes).
/// An exported tensor: key, PyTorch shape, little-endian F32 bytes.
type ExportedTensor = (String, Vec<usize>, Vec<u8>);

fn export_stack(model: &Model) -> Result<Vec<ExportedTensor>> {
    let layout = stack_layout(&model.architecture)
        .map_err(|message| Error::model("<safetensors export>", message))?;
    Ok(layout
        .into_iter()
        .map(|tensor| {
            let bytes = tensor
                .source
                .iter()
                .flat_map(|&at| model.parameters[at].to_le_bytes())
                .collect();
            (tensor.name, tensor.shape, bytes)
        })
        .collect())
}

/// A stack's tensors back into our flat buffer, with the architecture from the metadata.
fn import_stack(
    tensors: &SafeTensors<'_>,
    info: &HashMap<String, String>,
) -> std::result::Result<(Architecture, Vec<f32>), String> {
    let text = info
        .get("architecture")
        .ok_or("architecture metadata is missing")?;
    let architecture = serde_json::from_str::<Architecture>(text)
        .map_err(|error| format!("invalid architecture metadata: {error}"))?;
    validate_architecture(Path::new(""), &architecture)
        .map_err(|error| error.to_string().trim_start_matches(": ").to_string())?;
    let layout = stack_layout(&architecture)?;
    if tensors.len() != layout.len() {
        return Err(format!(
            "holds {} tensors but the architecture {} has {}",
            tensors.len(),
            architecture.widths_label(),
            layout.len()
        ));
    }
    let mut parameters = vec![0.0; architecture.parameter_count()];
    for tensor in layout {
        let (values, shape) = f32_tensor(tensors, &tensor.name, tensor.shape.len())?;
        if shape != tensor.shape {
            return Err(format!(
                "tensor {} has shape {shape:?} but the architecture needs {:?}",
                tensor.name, tensor.shape
            ));
        }
        for (&value, &at) in values.iter().zip(&tensor.source) {
            parameters[at] = value;
        }
    }
    Ok((architecture, parameters))
}

/// The MLP's tensors in PyTorch's layout: (key, shape, little-endian F32 bytes).
fn export_mlp(model: &Model) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (layer, dense) in model.architecture.dense_layouts().iter().enumerate() {
        let index = sequential_index(layer);
        let transposed: Vec<u8> = pytorch_weight(
            &model.parameters[dense.weights.clone()],
            dense.inputs,
            dense.outputs,
        )
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
        tensors.push((
            format!("{index}.weight"),
            vec![dense.outputs, dense.inputs],
            transposed,
        ));
        let bias: Vec<u8> = model.parameters[dense.bias.clone()]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        tensors.push((format!("{index}.bias"), vec![dense.outputs], bias));
    }
    tensors
}

/// The safetensors bytes of `model`.
pub fn export_bytes(model: &Model) -> Result<Vec<u8>> {
    let tensors = if model.architecture.layers.is_some() {
        export_stack(model)?
    } else {
        export_mlp(model)
    };
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|error| Error::model(name, error.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "producer".to_string(),
            format!("mnist-train {}", env!("CARGO_PKG_VERSION")),
        ),
        ("architecture".to_string(), to_json(&model.architecture)),
        ("normalization".to_string(), to_json(&model.normalization)),
        ("dataset".to_string(), model.dataset.name().to_string()),
        ("class_names".to_string(), to_json(&model.class_names)),
        (
            "pytorch_module".to_string(),
            pytorch_module(&model.architecture),
        ),
    ]);
    if let Some(privacy) = &model.privacy {
        metadata.insert("privacy".to_string(), to_json(privacy));
    }
    safetensors::serialize(views, Some(metadata))
        .map_err(|error| Error::model("<safetensors export>", error.to_string()))
}

/// Writes `model` as safetensors to `path`, atomically.
pub fn export(model: &Model, path: &Path) -> Result<()> {
    write_atomic(path, &export_bytes(model)?)
}

/// Our metadata values as JSON strings; serializing these plain types cannot fail.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Reads a safetensors file into a [`Model`]. `dataset` overrides the dataset recorded in the
/// file (needed only for files without our metadata that hold Fashion-MNIST weights).
pub fn import(path: &Path, dataset: Option<DatasetKind>) -> Result<Model> {
    let metadata = std::fs::metadata(path).map_err(|error| Error::io(path, error))?;
    if metadata.is_dir() {
        return Err(Error::model(
            path,
            "is a directory, expected a safetensors file",
        ));
    }
    if metadata.len() > MAX_FILE_LEN {
        return Err(Error::model(path, "is too large to be a model file"));
    }
    let bytes = std::fs::read(path).map_err(|error| Error::io(path, error))?;
    import_bytes(&bytes, dataset).map_err(|message| Error::model(path, message))
}

/// Parses safetensors bytes; the error is a message without the file name.
pub fn import_bytes(
    bytes: &[u8],
    dataset: Option<DatasetKind>,
) -> std::result::Result<Model, String> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|error| format!("is not a valid safetensors file: {error}"))?;
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|error| format!("is not a valid safetensors file: {error}"))?;
    let info = header.metadata().clone().unwrap_or_default();
    let stack = match info.get("architecture") {
        Some(text) => serde_json::from_str::<Architecture>(text)
            .map_err(|error| format!("invalid architecture metadata: {error}"))?
            .layers
            .is_some(),
        None => false,
    };
    let (architecture, parameters) = if stack {
        import_stack(&tensors, &info)?
    } else {
        import_mlp(&tensors, &info)?
    };
    let normalization = match info.get("normalization") {
        Some(text) => serde_json::from_str::<Normalization>(text)
            .map_err(|error| format!("invalid normalization metadata: {error}"))?,
        None => Normalization::default(),
    };
    // A file without metadata (PyTorch's) is for MNIST unless told otherwise; a name we do not
    // know is refused rather than read as MNIST.
    let dataset_kind = match (dataset, info.get("dataset")) {
        (Some(kind), _) => kind,
        (None, Some(name)) => name
            .parse::<DatasetKind>()
            .map_err(|error| format!("invalid dataset metadata: {error}"))?,
        (None, None) => DatasetKind::Mnist,
    };
    let class_names = match (dataset, info.get("class_names")) {
        (None, Some(text)) => serde_json::from_str::<Vec<String>>(text)
            .map_err(|error| format!("invalid class_names metadata: {error}"))?,
        _ => dataset_kind.class_names(),
    };
    if class_names.len() != architecture.outputs {
        return Err(format!(
            "has {} outputs but {} class names",
            architecture.outputs,
            class_names.len()
        ));
    }
    Ok(Model {
        architecture,
        normalization,
        dataset: dataset_kind,
        class_names,
        parameters,
        // A file of ours carries the guarantee along; anything unreadable there is no guarantee.
        privacy: info
            .get("privacy")
            .and_then(|text| serde_json::from_str(text).ok()),
    })
}

/// The MLP's tensors (`N.weight` [out, in], `N.bias` [out]) back in our layout, with the
/// architecture from the metadata or, without it, from the shapes.
fn import_mlp(
    tensors: &SafeTensors<'_>,
    info: &HashMap<String, String>,
) -> std::result::Result<(Architecture, Vec<f32>), String> {
    // The dense layers, in module order: `N.weight` [out, in] and `N.bias` [out].
    let mut indices: Vec<usize> = Vec::new();
    for name in tensors.names() {
        let (prefix, suffix) = name
            .rsplit_once('.')
            .ok_or_else(|| format!("unexpected tensor {name:?} (expected N.weight / N.bias)"))?;
        let index: usize = prefix
            .parse()
            .map_err(|_| format!("unexpected tensor {name:?} (expected N.weight / N.bias)"))?;
        match suffix {
            "weight" => indices.push(index),
            "bias" => {}
            _ => {
                return Err(format!(
                    "unexpected tensor {name:?} (expected N.weight / N.bias)"
                ))
            }
        }
    }
    indices.sort_unstable();
    if indices.is_empty() {
        return Err("holds no N.weight tensors".to_string());
    }
    if indices.len() > 65 {
        return Err("has more than 64 hidden layers".to_string());
    }
    let mut layers = Vec::new();
    for &index in &indices {
        let weight = f32_tensor(tensors, &format!("{index}.weight"), 2)?;
        let bias = f32_tensor(tensors, &format!("{index}.bias"), 1)?;
        if bias.1[0] != weight.1[0] {
            return Err(format!(
                "{index}.bias has {} values but {index}.weight has {} outputs",
                bias.1[0], weight.1[0]
            ));
        }
        layers.push((weight, bias));
    }
    for pair in layers.windows(2) {
        let (out_features, next_in) = (pair[0].0 .1[0], pair[1].0 .1[1]);
        if out_features != next_in {
            return Err(format!(
                "layer sizes do not chain: a layer with {out_features} outputs feeds one with {next_in} inputs"
            ));
        }
    }
    let widths: Vec<usize> = std::iter::once(layers[0].0 .1[1])
        .chain(layers.iter().map(|layer| layer.0 .1[0]))
        .collect();
    let architecture = match info.get("architecture") {
        Some(text) => serde_json::from_str::<Architecture>(text)
            .map_err(|error| format!("invalid architecture metadata: {error}"))?,
        None => Architecture {
            inputs: widths[0],
            hidden: widths[1..widths.len() - 1].to_vec(),
            outputs: widths[widths.len() - 1],
            ..Architecture::tutorial()
        },
    };
    validate_architecture(Path::new(""), &architecture)
        .map_err(|error| error.to_string().trim_start_matches(": ").to_string())?;
    if architecture.widths() != widths {
        return Err(format!(
            "architecture metadata says layers {:?} but the tensors have {:?}",
            architecture.widths(),
            widths
        ));
    }
    // Back to our layout: [out, in] → [in, out], then the bias.
    let mut parameters = Vec::with_capacity(architecture.parameter_count());
    for ((weight, shape), (bias, _)) in &layers {
        let (outputs, inputs) = (shape[0], shape[1]);
        for input in 0..inputs {
            for output in 0..outputs {
                parameters.push(weight[output * inputs + input]);
            }
        }
        parameters.extend_from_slice(bias);
    }
    Ok((architecture, parameters))
}

/// The values and shape of tensor `name`, which must be F32 of rank `rank`.
fn f32_tensor(
    tensors: &SafeTensors<'_>,
    name: &str,
    rank: usize,
) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
    let view = tensors
        .tensor(name)
        .map_err(|_| format!("tensor {name} is missing"))?;
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name} has dtype {:?}; only F32 is supported",
            view.dtype()
        ));
    }
    if view.shape().len() != rank || view.shape().iter().any(|&d| d == 0 || d > 1 << 16) {
        return Err(format!(
            "tensor {name} has shape {:?}, expected {rank} dimensions of 1 to 65536",
            view.shape()
        ));
    }
    let values = view
        .data()
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    Ok((values, view.shape().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(hidden: Vec<usize>) -> Model {
        crate::interop::test_model(hidden, 9, DatasetKind::Fashion)
    }

    #[test]
    fn export_then_import_round_trips_exactly() {
        for hidden in [vec![128], vec![64, 32]] {
            let original = model(hidden);
            let bytes = export_bytes(&original).unwrap();
            let back = import_bytes(&bytes, None).unwrap();
            assert_eq!(back, original);
        }
    }

    #[test]
    fn sequential_indices_follow_linear_relu_dropout() {
        assert_eq!((0..3).map(sequential_index).collect::<Vec<_>>(), [1, 4, 7]);
        let architecture = Architecture {
            hidden: vec![256, 128],
            ..Architecture::tutorial()
        };
        assert_eq!(
            pytorch_module(&architecture),
            "nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), \
             nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))"
        );
    }

    #[test]
    fn files_without_our_metadata_are_inferred_from_the_tensors() {
        // What `safetensors.torch.save_file(model.state_dict(), ...)` writes: keys and shapes only.
        let original = model(vec![32]);
        let w1: Vec<u8> = vec![0; 32 * 784 * 4];
        let b1: Vec<u8> = vec![0; 32 * 4];
        let w2: Vec<u8> = vec![0; 10 * 32 * 4];
        let b2: Vec<u8> = vec![0; 10 * 4];
        let views = vec![
            (
                "1.weight",
                TensorView::new(Dtype::F32, vec![32, 784], &w1).unwrap(),
            ),
            (
                "1.bias",
                TensorView::new(Dtype::F32, vec![32], &b1).unwrap(),
            ),
            (
                "4.weight",
                TensorView::new(Dtype::F32, vec![10, 32], &w2).unwrap(),
            ),
            (
                "4.bias",
                TensorView::new(Dtype::F32, vec![10], &b2).unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        let imported = import_bytes(&bytes, None).unwrap();
        assert_eq!(imported.architecture.widths(), [784, 32, 10]);
        assert_eq!(imported.dataset, DatasetKind::Mnist);
        assert_eq!(imported.parameters.len(), original.parameters.len());
        let fashion = import_bytes(&bytes, Some(DatasetKind::Fashion)).unwrap();
        assert_eq!(fashion.class_names[9], "Ankle boot");
    }

    #[test]
    fn an_unknown_dataset_in_the_metadata_is_refused_not_read_as_mnist() {
        let bytes = export_bytes(&model(vec![16])).unwrap();
        // Same length, so the header's length prefix stays right.
        let (from, to) = (br#""dataset":"fashion""#, br#""dataset":"kuzushi""#);
        let at = bytes
            .windows(from.len())
            .position(|window| window == from)
            .expect("the export records the dataset");
        let mut edited = bytes.clone();
        edited[at..at + to.len()].copy_from_slice(to);
        let message = import_bytes(&edited, None).unwrap_err();
        assert!(
            message.contains(r#"unknown dataset "kuzushi""#),
            "{message}"
        );
        // Saying which dataset the weights are for still works.
        assert!(import_bytes(&edited, Some(DatasetKind::Mnist)).is_ok());
    }

    #[test]
    fn inconsistent_files_are_refused_with_a_reason() {
        let w1 = vec![0u8; 4 * 8 * 4];
        let b_wrong = vec![0u8; 5 * 4];
        let views = vec![
            (
                "1.weight",
                TensorView::new(Dtype::F32, vec![4, 8], &w1).unwrap(),
            ),
            (
                "1.bias",
                TensorView::new(Dtype::F32, vec![5], &b_wrong).unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        assert!(import_bytes(&bytes, None).unwrap_err().contains("1.bias"));
        let half = vec![0u8; 4 * 2];
        let views = vec![(
            "1.weight",
            TensorView::new(Dtype::F16, vec![2, 2], &half).unwrap(),
        )];
        let bytes = safetensors::serialize(views, None).unwrap();
        assert!(import_bytes(&bytes, None).unwrap_err().contains("F32"));
        assert!(import_bytes(b"garbage", None)
            .unwrap_err()
            .contains("safetensors"));
        let mut truncated = export_bytes(&model(vec![16])).unwrap();
        truncated.truncate(truncated.len() - 10);
        assert!(import_bytes(&truncated, None).is_err());
    }
}
