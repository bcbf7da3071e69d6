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
pub use mlp::{Mlp, Workspace, WorkspaceLayout};
pub use sequential::Sequential;
