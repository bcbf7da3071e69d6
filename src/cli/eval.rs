//! `mnist-train eval`: evaluate a saved model on the test set — loss, accuracy, per-class
//! precision/recall/F1, the confusion matrix, the most-confused pairs, and optionally the most
//! confident mistakes drawn in the terminal.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::cli::explain_args::ExplainSettingsArgs;
use crate::cli::memory_args::MemoryArgs;
use crate::cli::DataArgs;
use crate::data::{load_split, Dataset, Split};
use crate::error::{Error, Result, Setting};
use crate::explain::{
    network_of, run_checks, unit_pixels, CheckReport, Method, PixelInputs, DEFAULT_CHECK_IMAGES,
};
use crate::interop::load_model;
use crate::model_file::Model;
use crate::nn::Mlp;
use crate::optim::privacy::PrivacyGuarantee;
use crate::plot::{save_figure, ConfusionHeatMap, PlotFormat};
use crate::predict::{fit_width, probabilities, render_half_blocks, tile_grid};
use crate::report::classification::{most_confused_pairs, ClassificationReport, ConfusedPair};
use crate::report::{print_json_line, ColorChoice, HumanOutput};
use crate::run;
use crate::train::memory::MemoryEstimate;
use crate::train::{evaluate, Evaluation};

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The model file to evaluate
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Examples per batch when evaluating
    #[arg(long, default_value_t = 1000, value_parser = crate::cli::at_least_one::<usize>)]
    pub test_batch_size: usize,
    /// How many of the most-confused (true, predicted) pairs to list
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub confused: usize,
    /// Draw the K most confident mistakes in the terminal with their true and predicted labels
    #[arg(long, value_name = "K")]
    pub show_errors: Option<usize>,
    /// Grey levels in terminal drawings: auto uses them on a terminal unless NO_COLOR is set or
    /// TERM=dumb
    #[arg(long, default_value_t = ColorChoice::Auto, value_parser = crate::cli::choice::<ColorChoice>())]
    pub color: ColorChoice,
    /// Print one JSON object on stdout (human text goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// Draw the confusion matrix as a heat map with counts to this SVG or PNG file
    #[arg(long, value_name = "PATH.svg|PATH.png")]
    pub plot: Option<PathBuf>,
    /// Check every attribution method on the first N test images: integrated gradients'
    /// completeness error, and deletion curves against a random order [default N: 200, or the
    /// whole test set when smaller]
    #[arg(long, value_name = "N")]
    pub explain_check: Option<Option<usize>>,
    #[command(flatten)]
    pub explain_settings: ExplainSettingsArgs,
}

/// Loads the test split of the dataset `model` was trained on, and checks that it fits the model.
pub fn load_test_set_for(model: &Model, model_path: &Path, data: &DataArgs) -> Result<Dataset> {
    let dataset = model.dataset;
    let data_dir = data.dir_for(dataset);
    let mut test_set = load_split(&data_dir, Split::Test, dataset)?;
    if test_set.pixels_per_image() != model.architecture.inputs
        || test_set.num_classes() != model.architecture.outputs
    {
        return Err(Error::model(
            model_path,
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
    Ok(test_set)
}

/// One misclassified test image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mistake {
    /// Position in the test set.
    pub index: usize,
    #[serde(rename = "true")]
    pub true_class: String,
    pub predicted: String,
    /// The model's probability for the class it predicted.
    pub confidence: f32,
}

/// The `"type": "evaluation"` object printed by `eval --json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationJson {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub model: String,
    pub dataset: String,
    pub class_names: Vec<String>,
    pub loss: f64,
    pub accuracy: f64,
    pub correct: usize,
    pub count: usize,
    #[serde(flatten)]
    pub report: ClassificationReport,
    /// `confusion_matrix[true][predicted]`
    pub confusion_matrix: Vec<Vec<u64>>,
    pub most_confused: Vec<ConfusedPair>,
    /// The most confident mistakes, most confident first (empty without --show-errors).
    pub errors: Vec<Mistake>,
    /// A privately trained model's (ε, δ) guarantee, from the model file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyGuarantee>,
    /// The attribution methods' quality check (with --explain-check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain_check: Option<CheckReport>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(path) = &args.plot {
        PlotFormat::from_path(Setting::Plot, path)?;
    }
    let human = HumanOutput::new(args.json);
    let model = load_model(&args.model)?;
    let test_set = load_test_set_for(&model, &args.model, &args.data)?;
    let check_settings = match args.explain_check {
        Some(count) => {
            let count = count.unwrap_or(DEFAULT_CHECK_IMAGES.min(test_set.len()));
            if count == 0 || count > test_set.len() {
                return Err(Error::config(
                    "--explain-check",
                    format!(
                        "{count} images: must be between 1 and the test set's {}",
                        test_set.len()
                    ),
                ));
            }
            Some((
                count,
                args.explain_settings
                    .settings(test_set.cols, test_set.rows)?,
            ))
        }
        None => None,
    };
    let mlp = Mlp::new(model.architecture.clone());
    let needed = MemoryEstimate::evaluation(&mlp, args.test_batch_size, test_set.len());
    run::budget::check(needed, args.memory.max_memory)?;
    let evaluation = evaluate(&mlp, &model.parameters, &test_set, args.test_batch_size);
    let report = ClassificationReport::from_confusion(&evaluation.confusion, &model.class_names);
    let pairs = most_confused_pairs(&evaluation.confusion, &model.class_names, args.confused);
    let mistakes = match args.show_errors {
        Some(count) => most_confident_mistakes(&mlp, &model, &test_set, count),
        None => Vec::new(),
    };

    human.line(&format!(
        "Model: {} ({} parameters, layers {}, trained on {})",
        args.model.display(),
        mlp.parameter_count(),
        model.architecture.widths_label(),
        model.dataset
    ));
    if let Some(privacy) = &model.privacy {
        human.line(&format!("Trained privately: {}", privacy.describe()));
    }
    human.line(&format!(
        "Test loss: {:.4} - test accuracy: {:.4} ({}/{})",
        evaluation.loss, evaluation.accuracy, evaluation.correct, evaluation.count
    ));
    human.line("");
    human.print(&report.format_table());
    human.line("");
    human.print(&format_confusion_matrix(&evaluation, &model.class_names));
    if !pairs.is_empty() {
        human.line("");
        human.line("Most confused (true → predicted: count)");
        for pair in &pairs {
            human.line(&format!(
                "  {} → {}: {}",
                pair.true_class, pair.predicted_class, pair.count
            ));
        }
    }
    if args.show_errors.is_some() {
        human.line("");
        let color = human.use_color(args.color);
        human.print(&format_mistakes(&mistakes, &test_set, color));
    }
    let explain_check = check_settings.map(|(count, settings)| {
        let network = network_of(&model);
        let pixel_model = PixelInputs::new(&network, model.normalization);
        let images: Vec<Vec<f32>> = (0..count)
            .map(|index| unit_pixels(test_set.image(index)))
            .collect();
        run_checks(
            &pixel_model,
            &images,
            test_set.cols,
            &settings,
            &Method::ALL,
        )
    });
    if let Some(report) = &explain_check {
        human.line("");
        human.print(&report.format_table());
    }
    if let Some(path) = &args.plot {
        let heat_map = ConfusionHeatMap {
            title: format!(
                "{} on the {} test set - accuracy {:.4}",
                args.model.display(),
                model.dataset,
                evaluation.accuracy
            ),
            class_names: model.class_names.clone(),
            confusion: evaluation.confusion.clone(),
        };
        save_figure(Setting::Plot, path, &heat_map)?;
        eprintln!("Saved confusion matrix plot to {}", path.display());
    }
    if args.json {
        print_json_line(&EvaluationJson {
            kind: "evaluation",
            model: args.model.display().to_string(),
            dataset: model.dataset.to_string(),
            class_names: model.class_names.clone(),
            loss: evaluation.loss,
            accuracy: evaluation.accuracy,
            correct: evaluation.correct,
            count: evaluation.count,
            report,
            confusion_matrix: evaluation.confusion.clone(),
            most_confused: pairs,
            errors: mistakes,
            privacy: model.privacy.clone(),
            explain_check,
        })?;
    }
    Ok(())
}

/// The `count` misclassified test images the model was most sure about.
pub fn most_confident_mistakes(
    mlp: &Mlp,
    model: &Model,
    test_set: &Dataset,
    count: usize,
) -> Vec<Mistake> {
    let all = probabilities(
        mlp,
        &model.parameters,
        model.normalization,
        &test_set.images,
    );
    let mut mistakes: Vec<(usize, usize, f32)> = all
        .iter()
        .enumerate()
        .filter_map(|(index, probs)| {
            let top = crate::predict::top_classes(probs, 1)[0];
            (top.class != test_set.labels[index] as usize).then_some((
                index,
                top.class,
                top.probability,
            ))
        })
        .collect();
    mistakes.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    mistakes
        .into_iter()
        .take(count)
        .map(|(index, predicted, confidence)| Mistake {
            index,
            true_class: test_set.class_names[test_set.labels[index] as usize].clone(),
            predicted: test_set.class_names[predicted].clone(),
            confidence,
        })
        .collect()
}

/// Each mistake as a captioned half-block drawing, three to a row.
fn format_mistakes(mistakes: &[Mistake], test_set: &Dataset, color: bool) -> String {
    if mistakes.is_empty() {
        return "No mistakes to show.\n".to_string();
    }
    let width = test_set.cols;
    let tiles: Vec<Vec<String>> = mistakes
        .iter()
        .map(|mistake| {
            let mut tile = vec![
                fit_width(&format!("test image {}", mistake.index), width),
                fit_width(&format!("true: {}", mistake.true_class), width),
                fit_width(
                    &format!(
                        "pred: {} {:.1}%",
                        mistake.predicted,
                        mistake.confidence * 100.0
                    ),
                    width,
                ),
            ];
            tile.extend(render_half_blocks(
                test_set.image(mistake.index),
                width,
                test_set.rows,
                color,
            ));
            tile
        })
        .collect();
    let mut out = format!("The {} most confident mistakes\n", mistakes.len());
    for line in tile_grid(&tiles, width, 3) {
        out.push_str(&line);
        out.push('\n');
    }
    out
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
