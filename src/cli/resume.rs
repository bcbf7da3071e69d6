//! `--checkpoint-dir`, `--checkpoint-every`, `--keep-checkpoints` and `--resume`: the checkpoint
//! policy they ask for, and the resumed checkpoint reconciled with the command line (the library
//! compares settings; this layer knows which options were typed and names them in errors).

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser};

use crate::checkpoint::resolve_resume_path;
use crate::cli::Cli;
use crate::error::{Error, Result};
use crate::run::{self, CheckpointPolicy, Conflict, Resume, RunSpec, DEFAULT_KEEP_CHECKPOINTS};

#[derive(Debug, Clone, Default, Args)]
pub struct CheckpointArgs {
    /// Write a checkpoint into DIR at the end of every epoch (created if missing); resume with
    /// --resume DIR
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Also write a checkpoint every N optimization steps (needs --checkpoint-dir)
    #[arg(long, value_name = "N", value_parser = crate::cli::at_least_one::<usize>)]
    pub checkpoint_every: Option<usize>,
    /// How many of the newest checkpoints to keep (plus the best one when validating)
    #[arg(long, value_name = "K", default_value_t = DEFAULT_KEEP_CHECKPOINTS, value_parser = crate::cli::at_least_one::<usize>)]
    pub keep_checkpoints: usize,
    /// Continue a run exactly from a checkpoint file, or from the newest valid checkpoint in a
    /// folder. Options not given take the checkpoint's values; contradicting ones are refused
    #[arg(long, value_name = "PATH_OR_DIR")]
    pub resume: Option<PathBuf>,
    /// Ids of the train options given explicitly on the command line (filled by `cli::parse`).
    #[arg(skip)]
    pub given: BTreeSet<String>,
}

impl CheckpointArgs {
    /// Where and how often to checkpoint, as asked for.
    pub fn policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            dir: self.checkpoint_dir.clone(),
            every_steps: self.checkpoint_every,
            keep: self.keep_checkpoints,
        }
    }
}

/// With `--resume`: loads the checkpoint and makes `spec` continue it (options not given take
/// the checkpoint's values; contradicting ones are refused, naming the option).
pub fn prepare(args: &CheckpointArgs, spec: &mut RunSpec) -> Result<Option<Resume>> {
    let Some(resume_path) = &args.resume else {
        return Ok(None);
    };
    let resolved = resolve_resume_path(resume_path)?;
    for reason in &resolved.skipped {
        eprintln!("warning: skipping unusable checkpoint {reason}");
    }
    let defaults = Cli::try_parse_from(["mnist-train"])
        .map_err(|e| Error::config("--resume", e.to_string()))?
        .train
        .to_spec()?;
    let known_ids: BTreeSet<String> = Cli::command()
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    let given_id = |id: &str| args.given.contains(id);
    let option = |setting: &str| option_for_path(setting, &known_ids, &given_id);
    let given = |setting: &str| option(setting).as_deref().is_some_and(given_id);
    let resumed_folder = resume_path.is_dir().then_some(resume_path.as_path());
    run::reconcile(spec, &defaults, &given, &resolved.checkpoint, resumed_folder).map_err(
        |conflict| match conflict {
            Conflict::Contradiction {
                setting,
                requested,
                checkpoint,
            } => {
                let flag = option(&setting)
                    .map(|id| format!("--{}", id.replace('_', "-")))
                    .unwrap_or_else(|| format!("the option setting `{setting}`"));
                Error::config(
                    flag,
                    format!(
                        "{requested} contradicts the checkpoint being resumed, which used {checkpoint}; leave the option out to continue with the checkpoint's value"
                    ),
                )
            }
            Conflict::TooFewEpochs { epochs, started } => Error::config(
                "--epochs",
                format!(
                    "{epochs} is fewer than the epochs the checkpoint has already started ({started})"
                ),
            ),
        },
    )?;
    Ok(Some(Resume {
        path: resolved.path,
        checkpoint: resolved.checkpoint,
    }))
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
