//! mnist-train: a hand-written MLP trainer for MNIST-format datasets.
//!
//! Data flows one way: IDX files → [`data::Dataset`] (u8) → normalized batches →
//! [`nn::Mlp`] forward/backward over one flat parameter buffer → [`optim::Optimizer`] step →
//! one [`train::EpochRecord`] per epoch → [`model_file::Model`] saved atomically.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod data;
pub mod error;
pub mod interop;
pub mod kernels;
pub mod model_file;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod predict;
pub mod report;
pub mod rng;
pub mod run_lock;
pub mod train;

pub use error::{Error, Result};
