//! `mnist-train predict`: classify image files (or test-set images) with a saved model and print
//! the most probable classes, optionally drawing the 28×28 input the network saw.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::cli::eval::load_test_set_for;
use crate::cli::explain_args::ExplainSettingsArgs;
use crate::cli::DataArgs;
use crate::error::{Error, Result, Setting};
use crate::explain::render::{display_scale, legend, render_attribution, short_number};
use crate::explain::report::ExplanationJson;
use crate::explain::{
    attribute, network_of, unit_pixels, Attribution, Method, PixelInputs, Settings,
};
use crate::interop::load_model;
use crate::nn::Mlp;
use crate::plot::{save_figure, AttributionFigure, PlotFormat};
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
    #[arg(long, default_value_t = InvertMode::Auto, value_parser = crate::cli::choice::<InvertMode>())]
    pub invert: InvertMode,
    /// How many of the most probable classes to print
    #[arg(long, default_value_t = 3, value_name = "K", value_parser = crate::cli::at_least_one::<usize>)]
    pub top: usize,
    /// Draw the 28×28 input the network saw, beside the prediction
    #[arg(long)]
    pub show: bool,
    /// Grey levels in terminal drawings: auto uses them on a terminal unless NO_COLOR is set or
    /// TERM=dumb
    #[arg(long, default_value_t = ColorChoice::Auto, value_parser = crate::cli::choice::<ColorChoice>())]
    pub color: ColorChoice,
    /// Print one JSON line per image on stdout (human text goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// Explain each prediction with an attribution map drawn beside the digit:
    /// integrated-gradients (the default), saliency, input-x-gradient or occlusion
    #[arg(long, value_name = "METHOD", num_args = 0..=1,
          default_missing_value = Method::IntegratedGradients.name())]
    pub explain: Option<String>,
    /// The class whose score --explain explains, by index or name [default: the predicted class]
    #[arg(long, value_name = "CLASS")]
    pub target: Option<String>,
    /// Write each explanation as a picture (input, map, overlay, colour scale); with several
    /// images, the image's number is added to the file name (out-1.png, out-2.png, …)
    #[arg(long, value_name = "PATH.png|PATH.svg")]
    pub explain_out: Option<PathBuf>,
    #[command(flatten)]
    pub explain_settings: ExplainSettingsArgs,
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
    /// The attribution map (with --explain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<ExplanationJson>,
}

/// What `--explain` asked for, validated.
struct ExplainRequest {
    method: Method,
    target: Option<usize>,
    settings: Settings,
}

/// One image to classify, already in MNIST form.
struct Input {
    source: String,
    test_index: Option<usize>,
    true_class: Option<String>,
    frame: Vec<u8>,
}

pub fn run(mut args: PredictArgs) -> Result<()> {
    let method = match args.explain.take() {
        None => None,
        Some(value) => Some(explain_method(&value, &mut args.images)?),
    };
    if method.is_none() {
        for (option, given) in [
            ("--target", args.target.is_some()),
            ("--explain-out", args.explain_out.is_some()),
        ] {
            if given {
                return Err(Error::config(option, "only applies with --explain"));
            }
        }
    }
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
    if let Some(path) = &args.explain_out {
        PlotFormat::from_path(Setting::ExplanationPicture, path)?;
    }
    let explain = match method {
        Some(method) => Some(ExplainRequest {
            method,
            target: match &args.target {
                Some(text) => Some(parse_target(text, &model.class_names)?),
                None => None,
            },
            settings: args.explain_settings.settings(FRAME, FRAME)?,
        }),
        None => None,
    };
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
    let network = network_of(&model);
    let pixel_model = PixelInputs::new(&network, model.normalization);
    let several = inputs.len() > 1;
    for (number, (input, probs)) in inputs.iter().zip(&all).enumerate() {
        let top = top_classes(probs, top_k);
        let attribution = explain.as_ref().map(|request| {
            let target = request.target.unwrap_or(top[0].class);
            attribute(
                &pixel_model,
                &unit_pixels(&input.frame),
                FRAME,
                target,
                request.method,
                &request.settings,
            )
        });
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
        if let (Some(request), Some(attribution)) = (&explain, &attribution) {
            let scale = display_scale(&attribution.values);
            let mut text = vec![title.clone(), String::new()];
            text.extend(ranked_lines(&scores));
            text.push(String::new());
            text.extend(explanation_lines(
                attribution,
                &request.settings,
                &model.class_names,
                top[0].class,
                scale,
                color,
            ));
            let digit = render_half_blocks(&input.frame, FRAME, FRAME, color);
            let map = render_attribution(&attribution.values, FRAME, FRAME, scale, color);
            // Both drawings are full-width lines, so the text column stays aligned.
            let pictures: Vec<String> = digit
                .iter()
                .zip(&map)
                .map(|(digit_line, map_line)| format!("{digit_line}  {map_line}"))
                .collect();
            for line in side_by_side(&pictures, 2 * FRAME + 2, &text, 3) {
                human.line(&line);
            }
            human.line("");
            if let Some(path) = &args.explain_out {
                let path = numbered(path, several.then_some(number + 1));
                let figure = AttributionFigure {
                    title: format!("{title} - predicted {}", scores[0].class),
                    subtitle: figure_subtitle(attribution, &request.settings, &model.class_names),
                    pixels: input.frame.clone(),
                    values: attribution.values.clone(),
                    width: FRAME,
                    height: FRAME,
                    scale,
                };
                save_figure(Setting::ExplanationPicture, &path, &figure)?;
                eprintln!("Saved the explanation picture to {}", path.display());
            }
        } else if args.show {
            let mut text = vec![title, String::new()];
            text.extend(ranked_lines(&scores));
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
                explanation: attribution.as_ref().zip(explain.as_ref()).map(
                    |(attribution, request)| {
                        ExplanationJson::new(
                            attribution,
                            &request.settings,
                            &model.class_names,
                            FRAME,
                            top[0].class,
                        )
                    },
                ),
            })?;
        }
    }
    Ok(())
}

/// "1. 7   99.87%" lines, most probable first.
fn ranked_lines(scores: &[ScoreJson]) -> Vec<String> {
    scores
        .iter()
        .enumerate()
        .map(|(rank, score)| {
            format!(
                "{}. {:<12} {:>6.2}%",
                rank + 1,
                score.class,
                score.probability * 100.0
            )
        })
        .collect()
}

/// `--explain`'s value: a method's name, or (as `--explain IMAGE` reads naturally) the first image
/// when it names an existing file, in which case the default method is used.
fn explain_method(value: &str, images: &mut Vec<PathBuf>) -> Result<Method> {
    if let Some(method) = Method::from_name(value) {
        return Ok(method);
    }
    let path = PathBuf::from(value);
    if path.is_file() {
        images.insert(0, path);
        return Ok(Method::IntegratedGradients);
    }
    Err(Error::config(
        "--explain",
        format!(
            "'{value}' is neither a method ({}) nor an image file",
            Method::names()
        ),
    ))
}

/// `--target`: a class name, or else a class index.
fn parse_target(text: &str, class_names: &[String]) -> Result<usize> {
    if let Some(index) = class_names.iter().position(|name| name == text) {
        return Ok(index);
    }
    match text.parse::<usize>() {
        Ok(index) if index < class_names.len() => Ok(index),
        _ => Err(Error::config(
            "--target",
            format!(
                "'{text}' is not a class: give an index 0-{} or a class name ({})",
                class_names.len().saturating_sub(1),
                class_names.join(", ")
            ),
        )),
    }
}

/// `path` with `-N` before its extension when there are several pictures to write.
fn numbered(path: &Path, number: Option<usize>) -> PathBuf {
    let Some(number) = number else {
        return path.to_path_buf();
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(extension) => format!("{stem}-{number}.{}", extension.to_string_lossy()),
        None => format!("{stem}-{number}"),
    };
    path.with_file_name(name)
}

/// The method, its parameters and the explained class, in words.
fn method_description(attribution: &Attribution, settings: &Settings) -> String {
    match attribution.method {
        Method::IntegratedGradients => format!(
            "integrated gradients ({} steps, {}, baseline {})",
            settings.ig_steps,
            settings.quadrature.name(),
            settings.baseline
        ),
        Method::Occlusion => format!(
            "occlusion ({0}×{0} patch, baseline {1})",
            settings.occlusion_patch, settings.baseline
        ),
        Method::Saliency => "saliency |∂logit/∂pixel|".to_string(),
        Method::InputXGradient => "input × gradient".to_string(),
    }
}

fn figure_subtitle(
    attribution: &Attribution,
    settings: &Settings,
    class_names: &[String],
) -> String {
    let mut subtitle = format!(
        "{} of the logit of {}",
        method_description(attribution, settings),
        class_names[attribution.target]
    );
    if let Some(error) = attribution.completeness.and_then(|c| c.relative_error()) {
        subtitle.push_str(&format!("; completeness error {:.3}%", error * 100.0));
    }
    subtitle
}

/// The text beside the map: method, target, sums and how to read the colours.
fn explanation_lines(
    attribution: &Attribution,
    settings: &Settings,
    class_names: &[String],
    predicted: usize,
    scale: f32,
    color: bool,
) -> Vec<String> {
    let target = &class_names[attribution.target];
    let mut lines = vec![
        method_description(attribution, settings),
        format!(
            "of the logit of {target} ({})",
            if attribution.target == predicted {
                "predicted"
            } else {
                "--target"
            }
        ),
    ];
    let sum: f64 = attribution.values.iter().map(|&v| v as f64).sum();
    lines.push(format!("Σ attributions {sum:.4}"));
    if let Some(c) = attribution.completeness {
        lines.push(format!(
            "logit {:.4} − baseline's {:.4}",
            c.score_input, c.score_baseline
        ));
        if let Some(error) = c.relative_error() {
            lines.push(format!("completeness error {:.3}%", error * 100.0));
        }
    }
    lines.push(format!("full colour at ±{}", short_number(scale)));
    lines.push(legend(color).to_string());
    lines
}
