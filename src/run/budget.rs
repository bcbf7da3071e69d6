//! Does a run fit in memory? The estimate of what a [`RunSpec`] will allocate
//! ([`crate::train::memory`]) against the memory available or the run's limit, checked before
//! anything large is allocated: a refusal names the setting that sized the largest part.

use crate::error::{Error, Result, Setting};
use crate::nn::Mlp;
use crate::run::spec::RunSpec;
use crate::train::memory::{available_memory, MemoryEstimate, MemoryUse, TrainingShape};
use crate::train::BatchSize;

/// Refuses `spec` when it would need more memory than it may use. Before the data is read
/// (`examples` = None) from the settings alone; afterwards with the training set's size and the
/// most examples evaluated at once (test or validation set).
pub fn check_training(spec: &RunSpec, examples: Option<(usize, usize)>) -> Result<()> {
    let mlp = Mlp::new(spec.training.architecture.clone());
    let batch_rows = match (examples, spec.training.batch_size) {
        (Some((train, _)), batch_size) => batch_size.resolve(train),
        (None, BatchSize::Examples(rows)) => rows.min(spec.limit.unwrap_or(usize::MAX)),
        // The full set's size is known only once it is read (then checked again).
        (None, BatchSize::Full) => spec.limit.unwrap_or(1),
    };
    let estimate = MemoryEstimate::training(&TrainingShape {
        mlp: &mlp,
        optimizer: spec.training.optimizer,
        batch_rows,
        evaluation: examples.map(|(_, evaluated)| (spec.test_batch_size, evaluated)),
        keeps_best_weights: spec.validation.restore_best.is_some(),
        private: spec.training.privacy.is_some() || spec.privacy.is_some(),
    });
    check(estimate, spec.memory_limit)
}

/// Refuses `estimate` when it exceeds `limit` (`None`: the memory the system reports
/// available; nothing is refused where that is unknown).
pub fn check(estimate: MemoryEstimate, limit: Option<u64>) -> Result<()> {
    let Some(available) = limit.or_else(available_memory) else {
        return Ok(());
    };
    estimate
        .check(available, limit.is_some())
        .map_err(|shortfall| {
            let setting = match shortfall.estimate.largest() {
                MemoryUse::Workspaces => Setting::BatchSize,
                MemoryUse::Evaluation => Setting::TestBatchSize,
                MemoryUse::Parameters
                | MemoryUse::OptimizerState
                | MemoryUse::Gradients
                | MemoryUse::Saving => Setting::HiddenWidths,
            };
            Error::setting(setting, shortfall.to_string())
        })
}
