//! `mnist-train eval`: evaluate a saved model on the test set.

use std::path::PathBuf;

use clap::Args;

use crate::cli::DataArgs;
use crate::data::{load_split, DatasetKind, Split};
use crate::error::{Error, Result};
use crate::model_file::Model;
use crate::nn::Mlp;
use crate::train::{evaluate, Evaluation};

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The model file to evaluate
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Examples per batch when evaluating
    #[arg(long, default_value_t = 1000)]
    pub test_batch_size: usize,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.test_batch_size == 0 {
        return Err(Error::config("--test-batch-size", "must be at least 1"));
    }
    let model = Model::load(&args.model)?;
    let dataset = match model.dataset.as_str() {
        "fashion" => DatasetKind::Fashion,
        _ => DatasetKind::Mnist,
    };
    let data_dir = args.data.data_dir.unwrap_or_else(|| dataset.default_dir());
    let mut test_set = load_split(&data_dir, Split::Test, dataset)?;
    if test_set.pixels_per_image() != model.architecture.inputs
        || test_set.num_classes() != model.architecture.outputs
    {
        return Err(Error::model(
            &args.model,
            format!(
                "expects {} inputs and {} classes, but the data has {} pixels and {} classes",
                model.architecture.inputs,
                model.architecture.outputs,
                test_set.pixels_per_image(),
                test_set.num_classes()
            ),
        ));
    }
    test_set.class_names = model.class_names.clone();
    let mlp = Mlp::new(model.architecture.clone());
    let evaluation = evaluate(&mlp, &model.parameters, &test_set, args.test_batch_size);
    println!(
        "Model: {} ({} parameters, layers {}, trained on {})",
        args.model.display(),
        mlp.parameter_count(),
        model
            .architecture
            .widths()
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        model.dataset
    );
    println!(
        "Test loss: {:.4} - test accuracy: {:.4} ({}/{})",
        evaluation.loss, evaluation.accuracy, evaluation.correct, evaluation.count
    );
    println!();
    print!(
        "{}",
        format_confusion_matrix(&evaluation, &model.class_names)
    );
    Ok(())
}

/// The confusion matrix as a table: rows are true classes, columns predicted classes.
pub fn format_confusion_matrix(evaluation: &Evaluation, class_names: &[String]) -> String {
    let label_width = class_names
        .iter()
        .map(|n| n.len())
        .max()
        .unwrap_or(1)
        .max(4);
    let cell_width = evaluation
        .confusion
        .iter()
        .flatten()
        .map(|c| c.to_string().len())
        .max()
        .unwrap_or(1)
        .max(
            class_names
                .iter()
                .map(|n| n.len().min(6))
                .max()
                .unwrap_or(1),
        )
        + 1;
    let mut out = String::from("Confusion matrix (rows: true class, columns: predicted class)\n");
    out.push_str(&format!("{:>label_width$} |", "true"));
    for name in class_names {
        let short: String = name.chars().take(6).collect();
        out.push_str(&format!("{short:>cell_width$}"));
    }
    out.push('\n');
    out.push_str(&"-".repeat(label_width + 2 + cell_width * class_names.len()));
    out.push('\n');
    for (name, row) in class_names.iter().zip(&evaluation.confusion) {
        out.push_str(&format!("{name:>label_width$} |"));
        for count in row {
            out.push_str(&format!("{count:>cell_width$}"));
        }
        out.push('\n');
    }
    out
}
