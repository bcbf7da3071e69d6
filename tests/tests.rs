//! The one integration-test binary: a module per area, sharing one support module.

mod support;

mod bad_input;
mod bench_command;
mod checkpoint_cli;
mod cli;
mod cli_compare;
mod cli_explain;
mod cli_interop;
mod cli_json_history;
mod cli_optimizers;
mod cli_plots;
mod cli_predict_eval;
mod cnn_gradients;
mod cnn_network;
mod explain;
mod gradients;
mod memory_limits;
mod onnx_export;
mod parsers_proptest;
mod privacy;
mod resume_exact;
mod run_locks;
mod speed_determinism;
mod summary_command;
mod tensorboard_events;
mod training_controls;
