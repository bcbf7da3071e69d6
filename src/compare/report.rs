//! The comparison's outputs: a table (plain text for the terminal, Markdown for documents), the
//! per-epoch history of every variant as CSV and as JSON.

use serde::Serialize;

use crate::compare::{VariantFigures, VariantResult};
use crate::report::history::{format_history_line, HISTORY_HEADER};
use crate::report::table::aligned_table;
use crate::train::EpochRecord;

const COLUMNS: [&str; 9] = [
    "variant",
    "optimizer",
    "batch",
    "lr",
    "steps",
    "final train loss",
    "test accuracy",
    "train time",
    "samples/s",
];

fn cells(result: &VariantResult) -> [String; 9] {
    let variant = &result.variant;
    let (loss, accuracy) = match &result.diverged {
        Some(_) => ("diverged".to_string(), "-".to_string()),
        None => (
            format!("{:.4}", result.figures.final_train_loss),
            format!("{:.2}%", 100.0 * result.figures.test_accuracy),
        ),
    };
    [
        variant.name.clone(),
        variant.optimizer.name().to_string(),
        variant.batch_size.label(),
        variant.learning_rate.to_string(),
        result.figures.steps.to_string(),
        loss,
        accuracy,
        format!("{:.2}s", result.figures.train_seconds),
        format!("{:.0}", result.figures.samples_per_second),
    ]
}

/// An aligned plain-text table, one row per variant (variant, optimizer and batch are names).
pub fn format_table(results: &[VariantResult]) -> String {
    let rows: Vec<[String; 9]> = results.iter().map(cells).collect();
    aligned_table(&COLUMNS, &rows, 3)
}

/// The same table in Markdown.
pub fn format_markdown_table(results: &[VariantResult]) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
    for result in results {
        out.push_str(&format!("| {} |\n", cells(result).join(" | ")));
    }
    out
}

/// `variant,epoch,loss,accuracy,test_loss,test_accuracy,learning_rate,seconds,samples_per_second`:
/// the training history's columns (see `train --history`) with the variant in front; the held-out
/// metrics are on the test set, hence `test_*`.
pub fn format_csv(results: &[VariantResult]) -> String {
    let mut out = format!("variant,{}\n", HISTORY_HEADER.replace("val_", "test_"));
    for result in results {
        for record in &result.history {
            out.push_str(&format!(
                "{},{}",
                result.variant.name,
                format_history_line(record)
            ));
        }
    }
    out
}

/// The JSON document: the shared settings, then every variant's figures and history.
#[derive(Debug, Serialize)]
pub struct CompareJson<'a> {
    pub epochs: usize,
    pub seed: u64,
    pub train_images: usize,
    pub test_images: usize,
    pub variants: Vec<VariantJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct VariantJson<'a> {
    pub name: &'a str,
    pub optimizer: crate::optim::OptimizerConfig,
    /// A number, or `"full"`.
    pub batch_size: String,
    pub learning_rate: f32,
    #[serde(flatten)]
    pub figures: VariantFigures,
    pub diverged: Option<&'a str>,
    pub history: Vec<EpochJson>,
}

/// One epoch of a variant; `test_*` are measured on the test set after the epoch.
#[derive(Debug, Serialize)]
pub struct EpochJson {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub learning_rate: f32,
    pub seconds: f64,
    pub samples_per_second: f64,
}

impl From<&EpochRecord> for EpochJson {
    fn from(record: &EpochRecord) -> Self {
        EpochJson {
            epoch: record.epoch,
            loss: record.loss,
            accuracy: record.accuracy,
            test_loss: record.val_loss,
            test_accuracy: record.val_accuracy,
            learning_rate: record.learning_rate,
            seconds: record.seconds,
            samples_per_second: record.samples_per_second,
        }
    }
}

impl<'a> VariantJson<'a> {
    pub fn new(result: &'a VariantResult) -> Self {
        VariantJson {
            name: &result.variant.name,
            optimizer: result.variant.optimizer,
            batch_size: result.variant.batch_size.label(),
            learning_rate: result.variant.learning_rate,
            figures: result.figures,
            diverged: result.diverged.as_deref(),
            history: result.history.iter().map(EpochJson::from).collect(),
        }
    }
}
