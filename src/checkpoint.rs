//! Checkpoint files: everything needed to continue a training run exactly where it stopped.
//!
//! A checkpoint uses the model file's container (see [`crate::model_file`]) with
//! `"kind": "checkpoint"`. Its JSON header holds the training configuration, the run's data and
//! output settings, the position (completed epochs, steps into the current epoch), the running
//! sums of the unfinished epoch, the optimizer's step count, the metric history and the
//! callbacks' state (e.g. early stopping). Its data section holds, bit-exact, the parameters,
//! then each optimizer slot (e.g. Adam's two moments), then the callbacks' tensors.
//!
//! No random-generator state is stored because there is none to store: every random stream is
//! derived from `(seed, purpose, epoch or global step, shard)` (see [`crate::rng`]), so the seed
//! in the configuration plus the position reproduce every later shuffle and dropout mask.
//!
//! In a checkpoint folder, files are named `ckpt-e{EPOCHS}-s{STEPS}.ckpt` (e.g.
//! `ckpt-e0003-s0000000.ckpt` = after 3 whole epochs; `ckpt-e0003-s0000150.ckpt` = 150 steps into
//! the 4th epoch), so names sort in training order.

pub mod lineage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, DatasetKind};
use crate::error::{Error, Result};
use crate::model_file::{decode_container, encode_container, validate_architecture, write_atomic};
use crate::model_file::{read_bounded, TensorInfo};
use crate::optim::Optimizer;
use crate::run::spec::{CheckpointPolicy, RunSpec, ValidationPlan};
use crate::train::{CallbackState, EpochRecord, RunningMetrics, TrainConfig, Trainer};

const KIND: &str = "checkpoint";
const FILE_PREFIX: &str = "ckpt-e";
const FILE_SUFFIX: &str = ".ckpt";
const PARAMETERS_TENSOR: &str = "parameters";

/// Which training set a checkpointed run iterates over: a resume refuses different data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingData {
    /// Number of training examples (after the limit and the validation hold-out).
    pub examples: usize,
    /// [`fingerprint`] of the training set.
    pub fingerprint: String,
}

impl TrainingData {
    pub fn of(dataset: &Dataset) -> TrainingData {
        TrainingData {
            examples: dataset.len(),
            fingerprint: fingerprint(dataset),
        }
    }
}

/// The header's `run` object: the [`RunSpec`] beside its training configuration (which the
/// header stores as `config`), flat, as every version so far has written it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRecord {
    dataset: DatasetKind,
    data_dir: PathBuf,
    limit: Option<usize>,
    train_examples: usize,
    data_fingerprint: String,
    output: Option<PathBuf>,
    test_batch_size: usize,
    validation: ValidationPlan,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_every: Option<usize>,
    keep_checkpoints: usize,
}

impl RunRecord {
    fn new(spec: &RunSpec, data: &TrainingData) -> RunRecord {
        RunRecord {
            dataset: spec.dataset,
            data_dir: spec.data_dir.clone(),
            limit: spec.limit,
            train_examples: data.examples,
            data_fingerprint: data.fingerprint.clone(),
            output: spec.output.clone(),
            test_batch_size: spec.test_batch_size,
            validation: spec.validation.clone(),
            checkpoint_dir: spec.checkpoints.dir.clone(),
            checkpoint_every: spec.checkpoints.every_steps,
            keep_checkpoints: spec.checkpoints.keep,
        }
    }

    fn into_spec(self, training: TrainConfig) -> (RunSpec, TrainingData) {
        let spec = RunSpec {
            training,
            dataset: self.dataset,
            data_dir: self.data_dir,
            limit: self.limit,
            test_batch_size: self.test_batch_size,
            validation: self.validation,
            validate_on_test_set: false,
            output: self.output,
            checkpoints: CheckpointPolicy {
                dir: self.checkpoint_dir,
                every_steps: self.checkpoint_every,
                keep: self.keep_checkpoints,
            },
            threads: None,
            memory_limit: None,
            // A checkpointed run's noise is in `training.privacy` already.
            privacy: None,
        };
        let data = TrainingData {
            examples: self.train_examples,
            fingerprint: self.data_fingerprint,
        };
        (spec, data)
    }
}

/// A training run frozen between two steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub program_version: String,
    /// The run being checkpointed; `spec.training` is the trainer's configuration.
    pub spec: RunSpec,
    /// What it trains on.
    pub data: TrainingData,
    /// Completed epochs.
    pub epoch: usize,
    /// Completed steps of the current epoch.
    pub step_in_epoch: usize,
    pub running: RunningMetrics,
    pub optimizer: Optimizer,
    pub history: Vec<EpochRecord>,
    pub callback_state: BTreeMap<String, CallbackState>,
    pub params: Vec<f32>,
}

/// The JSON header; tensors are listed in data-section order.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    kind: String,
    program_version: String,
    config: TrainConfig,
    run: RunRecord,
    epoch: usize,
    step_in_epoch: usize,
    optimizer_steps: u64,
    running: RunningMetrics,
    history: Vec<EpochRecord>,
    callback_state: BTreeMap<String, serde_json::Value>,
    tensors: Vec<TensorInfo>,
}

/// Only the field that says what a container file is, to name the file type in errors.
#[derive(Deserialize)]
struct KindOnly {
    kind: String,
}

impl Checkpoint {
    /// Captures a trainer's complete state, running `spec` on `data`.
    pub fn capture(trainer: &Trainer, spec: &RunSpec, data: &TrainingData) -> Checkpoint {
        Checkpoint {
            program_version: env!("CARGO_PKG_VERSION").to_string(),
            spec: RunSpec {
                training: trainer.config.clone(),
                ..spec.clone()
            },
            data: data.clone(),
            epoch: trainer.epoch,
            step_in_epoch: trainer.step_in_epoch,
            running: trainer.running.clone(),
            optimizer: trainer.optimizer.clone(),
            history: trainer.history.clone(),
            callback_state: trainer.callback_state.clone(),
            params: trainer.params.clone(),
        }
    }

    /// A trainer positioned exactly where this checkpoint was taken.
    pub fn into_trainer(self) -> Trainer {
        let mut trainer = Trainer::new(self.spec.training);
        trainer.params = self.params;
        trainer.optimizer = self.optimizer;
        trainer.epoch = self.epoch;
        trainer.step_in_epoch = self.step_in_epoch;
        trainer.running = self.running;
        trainer.history = self.history;
        trainer.callback_state = self.callback_state;
        trainer
    }

    /// "epoch 3, step 150" in the user's 1-based terms: where training continues.
    pub fn position(&self) -> String {
        format!(
            "after {} epoch(s) and {} step(s)",
            self.epoch, self.step_in_epoch
        )
    }

    /// The file name this checkpoint gets in a checkpoint folder.
    pub fn file_name(&self) -> String {
        checkpoint_file_name(self.epoch, self.step_in_epoch)
    }

    /// Serializes the checkpoint into the container format.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.params.len();
        let mut tensors = vec![TensorInfo {
            name: PARAMETERS_TENSOR.to_string(),
            shape: vec![n],
        }];
        let mut data: Vec<&[f32]> = vec![&self.params];
        for (index, slot) in self.optimizer.slots.iter().enumerate() {
            tensors.push(TensorInfo {
                name: format!("optimizer.slot{index}"),
                shape: vec![slot.len()],
            });
            data.push(slot);
        }
        let mut callback_values = BTreeMap::new();
        for (key, state) in &self.callback_state {
            callback_values.insert(key.clone(), state.values.clone());
            for (name, tensor) in &state.tensors {
                tensors.push(TensorInfo {
                    name: format!("callback.{key}.{name}"),
                    shape: vec![tensor.len()],
                });
                data.push(tensor);
            }
        }
        let header = Header {
            kind: KIND.to_string(),
            program_version: self.program_version.clone(),
            config: self.spec.training.clone(),
            run: RunRecord::new(&self.spec, &self.data),
            epoch: self.epoch,
            step_in_epoch: self.step_in_epoch,
            optimizer_steps: self.optimizer.steps,
            running: self.running.clone(),
            history: self.history.clone(),
            callback_state: callback_values,
            tensors,
        };
        // Plain structs of numbers and strings always serialize; non-finite floats become null
        // and are refused when loading, never silently accepted.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        encode_container(&header, &data)
    }

    /// Writes the checkpoint atomically. Refuses non-finite weights: a checkpoint of a diverged
    /// run would be worse than none.
    pub fn save(&self, path: &Path) -> Result<()> {
        if !all_finite(&self.params) || self.optimizer.slots.iter().any(|s| !all_finite(s)) {
            return Err(Error::model(
                path,
                "refusing to save a checkpoint with NaN or infinite weights (training diverged; try a smaller learning rate)",
            ));
        }
        let bytes = self.encode();
        // A checkpoint that would not load back is worse than an error now (e.g. a history
        // value JSON cannot hold): verify before it replaces anything.
        Checkpoint::decode(&bytes).map_err(|message| {
            Error::model(
                path,
                format!("refusing to save a checkpoint that would not load back: {message}"),
            )
        })?;
        write_atomic(path, &bytes)
    }

    /// Reads and verifies a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = read_bounded(path, "checkpoint")?;
        Checkpoint::decode(&bytes).map_err(|message| Error::model(path, message))
    }

    /// Parses and validates checkpoint bytes; the error is a message without the file name.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
        let (header_bytes, data) =
            decode_container(bytes).map_err(|m| m.replace("model file", "checkpoint"))?;
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(
                |error| match serde_json::from_slice::<KindOnly>(&header_bytes) {
                    Ok(KindOnly { kind }) if kind != KIND => {
                        format!("is a {kind} file, not a checkpoint")
                    }
                    _ => format!("invalid checkpoint header: {error}"),
                },
            )?;
        if header.kind != KIND {
            return Err(format!("is a {} file, not a checkpoint", header.kind));
        }
        validate_architecture(Path::new(""), &header.config.architecture).map_err(|e| match e {
            Error::Model { message, .. } => message,
            other => other.to_string(),
        })?;
        let parameter_count = header.config.architecture.parameter_count();
        let mut optimizer = Optimizer::new(header.config.optimizer, 0);
        let slot_count = optimizer.slots.len();

        // The tensor list must be exactly: parameters, the optimizer's slots, then callback
        // tensors of callbacks that have state. Sizes are checked before any slicing.
        let mut expected_names = vec![PARAMETERS_TENSOR.to_string()];
        expected_names.extend((0..slot_count).map(|i| format!("optimizer.slot{i}")));
        let fixed = expected_names.len();
        if header.tensors.len() < fixed
            || header.tensors[..fixed]
                .iter()
                .zip(&expected_names)
                .any(|(info, name)| &info.name != name || info.shape != [parameter_count])
        {
            return Err(
                "tensor list does not match the architecture and optimizer in its header"
                    .to_string(),
            );
        }
        let mut total: usize = 0;
        for info in &header.tensors {
            let len = info
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or("a tensor shape is out of range")?;
            total = total
                .checked_add(len)
                .ok_or("tensor sizes are out of range")?;
        }
        if total != data.len() {
            return Err(format!(
                "holds {} values but its header lists {total}",
                data.len()
            ));
        }
        let mut values = data.into_iter();
        let mut take = |len: usize| -> Vec<f32> { values.by_ref().take(len).collect() };
        let params = take(parameter_count);
        optimizer.slots = (0..slot_count).map(|_| take(parameter_count)).collect();
        optimizer.steps = header.optimizer_steps;
        let mut callback_state: BTreeMap<String, CallbackState> = header
            .callback_state
            .into_iter()
            .map(|(key, values)| {
                (
                    key,
                    CallbackState {
                        values,
                        tensors: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for info in &header.tensors[fixed..] {
            let len = info.shape.iter().product();
            let (key, name) = info
                .name
                .strip_prefix("callback.")
                .and_then(|rest| rest.split_once('.'))
                .ok_or_else(|| format!("unexpected tensor {:?}", info.name))?;
            let state = callback_state
                .get_mut(key)
                .ok_or_else(|| format!("tensor {:?} belongs to no callback", info.name))?;
            state.tensors.insert(name.to_string(), take(len));
        }
        if !all_finite(&params) {
            return Err("contains NaN or infinite weights".to_string());
        }
        let (spec, training_data) = header.run.into_spec(header.config);
        let checkpoint = Checkpoint {
            program_version: header.program_version,
            spec,
            data: training_data,
            epoch: header.epoch,
            step_in_epoch: header.step_in_epoch,
            running: header.running,
            optimizer,
            history: header.history,
            callback_state,
            params,
        };
        checkpoint.check_position()?;
        Ok(checkpoint)
    }

    /// The position fields must agree with each other and with the data the run used.
    fn check_position(&self) -> std::result::Result<(), String> {
        let examples = self.data.examples;
        let batch_size = self.spec.training.batch_size.resolve(examples);
        let steps_per_epoch = examples.div_ceil(batch_size);
        if examples == 0
            || self.step_in_epoch > steps_per_epoch
            || self.history.len() != self.epoch
            // A Poisson-sampled (private) epoch may draw more than `examples` in total.
            || (self.spec.training.privacy.is_none() && self.running.seen > examples)
        {
            return Err("its training position is inconsistent (epoch, step, history)".to_string());
        }
        Ok(())
    }
}

fn all_finite(values: &[f32]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// A short content hash of a training set (CRC-32 of its shape, pixels and labels): a resume
/// checks that it sees the same examples in the same order.
pub fn fingerprint(dataset: &Dataset) -> String {
    let mut hasher = crc32fast::Hasher::new();
    for value in [dataset.len(), dataset.rows, dataset.cols] {
        hasher.update(&(value as u64).to_le_bytes());
    }
    hasher.update(&dataset.images);
    hasher.update(&dataset.labels);
    format!("crc32:{:08x}", hasher.finalize())
}

/// `ckpt-e0003-s0000150.ckpt`
pub fn checkpoint_file_name(epoch: usize, step_in_epoch: usize) -> String {
    format!("{FILE_PREFIX}{epoch:04}-s{step_in_epoch:07}{FILE_SUFFIX}")
}

/// The (epoch, step) encoded in a checkpoint file name, if it is one.
pub fn parse_checkpoint_file_name(name: &str) -> Option<(usize, usize)> {
    let middle = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    let (epoch, step) = middle.split_once("-s")?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(epoch) || !all_digits(step) {
        return None;
    }
    Some((epoch.parse().ok()?, step.parse().ok()?))
}

/// The checkpoint files of a folder, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(position) = name.to_str().and_then(parse_checkpoint_file_name) {
            found.push((position, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// A checkpoint chosen by [`resolve_resume_path`], and the newer ones that had to be skipped.
pub struct Resolved {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
    /// One line per newer checkpoint file that could not be used, with the reason.
    pub skipped: Vec<String>,
}

/// `--resume PATH_OR_DIR`: a file is loaded as is; a folder yields its newest valid checkpoint,
/// provided the folder's checkpoints all come from that run.
pub fn resolve_resume_path(path: &Path) -> Result<Resolved> {
    if !path.is_dir() {
        let checkpoint = Checkpoint::load(path)?;
        return Ok(Resolved {
            path: path.to_path_buf(),
            checkpoint,
            skipped: Vec::new(),
        });
    }
    let mut skipped = Vec::new();
    for candidate in list_checkpoints(path)?.into_iter().rev() {
        match Checkpoint::load(&candidate) {
            Ok(checkpoint) => {
                lineage::check_single_run(path, &candidate, &checkpoint)?;
                return Ok(Resolved {
                    path: candidate,
                    checkpoint,
                    skipped,
                });
            }
            Err(error) => skipped.push(error.to_string()),
        }
    }
    let reason = if skipped.is_empty() {
        "holds no checkpoint files (ckpt-e*-s*.ckpt)".to_string()
    } else {
        format!("holds no valid checkpoint ({})", skipped.join("; "))
    };
    Err(Error::model(path, reason))
}

/// Which of a folder's checkpoints (`all`, oldest first) to delete so that the newest `keep`
/// remain, never `protect` (the best one).
pub fn checkpoints_to_delete(all: &[PathBuf], keep: usize, protect: Option<&Path>) -> Vec<PathBuf> {
    let remove_count = all.len().saturating_sub(keep);
    all[..remove_count]
        .iter()
        .filter(|path| Some(path.as_path()) != protect)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;

    #[test]
    fn an_unknown_dataset_name_is_refused_not_read_as_mnist() {
        let training = TrainConfig {
            architecture: Architecture {
                inputs: 4,
                hidden: vec![3],
                outputs: 2,
                ..Architecture::tutorial()
            },
            ..TrainConfig::default()
        };
        let spec = RunSpec::new(training.clone(), DatasetKind::Mnist);
        let data = TrainingData {
            examples: 10,
            fingerprint: "crc32:00000000".to_string(),
        };
        let bytes = Checkpoint::capture(&Trainer::new(training), &spec, &data).encode();
        assert!(Checkpoint::decode(&bytes).is_ok());
        let (header, tensors) = decode_container(&bytes).unwrap();
        let header = String::from_utf8(header)
            .unwrap()
            .replace(r#""dataset":"mnist""#, r#""dataset":"emnist""#);
        assert!(header.contains("emnist"), "the test edits the header");
        let slices: Vec<&[f32]> = vec![&tensors];
        let edited = encode_container(header.as_bytes(), &slices);
        let message = Checkpoint::decode(&edited).unwrap_err();
        assert!(message.contains(r#"unknown dataset "emnist""#), "{message}");
    }
}
