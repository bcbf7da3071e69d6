//! The network as an ordered list of inference layers, the one description that the exporters
//! (ONNX) and `mnist-train summary` walk. It follows PyTorch's `nn.Sequential` order — Flatten,
//! then Linear, ReLU, Dropout per hidden layer, then the last Linear — so a layer's position is
//! also its module index in the documented Sequential (and in the safetensors keys). A new layer
//! type (Conv2d, MaxPool2d) is a new [`LayerKind`] variant with its output shape and exporters.

use std::ops::Range;

use crate::nn::Architecture;

/// What one layer computes; dense layers say where their parameters are in the flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// `[N, ...image] -> [N, features]`.
    Flatten,
    /// `x · W + b` with `W` stored `[inputs, outputs]` row-major at `weights`, `b` at `bias`.
    Dense {
        inputs: usize,
        outputs: usize,
        weights: Range<usize>,
        bias: Range<usize>,
    },
    Relu,
    /// Active only in training; the identity at inference.
    Dropout {
        rate: f32,
    },
}

/// One layer and the shape of what it outputs for one example (the batch dimension left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub kind: LayerKind,
    pub output_shape: Vec<usize>,
}

impl Layer {
    /// The layer's type name, as PyTorch calls it.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            LayerKind::Flatten => "Flatten",
            LayerKind::Dense { .. } => "Linear",
            LayerKind::Relu => "ReLU",
            LayerKind::Dropout { .. } => "Dropout",
        }
    }

    /// Trainable parameters held by this layer.
    pub fn parameter_count(&self) -> usize {
        match &self.kind {
            LayerKind::Dense { weights, bias, .. } => weights.len() + bias.len(),
            _ => 0,
        }
    }
}

/// The shape of one input example: `[1, side, side]` when the inputs are a square image
/// (784 = 28 × 28), otherwise a flat `[inputs]`.
pub fn input_shape(architecture: &Architecture) -> Vec<usize> {
    let side = (architecture.inputs as f64).sqrt().round() as usize;
    if side * side == architecture.inputs {
        vec![1, side, side]
    } else {
        vec![architecture.inputs]
    }
}

/// The layers of `architecture` in order, from the input image to the logits.
pub fn layer_list(architecture: &Architecture) -> Vec<Layer> {
    let dense = architecture.dense_layouts();
    let last = dense.len().saturating_sub(1);
    let mut layers = vec![Layer {
        kind: LayerKind::Flatten,
        output_shape: vec![architecture.inputs],
    }];
    for (index, layout) in dense.into_iter().enumerate() {
        let width = layout.outputs;
        layers.push(Layer {
            kind: LayerKind::Dense {
                inputs: layout.inputs,
                outputs: layout.outputs,
                weights: layout.weights,
                bias: layout.bias,
            },
            output_shape: vec![width],
        });
        if index < last {
            layers.push(Layer {
                kind: LayerKind::Relu,
                output_shape: vec![width],
            });
            layers.push(Layer {
                kind: LayerKind::Dropout {
                    rate: architecture.dropout,
                },
                output_shape: vec![width],
            });
        }
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tutorial_network_is_flatten_linear_relu_dropout_linear() {
        let layers = layer_list(&Architecture::tutorial());
        let names: Vec<&str> = layers.iter().map(Layer::type_name).collect();
        assert_eq!(names, ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]);
        let shapes: Vec<Vec<usize>> = layers.iter().map(|l| l.output_shape.clone()).collect();
        assert_eq!(
            shapes,
            [vec![784], vec![128], vec![128], vec![128], vec![10]]
        );
        // 784·128 + 128 and 128·10 + 10, counted by hand.
        let counts: Vec<usize> = layers.iter().map(Layer::parameter_count).collect();
        assert_eq!(counts, [0, 100_480, 0, 0, 1_290]);
        assert_eq!(input_shape(&Architecture::tutorial()), [1, 28, 28]);
    }

    #[test]
    fn dense_layers_sit_at_the_safetensors_module_indices() {
        let architecture = Architecture {
            hidden: vec![64, 32],
            ..Architecture::tutorial()
        };
        let dense_positions: Vec<usize> = layer_list(&architecture)
            .iter()
            .enumerate()
            .filter(|(_, layer)| matches!(layer.kind, LayerKind::Dense { .. }))
            .map(|(index, _)| index)
            .collect();
        let expected: Vec<usize> = (0..3)
            .map(crate::interop::safetensors::sequential_index)
            .collect();
        assert_eq!(dense_positions, expected);
    }
}
