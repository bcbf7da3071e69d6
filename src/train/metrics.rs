//! One metrics record per epoch: the single vocabulary shared by the printer, JSON lines,
//! CSV history, early stopping and checkpoints (Keras' names).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch (with dropout active, as Keras reports it).
    pub loss: f64,
    pub accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_accuracy: Option<f64>,
    pub learning_rate: f32,
    /// Private runs: ε spent so far (at the run's δ), by the privacy accountant.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub epsilon: Option<f64>,
    /// Wall time of the epoch's training steps.
    pub seconds: f64,
    pub samples_per_second: f64,
}

/// Loss and accuracy of a model on a dataset, with what is needed for a confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub correct: usize,
    pub count: usize,
    /// `confusion[true_class][predicted_class]`
    pub confusion: Vec<Vec<u64>>,
    /// Predicted class of every example, in dataset order.
    pub predictions: Vec<u8>,
}
