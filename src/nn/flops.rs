//! The arithmetic of training on one example, counted from the network's own layers: what
//! `bench` divides by the epoch time (GFLOP/s) and by the FMA peak (the floor).
//!
//! Only the matrix products are counted, 2 flops per multiply-add: per layer with parameters
//! (dense or convolution) `2·MACs` forward, `2·MACs` for the weight gradient, and `2·MACs` for the
//! input gradient unless no layer with parameters lies below it (nothing needs that gradient).
//! A dense layer's MACs are `in·out`; a convolution's are `out_pixels · k·k·in_channels · filters`.
//! Element-wise work (bias, ReLU, pooling, dropout, softmax, the optimizer) is not counted: it is
//! memory- rather than FMA-bound, and small next to the products.
//!
//! Convolutions count as direct products (issue 12's 855.7 GFLOP an epoch for the CNN) even where
//! they run as Winograd F(2×2, 3×3) (`nn::conv2d`), which does 16 multiply-adds per 2×2 output
//! tile and channel pair instead of 36: the floor stays the direct arithmetic over the FMA peak,
//! and a run's "fraction of peak" can then exceed 100%. Likewise the first dense layer counts all
//! of its inputs, though its products read only the nonzero pixels (`kernels::sparse`).

use serde::Serialize;

use crate::nn::sequential::Layer;
use crate::nn::Architecture;

/// Floating-point operations of one training example's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainingFlops {
    /// The forward pass.
    pub forward: f64,
    /// Weight gradients, plus input gradients where a layer with parameters lies below.
    pub backward: f64,
}

impl TrainingFlops {
    pub fn total(&self) -> f64 {
        self.forward + self.backward
    }

    /// Adds one layer of `macs` multiply-adds; `input_gradient`: whether its input's gradient is
    /// needed.
    fn add(&mut self, macs: usize, input_gradient: bool) {
        let products = 2.0 * macs as f64;
        self.forward += products;
        self.backward += if input_gradient {
            2.0 * products
        } else {
            products
        };
    }
}

impl Architecture {
    /// The matrix-product flops of training on one example (see the module docs): 409,088 for
    /// the 784-128-10 MLP, 14,256,384 for the Keras CNN (4,881,920 forward, 9,374,464
    /// backward). A stack that does not fit its input counts 0.
    pub fn training_flops_per_example(&self) -> TrainingFlops {
        let mut flops = TrainingFlops {
            forward: 0.0,
            backward: 0.0,
        };
        // Whether some layer below this one has parameters.
        let mut below = false;
        if let Some(stack) = self.sequential() {
            for layer in stack.map(|s| s.layers).unwrap_or_default() {
                let macs = match layer {
                    Layer::Conv(conv) => conv.out_pixels() * conv.patch_len() * conv.filters,
                    Layer::Dense(dense) => dense.inputs * dense.outputs,
                    _ => continue,
                };
                flops.add(macs, below);
                below = true;
            }
            return flops;
        }
        for layer in self.dense_layouts() {
            flops.add(layer.inputs * layer.outputs, below);
            below = true;
        }
        flops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::layer_spec::mlp_layers;

    #[test]
    fn the_tutorial_mlp_counts_as_before() {
        // 784·128 + 128·10 MACs forward and for the weight gradients, 128·10 for the one input
        // gradient needed: 409,088 flops, 24.55 GFLOP per 60,000-image epoch.
        let flops = Architecture::tutorial().training_flops_per_example();
        assert_eq!(flops.forward, 203_264.0);
        assert_eq!(flops.backward, 205_824.0);
        assert_eq!(flops.total(), 409_088.0);
        // The same network written as a layer stack counts the same.
        let stack = Architecture::stack(mlp_layers(&[128], 0.2, 10));
        assert_eq!(stack.training_flops_per_example(), flops);
    }

    #[test]
    fn the_keras_cnn_counts_the_issues_figures() {
        // conv1: 26·26 pixels · 9 · 32 = 194,688 MACs (no input gradient: the image is the
        // input); conv2: 11·11 · 288 · 64 = 2,230,272 MACs; dense: 1600 · 10 = 16,000 MACs.
        let flops = Architecture::cnn().training_flops_per_example();
        assert_eq!(flops.forward, 2.0 * (194_688.0 + 2_230_272.0 + 16_000.0));
        assert_eq!(
            flops.backward,
            2.0 * (194_688.0 + 2.0 * 2_230_272.0 + 2.0 * 16_000.0)
        );
        // Issue 12: 14.26 MFLOP per training image, forward 4.88, backward 9.37.
        let mega = |flops: f64| (flops / 1e6 * 100.0).round() / 100.0;
        assert_eq!(mega(flops.forward), 4.88);
        assert_eq!(mega(flops.backward), 9.37);
        assert_eq!(mega(flops.total()), 14.26);
        // ≈ 855.7 GFLOP per 60,000-image epoch as the issue rounds it (855.38 exactly).
        let epoch = 60_000.0 * flops.total() / 1e9;
        assert!((epoch - 855.7).abs() / 855.7 < 1e-3, "{epoch}");
    }

    #[test]
    fn a_stack_that_does_not_fit_counts_nothing() {
        let flops = Architecture::stack(vec![crate::nn::LayerSpec::Dense { units: 10 }])
            .training_flops_per_example();
        assert_eq!(flops.total(), 0.0);
    }
}
