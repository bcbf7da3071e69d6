//! `--max-memory` and the memory check of the commands that allocate by the user's sizes: the
//! library's estimate is compared with what is available, and a shortfall is reported against
//! the option that sized the largest part.

use clap::Args;

use crate::cli::train::TrainJob;
use crate::error::{Error, Result};
use crate::nn::Mlp;
use crate::train::memory::{
    available_memory, parse_byte_size, MemoryEstimate, MemoryUse, TrainingShape,
};
use crate::train::BatchSize;

#[derive(Debug, Clone, Default, Args)]
pub struct MemoryArgs {
    /// Memory the run may use, e.g. 512M or 8G [default: what the system reports available,
    /// within the process's cgroup limit]. Runs estimated to need more are refused before starting
    #[arg(long, value_name = "SIZE", env = "MNIST_TRAIN_MAX_MEMORY", value_parser = parse_byte_size)]
    pub max_memory: Option<u64>,
}

impl MemoryArgs {
    /// Refuses `estimate` if it exceeds the memory available, naming the option that sized the
    /// largest part of it: `--hidden` for parameter-sized buffers, `--batch-size` for the step
    /// workspaces, `--test-batch-size` for evaluation.
    pub fn check(&self, estimate: MemoryEstimate) -> Result<()> {
        let Some(available) = self.max_memory.or_else(available_memory) else {
            return Ok(());
        };
        estimate.check(available).map_err(|shortfall| {
            let option = match shortfall.estimate.largest() {
                MemoryUse::Workspaces => "--batch-size",
                MemoryUse::Evaluation => "--test-batch-size",
                MemoryUse::Parameters
                | MemoryUse::OptimizerState
                | MemoryUse::Gradients
                | MemoryUse::Saving => "--hidden",
            };
            let source = if self.max_memory.is_some() {
                " (set by --max-memory / MNIST_TRAIN_MAX_MEMORY)"
            } else {
                ""
            };
            Error::config(option, format!("{shortfall}{source}"))
        })
    }
}

/// What `job` will allocate: before the data is read (`examples` = None) from the options
/// alone, afterwards with the training set's size and the most examples evaluated at once.
pub fn training_estimate(job: &TrainJob, examples: Option<(usize, usize)>) -> MemoryEstimate {
    let mlp = Mlp::new(job.config.architecture.clone());
    let batch_rows = match (examples, job.config.batch_size) {
        (Some((train, _)), batch_size) => batch_size.resolve(train),
        (None, BatchSize::Examples(rows)) => rows.min(job.limit.unwrap_or(usize::MAX)),
        // The full set's size is known only once it is read (then checked again).
        (None, BatchSize::Full) => job.limit.unwrap_or(1),
    };
    MemoryEstimate::training(&TrainingShape {
        mlp: &mlp,
        optimizer: job.config.optimizer,
        batch_rows,
        evaluation: examples.map(|(_, evaluated)| (job.test_batch_size, evaluated)),
        keeps_best_weights: job.validation.restore_best.is_some(),
    })
}
