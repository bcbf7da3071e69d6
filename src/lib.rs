//! mnist-train: a hand-written MLP trainer for MNIST-format datasets.
//!
//! # Data flow
//!
//! Data flows one way; nothing flows back but gradients:
//!
//! ```text
//! command line (the program's cli/) ──▶ run::RunSpec ◀── or a checkpoint being resumed
//!                                          │ run::execute: one sequence for train, bench, compare
//! IDX files ─▶ data::Dataset (u8 images, labels, typed DatasetKind, class names)
//!   ─▶ limit, stratified validation hold-out ─▶ seeded batches, normalized into a reused buffer
//!   ─▶ nn::Mlp forward/backward over one flat parameter buffer ─▶ optim::Optimizer step
//!   ─▶ one train::EpochRecord per epoch ─▶ callbacks: progress, JSON lines, CSV history,
//!      early stopping, best weights, checkpoints, Ctrl-C
//!   ─▶ model_file::Model (atomic write) ─▶ evaluation; interop exports, predict reads it,
//!      explain attributes its predictions to pixels (and checks the attributions)
//! ```
//!
//! # Public entry points
//!
//! - [`run::RunSpec`] describes a training run; [`run::execute`] carries it out and returns the
//!   trainer, the data and the test evaluation ([`run::RunOutcome`]). [`run::reconcile`] makes a
//!   spec continue a [`checkpoint::Checkpoint`].
//! - [`train::Trainer`] is the loop itself (`fit` with [`train::Callback`]s), for finer control.
//! - [`data::load_split`] / [`data::load_train_and_test`] read MNIST-format folders;
//!   [`model_file::Model`] saves and loads trained models; [`interop`] converts them.
//! - [`bench`] and [`compare`] build specs for the `bench` and `compare` commands.
//! - [`explain::attribute`] explains one prediction (integrated gradients, saliency,
//!   input × gradient, occlusion); [`explain::run_checks`] measures how faithful the maps are.
//!   A network takes part through [`explain::Differentiable`].
//! - Errors are one [`Error`] enum in the library's terms ([`error::Setting`]).
//!
//! # Training from Rust
//!
//! ```
//! use mnist_train::data::{Dataset, DatasetKind};
//! use mnist_train::run::{self, Observers, RunSpec, Source};
//! use mnist_train::train::{BatchSize, Progress, ProgressMode, TrainConfig};
//!
//! // 64 synthetic 28×28 images: the 1s are bright, the 0s dark.
//! let labels: Vec<u8> = (0..64).map(|i| i % 2).collect();
//! let images = labels.iter().flat_map(|&label| [label * 200; 784]).collect();
//! let data = Dataset {
//!     images,
//!     labels,
//!     rows: 28,
//!     cols: 28,
//!     class_names: DatasetKind::Mnist.class_names(),
//! };
//! let training = TrainConfig {
//!     epochs: 3,
//!     batch_size: BatchSize::Examples(16),
//!     ..TrainConfig::default()
//! };
//! let spec = RunSpec::new(training, DatasetKind::Mnist);
//! let mut progress = Progress::new(ProgressMode::None, spec.training.epochs);
//! let source = Source::Loaded { train: &data, test: &data };
//! let outcome = run::execute(&spec, source, None, Observers::quiet(&mut progress))?;
//! assert_eq!(outcome.trainer.history.len(), 3);
//! assert!(outcome.evaluation.accuracy > 0.9);
//! # Ok::<(), mnist_train::Error>(())
//! ```

pub mod bench;
pub mod checkpoint;
pub mod choice;
pub mod compare;
pub mod data;
pub mod error;
pub mod explain;
pub mod interop;
pub mod kernels;
pub mod model_file;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod predict;
pub mod report;
pub mod rng;
pub mod run;
pub mod run_lock;
pub mod train;

pub use error::{Error, Result};
