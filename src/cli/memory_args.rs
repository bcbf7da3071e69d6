//! `--max-memory`: how much memory a run may use (see `mnist_train::run::budget`).

use clap::Args;

use crate::train::memory::parse_byte_size;

#[derive(Debug, Clone, Default, Args)]
pub struct MemoryArgs {
    /// Memory the run may use, e.g. 512M or 8G [default: what the system reports available,
    /// within the process's cgroup limit]. Runs estimated to need more are refused before starting
    #[arg(long, value_name = "SIZE", env = "MNIST_TRAIN_MAX_MEMORY", value_parser = parse_byte_size)]
    pub max_memory: Option<u64>,
}
