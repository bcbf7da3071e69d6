//! Inference on single images: turning an arbitrary photo or drawing into an MNIST-style 28×28
//! input ([`preprocess`]), running the network on it ([`classify`]), and drawing digits in the
//! terminal ([`render`]).

pub mod classify;
pub mod preprocess;
pub mod render;

pub use classify::{probabilities, top_classes, ClassScore};
pub use preprocess::{load_grayscale, to_mnist_frame, GrayImage, InvertMode};
pub use render::{fit_width, render_half_blocks, side_by_side, tile_grid};
