//! What a network trains with when the command line says nothing else: one place for the
//! defaults that differ between the MLP (the Keras tutorial's recipe) and the layer stacks.

use crate::nn::Architecture;
use crate::train::BatchSize;

/// Epochs, batch size and learning-rate schedule defaults for an architecture; explicit options
/// override each of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: BatchSize,
    /// Adam's learning rate (other optimizers keep their own defaults).
    pub adam_learning_rate: f32,
    /// Whether the learning rate follows a cosine from its base value to 0 (else constant).
    pub cosine_schedule: bool,
}

impl Recipe {
    /// The Keras tutorial's MLP recipe: 5 epochs of batch 32, Adam 0.001, constant rate.
    pub const MLP: Recipe = Recipe {
        epochs: 5,
        batch_size: BatchSize::Examples(32),
        adam_learning_rate: 0.001,
        cosine_schedule: false,
    };

    /// The CNN recipe (`--arch cnn`, `--layers`): 8 epochs of batch 64, Adam 0.002 decayed along
    /// a cosine to 0. The decay is what lifts the Keras convnet from ~98.9% (constant 0.001,
    /// batch 128) to 99.1–99.2% in the same 8 epochs (README, "Convolutional network").
    pub const CNN: Recipe = Recipe {
        epochs: 8,
        batch_size: BatchSize::Examples(64),
        adam_learning_rate: 0.002,
        cosine_schedule: true,
    };

    /// The recipe for `architecture`: stacks take the CNN recipe, the MLP the tutorial's.
    pub fn for_architecture(architecture: &Architecture) -> Recipe {
        if architecture.layers.is_some() {
            Recipe::CNN
        } else {
            Recipe::MLP
        }
    }
}
