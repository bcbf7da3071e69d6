//! `--checkpoint-dir`, `--checkpoint-every`, `--keep-checkpoints` and `--resume`: turning them
//! into a plan (what to resume, where to checkpoint), reconciling a resumed checkpoint with the
//! command line, and the safeguards that run during training (checkpoints, Ctrl-C).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser};
use serde_json::Value;

use crate::checkpoint::{
    fingerprint, list_checkpoints, parse_checkpoint_file_name, resolve_resume_path, Checkpoint,
    RunInfo,
};
use crate::cli::preflight::{
    check_output_dir, check_output_file, remove_stale_temp_files, OutputLocks,
};
use crate::cli::train::TrainJob;
use crate::cli::Cli;
use crate::data::{Dataset, DatasetKind};
use crate::error::{Error, Result};
use crate::train::checkpointer::{CheckpointSettings, Checkpointer};
use crate::train::interrupt::InterruptGuard;
use crate::train::{Callback, Control, EpochRecord, Progress, Trainer};

#[derive(Debug, Clone, Default, Args)]
pub struct CheckpointArgs {
    /// Write a checkpoint into DIR at the end of every epoch (created if missing); resume with
    /// --resume DIR
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Also write a checkpoint every N optimization steps (needs --checkpoint-dir)
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// How many of the newest checkpoints to keep (plus the best one when validating)
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub keep_checkpoints: usize,
    /// Continue a run exactly from a checkpoint file, or from the newest valid checkpoint in a
    /// folder. Options not given take the checkpoint's values; contradicting ones are refused
    #[arg(long, value_name = "PATH_OR_DIR")]
    pub resume: Option<PathBuf>,
    /// Ids of the train options given explicitly on the command line (filled by `cli::parse`).
    #[arg(skip)]
    pub given: BTreeSet<String>,
}

/// What the run will do about checkpoints, decided before any data is loaded.
pub struct RunPlan {
    pub settings: Option<CheckpointSettings>,
    pub resume: Option<(PathBuf, Checkpoint)>,
    /// Where an interrupted run without a checkpoint folder saves its checkpoint.
    pub interrupted_path: PathBuf,
    /// This run's locks on its model file and checkpoint folder, held until the plan is dropped.
    pub locks: OutputLocks,
}

/// Validates the checkpoint options, loads the checkpoint to resume (adjusting `job` to it) and
/// checks that every output location is writable.
pub fn prepare(args: &CheckpointArgs, job: &mut TrainJob) -> Result<RunPlan> {
    if args.keep_checkpoints == 0 {
        return Err(Error::config("--keep-checkpoints", "must be at least 1"));
    }
    if args.checkpoint_every == Some(0) {
        return Err(Error::config("--checkpoint-every", "must be at least 1"));
    }
    // Lock the folders first: while another run writes them, say so rather than what they hold.
    let mut locks = OutputLocks::default();
    if let Some(dir) = &args.checkpoint_dir {
        check_output_dir(dir, "--checkpoint-dir")?;
        locks.folder(dir, "--checkpoint-dir")?;
    }
    if let Some(dir) = args.resume.as_ref().filter(|path| path.is_dir()) {
        locks.folder(dir, "--resume")?;
    }
    let mut settings = args.checkpoint_dir.clone().map(|dir| CheckpointSettings {
        dir,
        every_steps: args.checkpoint_every,
        keep: args.keep_checkpoints,
    });
    let mut resume = None;
    if let Some(resume_path) = &args.resume {
        let resolved = resolve_resume_path(resume_path)?;
        for reason in &resolved.skipped {
            eprintln!("warning: skipping unusable checkpoint {reason}");
        }
        reconcile(args, job, &resolved.checkpoint)?;
        if settings.is_none() {
            // Keep checkpointing where the run did: the folder being resumed from, else the
            // folder the checkpoint names.
            let resumed_folder = resume_path.is_dir().then(|| resume_path.clone());
            let dir = resumed_folder.or_else(|| resolved.checkpoint.run.checkpoint_dir.clone());
            settings = dir.map(|dir| CheckpointSettings {
                dir,
                every_steps: args
                    .checkpoint_every
                    .or(resolved.checkpoint.run.checkpoint_every),
                keep: if args.given.contains("keep_checkpoints") {
                    args.keep_checkpoints
                } else {
                    resolved.checkpoint.run.keep_checkpoints
                },
            });
        }
        resume = Some((resolved.path, resolved.checkpoint));
    }
    if args.checkpoint_every.is_some() && settings.is_none() {
        return Err(Error::config(
            "--checkpoint-every",
            "needs --checkpoint-dir (where to write the checkpoints)",
        ));
    }
    check_output_file(&job.output, "--output")?;
    locks.file(&job.output, "--output")?;
    if let Some(settings) = &settings {
        check_output_dir(&settings.dir, "--checkpoint-dir")?;
        // The folder a resumed checkpoint file names (the others are locked already).
        locks.folder(&settings.dir, "--resume")?;
        remove_stale_temp_files(&settings.dir, |name| {
            parse_checkpoint_file_name(name).is_some()
        });
        if resume.is_none() && !list_checkpoints(&settings.dir)?.is_empty() {
            return Err(Error::config(
                "--checkpoint-dir",
                format!(
                    "{} already holds checkpoints; continue that run with --resume {0}, or choose an empty folder",
                    settings.dir.display()
                ),
            ));
        }
    }
    let mut interrupted_path = job.output.clone().into_os_string();
    interrupted_path.push(".interrupted.ckpt");
    Ok(RunPlan {
        settings,
        resume,
        interrupted_path: PathBuf::from(interrupted_path),
        locks,
    })
}

/// Options are validated before the checkpoint is read, so an option the checkpoint already
/// sets may be refused for want of the others (`--momentum` without `--optimizer momentum`):
/// say so when resuming.
pub fn explain(error: Error, args: &CheckpointArgs) -> Error {
    match error {
        Error::Config { option, message } if args.resume.is_some() => Error::Config {
            option,
            message: format!(
                "{message} (when resuming, leave out the options the checkpoint already sets)"
            ),
        },
        other => other,
    }
}

/// Makes `job` continue the checkpoint's run: options not given take the checkpoint's values;
/// given options that contradict it are refused, naming the option.
fn reconcile(args: &CheckpointArgs, job: &mut TrainJob, checkpoint: &Checkpoint) -> Result<()> {
    let given = |id: &str| args.given.contains(id);
    let run = &checkpoint.run;

    let checkpoint_dataset = match run.dataset.as_str() {
        "mnist" => DatasetKind::Mnist,
        "fashion" => DatasetKind::Fashion,
        other => {
            return Err(Error::config(
                "--resume",
                format!("the checkpoint names an unknown dataset {other:?}"),
            ))
        }
    };
    if given("dataset") && job.dataset != checkpoint_dataset {
        return Err(contradiction("--dataset", job.dataset.name(), &run.dataset));
    }
    job.dataset = checkpoint_dataset;
    if given("limit") && job.limit != run.limit {
        return Err(contradiction(
            "--limit",
            &describe_limit(job.limit),
            &describe_limit(run.limit),
        ));
    }
    job.limit = run.limit;
    if !given("data_dir") {
        job.data_dir = run.data_dir.clone();
    }
    if !given("output") {
        job.output = run.output.clone();
    }
    if !given("test_batch_size") {
        job.test_batch_size = run.test_batch_size;
    }

    // The training configuration and the validation settings, compared field by field as JSON
    // so that settings added later are covered without listing them here.
    let default_job = Cli::try_parse_from(["mnist-train"])
        .map_err(|e| Error::config("--resume", e.to_string()))?
        .train
        .validate()?;
    let known_ids: BTreeSet<String> = Cli::command()
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    let compare = |from_cli: Value, from_defaults: Value, from_checkpoint: Value| {
        let mut differing = Vec::new();
        diff_paths(&from_cli, &from_checkpoint, "", &mut differing);
        // Blame an option the user typed before one it changed indirectly (`--optimizer sgd`
        // also changes the default learning rate).
        let mut differing: Vec<(String, Option<String>)> = differing
            .into_iter()
            .filter(|path| path != "epochs")
            .map(|path| {
                let option = option_for_path(&path, &known_ids, &given);
                (path, option)
            })
            .collect();
        // Among those, an enum's variant name (`optimizer.name`) says more than its fields.
        differing.sort_by_key(|(path, option)| {
            let is_tag = path.ends_with(".name");
            (!option.as_deref().is_some_and(given), !is_tag)
        });
        for (path, option) in differing {
            let changed_from_default = lookup(&from_cli, &path) != lookup(&from_defaults, &path);
            if option.as_deref().is_some_and(given) || changed_from_default {
                let flag = option
                    .map(|id| format!("--{}", id.replace('_', "-")))
                    .unwrap_or_else(|| format!("the option setting `{path}`"));
                return Err(contradiction(
                    &flag,
                    &describe(lookup(&from_cli, &path)),
                    &describe(lookup(&from_checkpoint, &path)),
                ));
            }
        }
        Ok(())
    };
    compare(
        to_json(&job.config)?,
        to_json(&default_job.config)?,
        to_json(&checkpoint.config)?,
    )?;
    compare(
        to_json(&job.validation)?,
        to_json(&default_job.validation)?,
        to_json(&run.validation)?,
    )?;
    job.validation = run.validation.clone();
    let epochs = job.config.epochs;
    job.config = checkpoint.config.clone();
    if given("epochs") {
        let done = checkpoint.epoch + usize::from(checkpoint.step_in_epoch > 0);
        if epochs < done {
            return Err(Error::config(
                "--epochs",
                format!(
                    "{epochs} is fewer than the epochs the checkpoint has already started ({done})"
                ),
            ));
        }
        job.config.epochs = epochs;
    }
    Ok(())
}

fn contradiction(option: &str, given: &str, checkpoint: &str) -> Error {
    Error::config(
        option,
        format!(
            "{given} contradicts the checkpoint being resumed, which used {checkpoint}; leave the option out to continue with the checkpoint's value"
        ),
    )
}

fn describe_limit(limit: Option<usize>) -> String {
    limit.map_or_else(|| "no limit".to_string(), |n| n.to_string())
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "none".to_string(),
        Some(Value::String(text)) => text.clone(),
        // f32 settings as they are typed (0.01, not 0.009999999776482582).
        Some(Value::Number(number)) if !number.is_i64() && !number.is_u64() => {
            match number.as_f64() {
                Some(wide) if f64::from(wide as f32) == wide => (wide as f32).to_string(),
                _ => number.to_string(),
            }
        }
        // Lists as they are typed: `--hidden 256,128`.
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| describe(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::config("--resume", e.to_string()))
}

/// Dotted paths (`architecture.hidden`) of the leaves where `a` and `b` differ.
fn diff_paths(a: &Value, b: &Value, prefix: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a_map), Value::Object(b_map)) => {
            let keys: BTreeSet<&String> = a_map.keys().chain(b_map.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (a_map.get(key), b_map.get(key)) {
                    (Some(x), Some(y)) => diff_paths(x, y, &path, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |value, key| value.as_object()?.get(key))
}

/// The command-line option behind a config path: the innermost path segment that is an option
/// id (`architecture.hidden` → `hidden`, `batch_size.examples` → `batch_size`).
fn option_for_path(
    path: &str,
    known_ids: &BTreeSet<String>,
    given: &dyn Fn(&str) -> bool,
) -> Option<String> {
    path.rsplit('.').find_map(|segment| {
        // Config fields named differently from their options (the one given wins).
        let candidates: &[&str] = match segment {
            "split" => &["validation_split"],
            "schedule" => &["lr_schedule"],
            "warmup" => &["warmup_steps", "warmup_epochs"],
            other => return known_ids.contains(other).then(|| other.to_string()),
        };
        candidates
            .iter()
            .find(|id| given(id))
            .or(candidates.first())
            .filter(|id| known_ids.contains(**id))
            .map(|id| id.to_string())
    })
}

/// The data-dependent half of the plan: the trainer to run (fresh or resumed) and the run's
/// description for checkpoints.
impl RunPlan {
    /// A fresh trainer, or the resumed one after checking that `train` is the data it was
    /// trained on.
    pub fn trainer(&self, job: &TrainJob, train: &Dataset, progress: &Progress) -> Result<Trainer> {
        let Some((path, checkpoint)) = &self.resume else {
            return Ok(Trainer::new(job.config.clone()));
        };
        let architecture = &checkpoint.config.architecture;
        if architecture.inputs != train.pixels_per_image()
            || architecture.outputs != train.num_classes()
        {
            return Err(Error::model(
                path,
                format!(
                    "its network expects {} inputs and {} classes, but the data has {} pixels and {} classes",
                    architecture.inputs,
                    architecture.outputs,
                    train.pixels_per_image(),
                    train.num_classes()
                ),
            ));
        }
        let actual = fingerprint(train);
        if train.len() != checkpoint.run.train_examples || actual != checkpoint.run.data_fingerprint
        {
            return Err(Error::config(
                "--data-dir",
                format!(
                    "the training data in {} ({} examples, {actual}) is not the data checkpoint {} was trained on ({} examples, {})",
                    job.data_dir.display(),
                    train.len(),
                    path.display(),
                    checkpoint.run.train_examples,
                    checkpoint.run.data_fingerprint
                ),
            ));
        }
        progress.info(&format!(
            "Resuming from {} ({})",
            path.display(),
            checkpoint.position()
        ));
        let mut trainer = checkpoint.clone().into_trainer();
        trainer.config = job.config.clone();
        Ok(trainer)
    }

    /// What checkpoints record about this run.
    pub fn run_info(&self, job: &TrainJob) -> RunInfo {
        RunInfo {
            dataset: job.dataset.name().to_string(),
            data_dir: job.data_dir.clone(),
            limit: job.limit,
            train_examples: 0,
            data_fingerprint: String::new(),
            output: job.output.clone(),
            test_batch_size: job.test_batch_size,
            validation: job.validation.clone(),
            checkpoint_dir: self.settings.as_ref().map(|s| s.dir.clone()),
            checkpoint_every: self.settings.as_ref().and_then(|s| s.every_steps),
            keep_checkpoints: self.settings.as_ref().map_or(2, |s| s.keep),
        }
    }

    /// The final model could not be written (a full disk, say): if the run checkpointed, its
    /// newest checkpoint holds the trained weights, and resuming it writes the model.
    pub fn explain_save_failure(&self, error: Error) -> Error {
        let newest = self
            .settings
            .as_ref()
            .and_then(|settings| list_checkpoints(&settings.dir).ok())
            .and_then(|mut files| files.pop());
        match (error, newest) {
            (Error::Io { path, source }, Some(checkpoint)) => Error::Io {
                path,
                source: std::io::Error::new(
                    source.kind(),
                    format!(
                        "{source}; the trained weights are safe in {0}: `mnist-train train --resume {0}` writes the model once there is room (add --output to write it elsewhere)",
                        shell_quote(&checkpoint)
                    ),
                ),
            },
            (error, _) => error,
        }
    }

    /// After the model is saved: a default-location interrupt checkpoint that this run resumed
    /// from is now stale.
    pub fn finish(&self) {
        if let Some((path, _)) = &self.resume {
            if path == &self.interrupted_path {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What guards a training run: the checkpoint writer and the Ctrl-C/SIGTERM handler.
pub struct Safeguards<'a> {
    checkpointer: Checkpointer<'a>,
    interrupt: InterruptGuard,
    interrupted_path: PathBuf,
}

impl<'a> Safeguards<'a> {
    /// Installs the signal handlers; from now on Ctrl-C stops at the next batch boundary.
    pub fn install(plan: &RunPlan, job: &TrainJob, train: &'a Dataset) -> Result<Self> {
        Ok(Safeguards {
            checkpointer: Checkpointer::new(plan.settings.clone(), plan.run_info(job), train),
            interrupt: InterruptGuard::install()?,
            interrupted_path: plan.interrupted_path.clone(),
        })
    }

    /// After `fit`: if a signal stopped training, writes the checkpoint, says how to resume and
    /// returns [`Error::Interrupted`]. Also refuses weights that diverged in the last step.
    pub fn finish(mut self, trainer: &Trainer) -> Result<()> {
        let finished = trainer.epoch >= trainer.config.epochs;
        if self.interrupt.requested() && !finished {
            let path = self
                .checkpointer
                .save_interrupted(trainer, &self.interrupted_path)?;
            eprintln!(
                "Interrupted after {} epoch(s) and {} step(s); saved checkpoint {}",
                trainer.epoch,
                trainer.step_in_epoch,
                path.display()
            );
            eprintln!(
                "To continue: mnist-train train --resume {}",
                shell_quote(&path)
            );
            return Err(Error::Interrupted);
        }
        if !trainer.params.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteWeights {
                epoch: trainer.epoch,
                step: trainer.step_in_epoch,
            });
        }
        Ok(())
    }
}

/// Quotes a path for a copy-pasteable shell command when it needs it.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

impl Callback for Safeguards<'_> {
    fn on_step_end(&mut self, trainer: &Trainer) -> Result<Control> {
        self.checkpointer.on_step_end(trainer)?;
        self.interrupt.on_step_end(trainer)
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        self.checkpointer.on_epoch_end(trainer, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_final_save_points_to_the_newest_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ckpt-e0001-s0000000.ckpt", "ckpt-e0002-s0000000.ckpt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let plan = RunPlan {
            settings: Some(CheckpointSettings {
                dir: dir.path().to_path_buf(),
                every_steps: None,
                keep: 2,
            }),
            resume: None,
            interrupted_path: PathBuf::from("weights.bin.interrupted.ckpt"),
            locks: OutputLocks::default(),
        };
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let message = plan
            .explain_save_failure(Error::io("weights.bin", full))
            .to_string();
        assert!(
            message.starts_with("weights.bin: No space left on device; "),
            "{message}"
        );
        assert!(
            message.contains("ckpt-e0002-s0000000.ckpt: `mnist-train train --resume "),
            "{message}"
        );
        // Without checkpoints there is nothing to point to: the error is unchanged.
        let plan = RunPlan {
            settings: None,
            ..plan
        };
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert_eq!(
            plan.explain_save_failure(Error::io("weights.bin", denied))
                .to_string(),
            "weights.bin: denied"
        );
    }
}
