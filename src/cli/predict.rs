//! `mnist-train predict`: classify image files (or test-set images) with a saved model and print
//! the most probable classes, optionally drawing the 28×28 input the network saw.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::cli::eval::load_test_set_for;
use crate::cli::DataArgs;
use crate::error::{Error, Result};
use crate::interop::load_model;
use crate::nn::Mlp;
use crate::predict::{
    load_grayscale, probabilities, render_half_blocks, side_by_side, to_mnist_frame, top_classes,
    InvertMode,
};
use crate::report::{print_json_line, ColorChoice, HumanOutput};

const FRAME: usize = crate::predict::preprocess::FRAME;

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The model file to predict with
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub model: PathBuf,
    /// PNG, JPEG or PGM images of one digit (or garment) each
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Predict test-set images by position (repeat or comma-separate for several)
    #[arg(long, value_name = "N", value_delimiter = ',')]
    pub index: Vec<usize>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Invert images before classifying (MNIST digits are light on dark); auto inverts images
    /// whose border is light
    #[arg(long, value_enum, default_value_t = InvertMode::Auto)]
    pub invert: InvertMode,
    /// How many of the most probable classes to print
    #[arg(long, default_value_t = 3, value_name = "K", value_parser = crate::cli::at_least_one::<usize>)]
    pub top: usize,
    /// Draw the 28×28 input the network saw, beside the prediction
    #[arg(long)]
    pub show: bool,
    /// Grey levels in terminal drawings: auto uses them on a terminal unless NO_COLOR is set or
    /// TERM=dumb
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print one JSON line per image on stdout (human text goes to stderr)
    #[arg(long)]
    pub json: bool,
}

/// One class and its probability in a prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreJson {
    pub index: usize,
    pub class: String,
    pub probability: f32,
}

/// The `"type": "prediction"` line printed per image by `predict --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionJson {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The image file, or `test:N` for a test-set image.
    pub source: String,
    /// Position in the test set (null for files).
    pub test_index: Option<usize>,
    /// The test image's label (null for files).
    pub true_class: Option<String>,
    pub predicted: String,
    pub predicted_index: usize,
    /// The `--top` most probable classes, most probable first.
    pub top: Vec<ScoreJson>,
    /// Every class's probability, in class order.
    pub probabilities: Vec<f32>,
}

/// One image to classify, already in MNIST form.
struct Input {
    source: String,
    test_index: Option<usize>,
    true_class: Option<String>,
    frame: Vec<u8>,
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.images.is_empty() && args.index.is_empty() {
        return Err(Error::config(
            "IMAGE",
            "give at least one image file, or --index N for a test-set image",
        ));
    }
    let model = load_model(&args.model)?;
    if model.architecture.inputs != FRAME * FRAME {
        return Err(Error::model(
            &args.model,
            format!(
                "expects {} inputs; predict feeds 28×28 = 784-pixel images",
                model.architecture.inputs
            ),
        ));
    }
    let mut inputs = Vec::new();
    if !args.index.is_empty() {
        let test_set = load_test_set_for(&model, &args.model, &args.data)?;
        for &index in &args.index {
            if index >= test_set.len() {
                return Err(Error::config(
                    "--index",
                    format!(
                        "{index} is out of range: the test set has {} images (0-{})",
                        test_set.len(),
                        test_set.len() - 1
                    ),
                ));
            }
            inputs.push(Input {
                source: format!("test:{index}"),
                test_index: Some(index),
                true_class: Some(model.class_names[test_set.labels[index] as usize].clone()),
                frame: test_set.image(index).to_vec(),
            });
        }
    }
    for path in &args.images {
        let image = load_grayscale(path)?;
        let frame =
            to_mnist_frame(&image, args.invert).map_err(|message| Error::data(path, message))?;
        inputs.push(Input {
            source: path.display().to_string(),
            test_index: None,
            true_class: None,
            frame,
        });
    }

    let mlp = Mlp::new(model.architecture.clone());
    let pixels: Vec<u8> = inputs
        .iter()
        .flat_map(|input| input.frame.iter().copied())
        .collect();
    let all = probabilities(&mlp, &model.parameters, model.normalization, &pixels);
    let human = HumanOutput::new(args.json);
    let color = human.use_color(args.color);
    let top_k = args.top.min(model.architecture.outputs);
    for (input, probs) in inputs.iter().zip(&all) {
        let top = top_classes(probs, top_k);
        let scores: Vec<ScoreJson> = top
            .iter()
            .map(|score| ScoreJson {
                index: score.class,
                class: model.class_names[score.class].clone(),
                probability: score.probability,
            })
            .collect();
        let mut title = input.source.clone();
        if let Some(true_class) = &input.true_class {
            title.push_str(&format!(" (true: {true_class})"));
        }
        if args.show {
            let mut text = vec![title, String::new()];
            text.extend(scores.iter().enumerate().map(|(rank, score)| {
                format!(
                    "{}. {:<12} {:>6.2}%",
                    rank + 1,
                    score.class,
                    score.probability * 100.0
                )
            }));
            let art = render_half_blocks(&input.frame, FRAME, FRAME, color);
            for line in side_by_side(&art, FRAME, &text, 3) {
                human.line(&line);
            }
            human.line("");
        } else {
            let ranked: Vec<String> = scores
                .iter()
                .map(|score| format!("{} ({:.2}%)", score.class, score.probability * 100.0))
                .collect();
            human.line(&format!("{title}: {}", ranked.join(", ")));
        }
        if args.json {
            print_json_line(&PredictionJson {
                kind: "prediction",
                source: input.source.clone(),
                test_index: input.test_index,
                true_class: input.true_class.clone(),
                predicted: scores[0].class.clone(),
                predicted_index: scores[0].index,
                top: scores,
                probabilities: probs.clone(),
            })?;
        }
    }
    Ok(())
}
