//! Do a folder's checkpoints come from one run? Two runs writing into one folder leave a mix of
//! same-named files; resuming "the newest" of a mix would silently continue an arbitrary one.
//!
//! Two checkpoints belong to one run when the settings that decide its trajectory agree (the
//! training configuration except the epoch count, which a resume may extend; the dataset, limit,
//! training set and validation split) and the older one's epoch history is the start of the newer
//! one's. Records carry wall-clock times, so even two runs with identical settings differ there.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::checkpoint::{list_checkpoints, Checkpoint};
use crate::error::{Error, Result};

/// Refuses a folder `dir` whose valid checkpoints do not all belong to the run of `chosen` (the
/// file at `chosen_path`), naming the two files and the settings that differ. Files that do not
/// load are ignored here (resuming reports the newer ones).
pub fn check_single_run(dir: &Path, chosen_path: &Path, chosen: &Checkpoint) -> Result<()> {
    let chosen_identity = flatten(&identity(chosen));
    for path in list_checkpoints(dir)? {
        if path == chosen_path {
            continue;
        }
        let Ok(other) = Checkpoint::load(&path) else {
            continue;
        };
        let differences = differences(&chosen_identity, &flatten(&identity(&other)));
        let reason = if !differences.is_empty() {
            format!("they differ in {}", differences.join(", "))
        } else if !histories_agree(chosen, &other) {
            "their settings agree but their epoch histories differ".to_string()
        } else {
            continue;
        };
        let name = |path: &Path| {
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        return Err(Error::model(
            dir,
            format!(
                "holds checkpoints of different runs: {} and {} ({reason}); resume from one file, or move the other run's checkpoints away",
                name(chosen_path),
                name(&path),
            ),
        ));
    }
    Ok(())
}

/// The settings that make a run what it is, as JSON.
fn identity(checkpoint: &Checkpoint) -> Value {
    let spec = &checkpoint.spec;
    let mut config = serde_json::to_value(&spec.training).unwrap_or(Value::Null);
    if let Some(fields) = config.as_object_mut() {
        fields.remove("epochs");
    }
    serde_json::json!({
        "config": config,
        "dataset": spec.dataset.name(),
        "limit": spec.limit,
        "train_examples": checkpoint.data.examples,
        "data_fingerprint": checkpoint.data.fingerprint,
        "validation_split": spec.validation.split,
    })
}

/// Leaf values by dotted path (`config.optimizer.adam.beta1`), as JSON text.
fn flatten(value: &Value) -> BTreeMap<String, String> {
    fn walk(value: &Value, path: String, out: &mut BTreeMap<String, String>) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(field, child, out);
                }
            }
            leaf => {
                out.insert(path, leaf.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

/// "seed (42 vs 7)" for every path whose value differs, config paths without their `config.`.
fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let missing = "none".to_string();
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (left, right) = (
                a.get(path).unwrap_or(&missing),
                b.get(path).unwrap_or(&missing),
            );
            let name = path.strip_prefix("config.").unwrap_or(path);
            (left != right).then(|| format!("{name} ({left} vs {right})"))
        })
        .collect()
}

/// One history is the start of the other.
fn histories_agree(a: &Checkpoint, b: &Checkpoint) -> bool {
    let shared = a.history.len().min(b.history.len());
    a.history[..shared] == b.history[..shared]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TrainingData;
    use crate::data::DatasetKind;
    use crate::run::RunSpec;
    use crate::train::{EpochRecord, TrainConfig, Trainer};

    fn record(epoch: usize, seconds: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 1.0 / epoch as f64,
            accuracy: 0.5,
            val_loss: None,
            val_accuracy: None,
            learning_rate: 0.001,
            seconds,
            samples_per_second: 100.0 / seconds,
            epsilon: None,
        }
    }

    /// A checkpoint after `history.len()` epochs of a run with `config`, saved into `dir`.
    fn save(dir: &Path, config: &TrainConfig, history: Vec<EpochRecord>) -> std::path::PathBuf {
        let mut trainer = Trainer::new(config.clone());
        trainer.epoch = history.len();
        trainer.history = history;
        let spec = RunSpec::new(config.clone(), DatasetKind::Mnist);
        let data = TrainingData {
            examples: 100,
            fingerprint: "crc32:01234567".to_string(),
        };
        let checkpoint = Checkpoint::capture(&trainer, &spec, &data);
        let path = dir.join(checkpoint.file_name());
        checkpoint.save(&path).unwrap();
        path
    }

    fn small_config(seed: u64) -> TrainConfig {
        let mut config = TrainConfig {
            seed,
            ..TrainConfig::default()
        };
        config.architecture.hidden = vec![4];
        config
    }

    fn check_newest(dir: &Path) -> Result<()> {
        let newest = list_checkpoints(dir).unwrap().pop().unwrap();
        let checkpoint = Checkpoint::load(&newest).unwrap();
        check_single_run(dir, &newest, &checkpoint)
    }

    #[test]
    fn one_runs_checkpoints_pass_even_after_a_resume_extended_its_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(1);
        save(dir.path(), &config, vec![record(1, 2.0)]);
        let extended = TrainConfig {
            epochs: 10,
            ..config
        };
        save(dir.path(), &extended, vec![record(1, 2.0), record(2, 2.5)]);
        assert!(check_newest(dir.path()).is_ok());
    }

    #[test]
    fn checkpoints_of_two_seeds_are_refused_naming_the_seed_and_both_files() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &small_config(1), vec![record(1, 2.0)]);
        save(
            dir.path(),
            &small_config(2),
            vec![record(1, 2.0), record(2, 2.0)],
        );
        let message = check_newest(dir.path()).unwrap_err().to_string();
        assert!(message.contains("different runs"), "{message}");
        assert!(message.contains("seed (2 vs 1)"), "{message}");
        assert!(message.contains("ckpt-e0001-s0000000.ckpt"), "{message}");
        assert!(message.contains("ckpt-e0002-s0000000.ckpt"), "{message}");
        assert!(!message.contains("epochs"), "{message}");
    }

    #[test]
    fn same_settings_with_diverging_histories_are_two_runs() {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(1);
        save(dir.path(), &config, vec![record(1, 2.0)]);
        save(dir.path(), &config, vec![record(1, 3.0), record(2, 2.0)]);
        let message = check_newest(dir.path()).unwrap_err().to_string();
        assert!(message.contains("histories differ"), "{message}");
    }
}
