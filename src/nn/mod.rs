//! The network: layers (each with its forward and backward pass), the loss, and the MLP that
//! strings them together over one flat parameter buffer.

pub mod architecture;
pub mod dense;
pub mod dropout;
pub mod layers;
pub mod loss;
pub mod mlp;

pub use architecture::Architecture;
pub use mlp::{Mlp, Workspace, WorkspaceLayout};
