//! Continuing a run from a checkpoint: reconciling the requested run with the checkpoint's
//! (a pure function of the two, the defaults and what was asked for explicitly), and checking
//! that the resumed trainer sees the data it was trained on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checkpoint::{fingerprint, Checkpoint};
use crate::data::Dataset;
use crate::error::{Error, Result, Setting};
use crate::run::spec::RunSpec;
use crate::train::{Progress, Trainer};

/// A checkpoint to continue, and the file it came from.
#[derive(Debug, Clone)]
pub struct Resume {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
}

/// Why a requested run cannot continue a checkpoint. Settings are named by their path in the
/// run's JSON: `dataset`, `limit`, `epochs`, a training-configuration field
/// (`architecture.hidden`, `optimizer.name`, `learning_rate`, …) or a validation field
/// (`split`, `early_stopping`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The requested value of `setting` differs from the checkpoint's.
    Contradiction {
        setting: String,
        requested: String,
        checkpoint: String,
    },
    /// Fewer epochs than the checkpoint has already started.
    TooFewEpochs { epochs: usize, started: usize },
}

/// Makes `spec` continue the checkpoint's run. Settings not asked for explicitly (`given(path)`
/// false) take the checkpoint's values; explicit ones that contradict it are refused. A setting
/// that differs from `defaults` counts as asked for even when `given` does not say so (an option
/// that changed it indirectly). `resumed_folder`: the checkpoint folder being resumed, if one was
/// named; checkpoints keep going there.
pub fn reconcile(
    spec: &mut RunSpec,
    defaults: &RunSpec,
    given: &dyn Fn(&str) -> bool,
    checkpoint: &Checkpoint,
    resumed_folder: Option<&Path>,
) -> std::result::Result<(), Conflict> {
    let run = &checkpoint.spec;
    if given("dataset") && spec.dataset != run.dataset {
        return Err(contradiction(
            "dataset",
            spec.dataset.name(),
            run.dataset.name(),
        ));
    }
    spec.dataset = run.dataset;
    if given("limit") && spec.limit != run.limit {
        return Err(contradiction(
            "limit",
            &describe_limit(spec.limit),
            &describe_limit(run.limit),
        ));
    }
    spec.limit = run.limit;
    if !given("data_dir") {
        spec.data_dir = run.data_dir.clone();
    }
    if !given("output") && run.output.is_some() {
        spec.output = run.output.clone();
    }
    if !given("test_batch_size") {
        spec.test_batch_size = run.test_batch_size;
    }

    // The training configuration and the validation settings, compared field by field as JSON
    // so that settings added later are covered without listing them here.
    let sections = [
        [&spec.training, &defaults.training, &run.training].map(to_json),
        [&spec.validation, &defaults.validation, &run.validation].map(to_json),
    ];
    for [requested, default, from_checkpoint] in &sections {
        compare_settings(requested, default, from_checkpoint, given)?;
    }
    spec.validation = run.validation.clone();
    let epochs = spec.training.epochs;
    spec.training = run.training.clone();
    if given("epochs") {
        let started = checkpoint.epoch + usize::from(checkpoint.step_in_epoch > 0);
        if epochs < started {
            return Err(Conflict::TooFewEpochs { epochs, started });
        }
        spec.training.epochs = epochs;
    }

    // Keep checkpointing where the run did: the folder being resumed from, else the folder the
    // checkpoint names.
    if spec.checkpoints.dir.is_none() {
        let dir = resumed_folder
            .map(Path::to_path_buf)
            .or_else(|| run.checkpoints.dir.clone());
        if dir.is_some() {
            spec.checkpoints.every_steps =
                spec.checkpoints.every_steps.or(run.checkpoints.every_steps);
            if !given("keep_checkpoints") {
                spec.checkpoints.keep = run.checkpoints.keep;
            }
        }
        spec.checkpoints.dir = dir;
    }
    Ok(())
}

/// The first setting where `requested` and `checkpoint` differ and that was asked for (given,
/// or changed from the default), as a [`Conflict`].
fn compare_settings(
    requested: &Value,
    defaults: &Value,
    checkpoint: &Value,
    given: &dyn Fn(&str) -> bool,
) -> std::result::Result<(), Conflict> {
    let mut differing = Vec::new();
    diff_paths(requested, checkpoint, "", &mut differing);
    differing.retain(|path| path != "epochs");
    // Blame a setting the user typed before one it changed indirectly (`--optimizer sgd` also
    // changes the default learning rate); among those, an enum's variant name (`optimizer.name`)
    // says more than its fields.
    differing.sort_by_key(|path| (!given(path), !path.ends_with(".name")));
    for path in differing {
        let changed_from_default = lookup(requested, &path) != lookup(defaults, &path);
        if given(&path) || changed_from_default {
            return Err(contradiction(
                &path,
                &describe(lookup(requested, &path)),
                &describe(lookup(checkpoint, &path)),
            ));
        }
    }
    Ok(())
}

/// A fresh trainer, or the resumed one after checking that `train` is the data it was trained
/// on.
pub fn trainer_for(
    spec: &RunSpec,
    resume: Option<&Resume>,
    train: &Dataset,
    progress: &Progress,
) -> Result<Trainer> {
    let Some(Resume { path, checkpoint }) = resume else {
        return Ok(Trainer::new(spec.training.clone()));
    };
    let architecture = &checkpoint.spec.training.architecture;
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
    if train.len() != checkpoint.data.examples || actual != checkpoint.data.fingerprint {
        return Err(Error::setting(
            Setting::DataDir,
            format!(
                "the training data in {} ({} examples, {actual}) is not the data checkpoint {} was trained on ({} examples, {})",
                spec.data_dir.display(),
                train.len(),
                path.display(),
                checkpoint.data.examples,
                checkpoint.data.fingerprint
            ),
        ));
    }
    progress.info(&format!(
        "Resuming from {} ({})",
        path.display(),
        checkpoint.position()
    ));
    let mut trainer = checkpoint.clone().into_trainer();
    trainer.config = spec.training.clone();
    Ok(trainer)
}

fn contradiction(setting: &str, requested: &str, checkpoint: &str) -> Conflict {
    Conflict::Contradiction {
        setting: setting.to_string(),
        requested: requested.to_string(),
        checkpoint: checkpoint.to_string(),
    }
}

fn describe_limit(limit: Option<usize>) -> String {
    limit.map_or_else(|| "no limit".to_string(), |n| n.to_string())
}

/// A setting's value as it is typed on a command line.
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
        // Lists as they are typed: `256,128`.
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| describe(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Plain structs of numbers and strings always serialize.
fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TrainingData;
    use crate::data::DatasetKind;
    use crate::optim::{OptimizerConfig, OptimizerKind};
    use crate::train::{EpochRecord, TrainConfig};

    /// A spec as the command line builds it with no options, and a checkpoint of a run that
    /// used `hidden 64`, SGD at 0.05, 6 epochs and a checkpoint folder, one epoch in.
    fn defaults_and_checkpoint() -> (RunSpec, Checkpoint) {
        let defaults = RunSpec {
            output: Some("weights.bin".into()),
            ..RunSpec::new(TrainConfig::default(), DatasetKind::Mnist)
        };
        let mut run = defaults.clone();
        run.training.architecture.hidden = vec![64];
        run.training.optimizer = OptimizerConfig::defaults(OptimizerKind::Sgd);
        run.training.learning_rate = 0.05;
        run.training.epochs = 6;
        run.dataset = DatasetKind::Fashion;
        run.checkpoints.dir = Some("ckpts".into());
        run.checkpoints.keep = 4;
        let mut trainer = Trainer::new(run.training.clone());
        trainer.epoch = 1;
        trainer.history = vec![EpochRecord {
            epoch: 1,
            loss: 0.5,
            accuracy: 0.8,
            val_loss: None,
            val_accuracy: None,
            learning_rate: 0.05,
            epsilon: None,
            seconds: 1.0,
            samples_per_second: 100.0,
        }];
        let data = TrainingData {
            examples: 100,
            fingerprint: "crc32:00000000".to_string(),
        };
        (defaults, Checkpoint::capture(&trainer, &run, &data))
    }

    #[test]
    fn settings_not_given_take_the_checkpoints_values() {
        let (defaults, checkpoint) = defaults_and_checkpoint();
        let mut spec = defaults.clone();
        reconcile(&mut spec, &defaults, &|_| false, &checkpoint, None).unwrap();
        assert_eq!(spec.training, checkpoint.spec.training);
        assert_eq!(spec.dataset, DatasetKind::Fashion);
        // Checkpoints keep going where the run wrote them, with its retention.
        assert_eq!(spec.checkpoints.dir, Some(PathBuf::from("ckpts")));
        assert_eq!(spec.checkpoints.keep, 4);
        // A folder named with --resume wins over the one the checkpoint names.
        let mut spec = defaults.clone();
        let folder = Path::new("elsewhere");
        reconcile(&mut spec, &defaults, &|_| false, &checkpoint, Some(folder)).unwrap();
        assert_eq!(spec.checkpoints.dir.as_deref(), Some(folder));
    }

    #[test]
    fn a_given_setting_that_contradicts_the_checkpoint_is_named() {
        let (defaults, checkpoint) = defaults_and_checkpoint();
        let mut spec = defaults.clone();
        spec.training.architecture.hidden = vec![32, 16];
        let given = |setting: &str| setting == "architecture.hidden";
        assert_eq!(
            reconcile(&mut spec, &defaults, &given, &checkpoint, None),
            Err(Conflict::Contradiction {
                setting: "architecture.hidden".to_string(),
                requested: "32,16".to_string(),
                checkpoint: "64".to_string(),
            })
        );
        // The same value as the checkpoint's is no contradiction.
        let mut spec = defaults.clone();
        spec.training.architecture.hidden = vec![64];
        assert!(reconcile(&mut spec, &defaults, &given, &checkpoint, None).is_ok());
    }

    #[test]
    fn a_setting_changed_from_its_default_counts_as_asked_for() {
        // Nothing is reported as given, but the requested learning rate is not the default:
        // an option changed it indirectly, so it is a contradiction, not silently replaced.
        let (defaults, checkpoint) = defaults_and_checkpoint();
        let mut spec = defaults.clone();
        spec.training.learning_rate = 0.5;
        match reconcile(&mut spec, &defaults, &|_| false, &checkpoint, None) {
            Err(Conflict::Contradiction {
                setting,
                requested,
                checkpoint,
            }) => {
                assert_eq!(setting, "learning_rate");
                assert_eq!((requested.as_str(), checkpoint.as_str()), ("0.5", "0.05"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn more_epochs_extend_the_run_fewer_than_started_are_refused() {
        let (defaults, checkpoint) = defaults_and_checkpoint();
        let given = |setting: &str| setting == "epochs";
        let mut spec = defaults.clone();
        spec.training.epochs = 9;
        reconcile(&mut spec, &defaults, &given, &checkpoint, None).unwrap();
        assert_eq!(spec.training.epochs, 9);
        let mut spec = defaults.clone();
        spec.training.epochs = 0;
        assert_eq!(
            reconcile(&mut spec, &defaults, &given, &checkpoint, None),
            Err(Conflict::TooFewEpochs {
                epochs: 0,
                started: 1
            })
        );
    }
}
