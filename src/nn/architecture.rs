//! The network's shape, and how its parameters are laid out in one flat buffer.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::nn::dense::DenseLayout;
use crate::nn::layer_spec::{cnn_layers, format_layers, LayerSpec, Shape};
use crate::nn::sequential::{Layer, Sequential};

/// The multilayer perceptron: `inputs → (Dense → ReLU → Dropout) per hidden layer → Dense → softmax`,
/// or, when `layers` is set (`--layers`, `--arch cnn`), that sequential stack instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Pixels per image (784 for 28×28).
    pub inputs: usize,
    /// Width of each hidden layer, e.g. `[128]`.
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub outputs: usize,
    /// Activation after each hidden layer; only `"relu"` exists today.
    pub activation: String,
    /// Dropout rate after each hidden activation (0 disables it).
    pub dropout: f32,
    /// A general layer stack; when present it is the network and `hidden`/`dropout` are unused.
    /// Absent from MLP model files and checkpoints, which therefore read and write as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
}

impl Architecture {
    /// The Keras tutorial's network: 784 → 128 (ReLU, dropout 0.2) → 10.
    pub fn tutorial() -> Self {
        Architecture {
            inputs: 784,
            hidden: vec![128],
            outputs: 10,
            activation: "relu".to_string(),
            dropout: 0.2,
            layers: None,
        }
    }

    /// A sequential stack on 28×28 images with 10 classes (`--layers`).
    pub fn stack(layers: Vec<LayerSpec>) -> Self {
        Architecture {
            hidden: Vec::new(),
            dropout: 0.0,
            layers: Some(layers),
            ..Architecture::tutorial()
        }
    }

    /// Keras' `mnist_convnet` (`--arch cnn`): 34,826 parameters.
    pub fn cnn() -> Self {
        Architecture::stack(cnn_layers())
    }

    /// One example's shape: a square single-channel image when the input count is a square.
    pub fn input_shape(&self) -> Shape {
        let side = (self.inputs as f64).sqrt().round() as usize;
        if side * side == self.inputs {
            Shape::Image {
                height: side,
                width: side,
                channels: 1,
            }
        } else {
            Shape::Flat(self.inputs)
        }
    }

    /// The planned stack, if this is one; the error names the layer that does not fit.
    pub fn sequential(&self) -> Option<Result<Sequential, String>> {
        self.layers
            .as_ref()
            .map(|layers| Sequential::new(layers, self.input_shape(), self.outputs))
    }

    /// Widths of every layer boundary: `[inputs, hidden..., outputs]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths = vec![self.inputs];
        widths.extend(&self.hidden);
        widths.push(self.outputs);
        widths
    }

    /// The widths joined for people: `784-128-10` (a stack shows its layer list).
    pub fn widths_label(&self) -> String {
        if let Some(layers) = &self.layers {
            return format_layers(layers);
        }
        let widths: Vec<String> = self.widths().iter().map(|w| w.to_string()).collect();
        widths.join("-")
    }

    /// Where each dense layer's weights and bias live in the flat parameter buffer.
    pub fn dense_layouts(&self) -> Vec<DenseLayout> {
        let widths = self.widths();
        let mut offset = 0;
        widths
            .windows(2)
            .map(|pair| {
                let (inputs, outputs) = (pair[0], pair[1]);
                let weights = offset..offset + inputs * outputs;
                let bias = weights.end..weights.end + outputs;
                offset = bias.end;
                DenseLayout {
                    inputs,
                    outputs,
                    weights,
                    bias,
                }
            })
            .collect()
    }

    /// Total number of parameters (101,770 for the tutorial network, 34,826 for the CNN; 0 for
    /// a stack that does not fit its input).
    pub fn parameter_count(&self) -> usize {
        if let Some(stack) = self.sequential() {
            return stack.map_or(0, |stack| stack.parameter_count);
        }
        self.dense_layouts()
            .last()
            .map_or(0, |layer| layer.bias.end)
    }

    /// Names and shapes of the tensors in the flat buffer, in order (Keras layout: dense weights
    /// are `[in, out]`, convolution kernels `[k, k, in, filters]`). A stack's tensors are named
    /// by layer position as in PyTorch's `nn.Sequential` (`0.weight`, `8.bias`).
    pub fn tensor_names(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let mut names = Vec::new();
        if let Some(stack) = self.sequential() {
            for (index, layer) in stack
                .map(|s| s.layers)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let (shape, weights, bias) = match layer {
                    Layer::Conv(conv) => (
                        vec![conv.kernel, conv.kernel, conv.in_channels, conv.filters],
                        conv.weights,
                        conv.bias,
                    ),
                    Layer::Dense(dense) => {
                        (vec![dense.inputs, dense.outputs], dense.weights, dense.bias)
                    }
                    _ => continue,
                };
                let outputs = bias.len();
                names.push((format!("{index}.weight"), shape, weights));
                names.push((format!("{index}.bias"), vec![outputs], bias));
            }
            return names;
        }
        for (index, layer) in self.dense_layouts().into_iter().enumerate() {
            names.push((
                format!("dense_{index}.weight"),
                vec![layer.inputs, layer.outputs],
                layer.weights.clone(),
            ));
            names.push((
                format!("dense_{index}.bias"),
                vec![layer.outputs],
                layer.bias,
            ));
        }
        names
    }
}
