//! Carrying out a training run described by a [`RunSpec`]: the one sequence `train`, `bench` and
//! `compare` share.
//!
//! load → limit → hold out a validation set → a fresh or resumed trainer → fit, feeding every
//! epoch record to the sinks, early stopping and the checkpoints → restore the best weights →
//! save the model → evaluate on the test set.

pub mod budget;
pub mod guard;
pub mod preflight;
pub mod resume;
pub mod sinks;
pub mod spec;

use std::borrow::Cow;
use std::time::Instant;

use crate::data::{load_train_and_test, Dataset};
use crate::error::{Error, Result, Setting};
use crate::model_file::{Model, Normalization};
use crate::optim::privacy::PrivacyGuarantee;
use crate::train::{evaluate, Callback, Evaluation, Progress, TrainConfig, Trainer, Validation};

pub use resume::{reconcile, Conflict, Resume};
pub use spec::{
    CheckpointPolicy, RunSpec, ValidationPlan, DEFAULT_KEEP_CHECKPOINTS, DEFAULT_TEST_BATCH_SIZE,
};

/// Where a run's data comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Read `spec.dataset` from `spec.data_dir`.
    Load,
    /// Already loaded (several runs on the same data, as `compare` does).
    Loaded {
        train: &'a Dataset,
        test: &'a Dataset,
    },
}

/// Who watches a run.
pub struct Observers<'a> {
    /// Progress bars or lines, and the run's informational lines.
    pub progress: &'a mut Progress,
    /// Fed every step and epoch record, before early stopping and checkpoints (JSON lines, CSV).
    pub sinks: Vec<&'a mut dyn Callback>,
    /// Say what data was loaded and which optimizer runs.
    pub announce: bool,
    /// A diverged run (non-finite loss) ends with [`RunOutcome::diverged`] set instead of an
    /// error, keeping what it reached (`compare` shows it in its table).
    pub keep_diverged: bool,
}

impl<'a> Observers<'a> {
    /// Nothing but `progress`.
    pub fn quiet(progress: &'a mut Progress) -> Self {
        Observers {
            progress,
            sinks: Vec::new(),
            announce: false,
            keep_diverged: false,
        }
    }
}

/// What a finished run leaves.
pub struct RunOutcome<'a> {
    pub trainer: Trainer,
    /// What it trained on (after the limit and the hold-out).
    pub train: Cow<'a, Dataset>,
    pub test: Cow<'a, Dataset>,
    /// The final weights on the test set.
    pub evaluation: Evaluation,
    /// Reading the data (and applying the limit); 0 for [`Source::Loaded`].
    pub load_seconds: f64,
    pub eval_seconds: f64,
    /// Set (only with [`Observers::keep_diverged`]) when training diverged.
    pub diverged: Option<Error>,
    /// A private run's (ε, δ) guarantee.
    pub privacy: Option<PrivacyGuarantee>,
}

/// Carries out `spec`: see the module documentation for the sequence. `resume`: a checkpoint
/// to continue (already reconciled with `spec`, see [`reconcile`]).
pub fn execute<'a>(
    spec: &RunSpec,
    source: Source<'a>,
    resume: Option<&Resume>,
    observers: Observers<'_>,
) -> Result<RunOutcome<'a>> {
    let Observers {
        progress,
        sinks,
        announce,
        keep_diverged,
    } = observers;
    let load_started = Instant::now();
    let (mut train, test) = match source {
        Source::Load => {
            let (train, test) = load_train_and_test(&spec.data_dir, spec.dataset)?;
            (Cow::Owned(train), Cow::Owned(test))
        }
        Source::Loaded { train, test } => (Cow::Borrowed(train), Cow::Borrowed(test)),
    };
    if let Some(limit) = spec.limit {
        if limit < train.len() {
            train.to_mut().truncate(limit);
        }
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    if announce && matches!(source, Source::Load) {
        progress.info(&format!(
            "Loaded {} from {}: {} training and {} test images ({load_seconds:.2}s)",
            spec.dataset.name(),
            spec.data_dir.display(),
            train.len(),
            test.len(),
        ));
    }

    let (train, validation_set) =
        match spec
            .validation
            .hold_out(&train, spec.training.seed, progress)?
        {
            Some((train, validation)) => (Cow::Owned(train), Some(validation)),
            None => (train, None),
        };
    let evaluated = test
        .len()
        .max(validation_set.as_ref().map_or(0, Dataset::len));
    budget::check_training(spec, Some((train.len(), evaluated)))?;
    if announce {
        progress.info(&describe_optimizer(&spec.training));
    }
    let spec = &with_noise_for_target(spec, resume.is_some(), train.len())?;
    if let (true, Some(plan), Some(privacy)) = (announce, &spec.privacy, &spec.training.privacy) {
        progress.info(&plan.describe(privacy, spec.training.run_length(train.len())));
    }

    let mut trainer = resume::trainer_for(spec, resume, &train, progress)?;
    trainer.threads = spec.thread_count();
    let validation_data = if spec.validate_on_test_set {
        Some(test.as_ref())
    } else {
        validation_set.as_ref()
    };
    let validation = validation_data.map(|data| Validation {
        data,
        batch_size: spec.test_batch_size,
    });
    let mut controls = spec.validation.controls();
    let interrupted_path = spec.interrupted_path();
    let mut safeguards = match &interrupted_path {
        Some(path) => Some(guard::Safeguards::install(spec, &train, path.clone())?),
        None => None,
    };
    let mut callbacks: Vec<&mut dyn Callback> = sinks
        .into_iter()
        .map(|sink| -> &mut dyn Callback { sink })
        .collect();
    callbacks.extend(controls.callbacks());
    if let Some(safeguards) = &mut safeguards {
        callbacks.push(safeguards);
    }
    let fitted = trainer.fit_with_validation(&train, validation, progress, &mut callbacks);
    drop(callbacks);
    let diverged = match fitted {
        Ok(()) => None,
        Err(error @ Error::NonFinite { .. }) if keep_diverged => Some(error),
        Err(error) => return Err(error),
    };
    if let Some(safeguards) = safeguards {
        safeguards.finish(&trainer)?;
    }
    for line in controls.finish(&mut trainer.params) {
        progress.info(&line);
    }

    let privacy = trainer.privacy_guarantee(train.len());
    if let Some(output) = &spec.output {
        let model = Model {
            architecture: spec.training.architecture.clone(),
            normalization: Normalization::default(),
            dataset: spec.dataset,
            class_names: train.class_names.clone(),
            parameters: trainer.params.clone(),
            privacy: privacy.clone(),
        };
        model
            .save(output)
            .map_err(|error| guard::explain_save_failure(spec.checkpoints.dir.as_deref(), error))?;
        // A default-location interrupt checkpoint that this run resumed from is now stale.
        if let (Some(resume), Some(interrupted)) = (resume, &interrupted_path) {
            if &resume.path == interrupted {
                let _ = std::fs::remove_file(&resume.path);
            }
        }
    }

    let eval_started = Instant::now();
    let evaluation = evaluate(&trainer.mlp, &trainer.params, &test, spec.test_batch_size);
    let eval_seconds = eval_started.elapsed().as_secs_f64();
    Ok(RunOutcome {
        trainer,
        train,
        test,
        evaluation,
        load_seconds,
        eval_seconds,
        diverged,
        privacy,
    })
}

/// `spec` with the noise multiplier for its target ε, when it has one and no noise yet. A resumed
/// run that was not private cannot become private half-way (the accountant would not cover the
/// steps already taken).
fn with_noise_for_target(
    spec: &RunSpec,
    resumed: bool,
    example_count: usize,
) -> Result<Cow<'_, RunSpec>> {
    match (&spec.privacy, &spec.training.privacy) {
        (Some(_), None) if resumed => Err(Error::setting(
            Setting::TargetEpsilon,
            "the checkpoint being resumed was not trained privately; start a new run",
        )),
        (Some(plan), None) => {
            let mut resolved = spec.clone();
            resolved.training.privacy =
                Some(plan.dp_config(spec.training.run_length(example_count))?);
            Ok(Cow::Owned(resolved))
        }
        _ => Ok(Cow::Borrowed(spec)),
    }
}

/// One line for the log, e.g. `Optimizer: adam (beta1 0.9, beta2 0.999, epsilon 1e-7), learning
/// rate 0.001, constant schedule`.
pub fn describe_optimizer(config: &TrainConfig) -> String {
    format!(
        "Optimizer: {}, learning rate {}, {} schedule",
        config.optimizer.describe(),
        config.learning_rate,
        config.schedule.describe()
    )
}
