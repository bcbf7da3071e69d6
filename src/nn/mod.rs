//! The network: layers (each with its forward and backward pass), the loss, and the MLP or the
//! sequential stack (`--layers`, `--arch cnn`) that strings them together over one flat
//! parameter buffer.

pub mod architecture;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flops;
pub mod layer_spec;
pub mod layers;
pub mod loss;
pub mod max_pool;
pub mod mlp;
pub mod sequential;

pub use architecture::Architecture;
pub use flops::TrainingFlops;
pub use layer_spec::LayerSpec;
pub use mlp::{Mlp, Workspace, WorkspaceLayout, SPARSE_INPUT_ROWS};
pub use sequential::Sequential;

/// Where a training chunk's parameter gradients go: `grads` receives `scale` · ∇(Σ loss), added
/// to what it holds when `accumulate` is true, overwriting it otherwise (the first chunk of a
/// shard: saves clearing the buffer).
#[derive(Debug)]
pub struct GradientSink<'a> {
    pub grads: &'a mut [f32],
    pub scale: f32,
    pub accumulate: bool,
}

impl<'a> GradientSink<'a> {
    /// `scale` · ∇(Σ loss) added to `grads`.
    pub fn adding(grads: &'a mut [f32], scale: f32) -> Self {
        GradientSink {
            grads,
            scale,
            accumulate: true,
        }
    }

    /// `scale` · ∇(Σ loss) written over `grads`.
    pub fn writing(grads: &'a mut [f32], scale: f32) -> Self {
        GradientSink {
            grads,
            scale,
            accumulate: false,
        }
    }
}

/// Bytes of f32 buffers of these lengths (saturating): what a workspace layout allocates.
pub(crate) fn f32_bytes<'a>(lens: impl IntoIterator<Item = &'a usize>) -> u64 {
    lens.into_iter()
        .fold(0u64, |sum, &len| sum.saturating_add(len as u64))
        .saturating_mul(std::mem::size_of::<f32>() as u64)
}

/// Bytes f32 buffers really hold (their allocated capacities), to check a layout against.
pub(crate) fn allocated_f32_bytes<'a>(buffers: impl IntoIterator<Item = &'a Vec<f32>>) -> u64 {
    let floats: usize = buffers.into_iter().map(Vec::capacity).sum();
    (floats * std::mem::size_of::<f32>()) as u64
}
