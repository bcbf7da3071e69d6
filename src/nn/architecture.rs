//! The network's shape, and how its parameters are laid out in one flat buffer.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The multilayer perceptron: `inputs → (Dense → ReLU → Dropout) per hidden layer → Dense → softmax`.
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
        }
    }

    /// Widths of every layer boundary: `[inputs, hidden..., outputs]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths = vec![self.inputs];
        widths.extend(&self.hidden);
        widths.push(self.outputs);
        widths
    }

    /// The widths joined for people: `784-128-10`.
    pub fn widths_label(&self) -> String {
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

    /// Total number of parameters (101,770 for the tutorial network).
    pub fn parameter_count(&self) -> usize {
        self.dense_layouts()
            .last()
            .map_or(0, |layer| layer.bias.end)
    }

    /// Names and shapes of the tensors in the flat buffer, in order (Keras layout: weights are `[in, out]`).
    pub fn tensor_names(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let mut names = Vec::new();
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

/// One dense layer's place in the flat buffer. Weights are `[inputs, outputs]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayout {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Range<usize>,
    pub bias: Range<usize>,
}
