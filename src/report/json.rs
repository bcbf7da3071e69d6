//! JSON Lines on stdout: one compact object per line, flushed at once, so a script reading the
//! pipe sees each epoch as it finishes. Shared by every command's `--json` (train, eval, predict,
//! bench): call [`print_json_line`] with any `Serialize` value that has a `"type"` field.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::train::{Callback, Control, EpochRecord, Trainer};

/// Writes `value` as one line of compact JSON on stdout and flushes it.
pub fn print_json_line<T: Serialize>(value: &T) -> Result<()> {
    let mut line = serde_json::to_string(value).map_err(|error| {
        Error::io(
            "<stdout>",
            std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        )
    })?;
    line.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::io("<stdout>", error))
}

/// The `"type": "epoch"` line printed after every training epoch. `val_loss` and `val_accuracy`
/// are always present (`null` without a validation split) so the schema does not change shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochJson {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub epoch: usize,
    pub epochs: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub learning_rate: f32,
    /// Private runs only: ε spent so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    pub seconds: f64,
    pub samples_per_second: f64,
}

impl EpochJson {
    pub fn new(record: &EpochRecord, epochs: usize) -> Self {
        EpochJson {
            kind: "epoch",
            epoch: record.epoch,
            epochs,
            loss: record.loss,
            accuracy: record.accuracy,
            val_loss: record.val_loss,
            val_accuracy: record.val_accuracy,
            learning_rate: record.learning_rate,
            epsilon: record.epsilon,
            seconds: record.seconds,
            samples_per_second: record.samples_per_second,
        }
    }
}

/// Training callback printing one [`EpochJson`] line per epoch on stdout.
#[derive(Debug, Default)]
pub struct JsonLines;

impl Callback for JsonLines {
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        false
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        print_json_line(&EpochJson::new(record, trainer.config.epochs))?;
        Ok(Control::Continue)
    }
}
