//! Options that change how fast a command runs, never what it computes (beyond rounding for
//! `--kernel`): thread count and kernel choice.

use clap::Args;

use crate::error::{Error, Result};
use crate::kernels::{self, Backend, KernelChoice};
use crate::train::default_threads;

#[derive(Debug, Clone, Args)]
pub struct PerformanceArgs {
    /// Threads to train on [default: all cores]. Results are bit-identical for every thread count
    #[arg(long, value_name = "N", value_parser = crate::cli::thread_count)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `--kernel` (or `MNIST_TRAIN_KERNEL`), for every command that computes.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// Compute kernels: the fastest the CPU supports, or a specific one (portable runs anywhere)
    #[arg(long, env = "MNIST_TRAIN_KERNEL", default_value_t = KernelChoice::Auto, value_parser = crate::cli::choice::<KernelChoice>())]
    pub kernel: KernelChoice,
}

impl KernelArgs {
    /// Checks the kernel choice against this CPU and makes it the process-wide backend.
    pub fn select(&self) -> Result<Backend> {
        let backend = self
            .kernel
            .resolve()
            .map_err(|message| Error::config("--kernel (MNIST_TRAIN_KERNEL)", message))?;
        kernels::set_backend(backend);
        Ok(backend)
    }
}

impl PerformanceArgs {
    /// The thread count (checked while parsing), all cores by default.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(default_threads)
    }

    /// Checks the kernel choice against this CPU and makes it the process-wide backend.
    pub fn select_kernel(&self) -> Result<Backend> {
        self.kernel.select()
    }
}
