//! The JSON form of one attribution map (the `explanation` object of `predict --explain --json`).

use serde::Serialize;

use crate::explain::{Attribution, Method, Settings};

/// The parameters a method used (only its own are present).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParametersJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quadrature: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f32>,
}

impl ParametersJson {
    pub fn of(method: Method, settings: &Settings) -> Self {
        let none = ParametersJson {
            steps: None,
            quadrature: None,
            patch: None,
            stride: None,
            baseline: None,
        };
        match method {
            Method::IntegratedGradients => ParametersJson {
                steps: Some(settings.ig_steps),
                quadrature: Some(settings.quadrature.name()),
                baseline: Some(settings.baseline),
                ..none
            },
            Method::Occlusion => ParametersJson {
                patch: Some(settings.occlusion_patch),
                stride: Some(1),
                baseline: Some(settings.baseline),
                ..none
            },
            Method::Saliency | Method::InputXGradient => none,
        }
    }
}

/// The two ends of integrated gradients' path: the target's logit on the image and on the
/// baseline, F(x) and F(b).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletenessJson {
    pub score_input: f64,
    pub score_baseline: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplanationJson {
    pub method: &'static str,
    pub parameters: ParametersJson,
    /// The explained class's name and index.
    pub target: String,
    pub target_index: usize,
    /// Whether the target is the predicted class (false when chosen with --target).
    pub target_is_prediction: bool,
    /// What is explained: the target's logit, with respect to pixel values in [0, 1].
    pub score: &'static str,
    pub width: usize,
    pub height: usize,
    /// `attributions[row][column]`, one per pixel.
    pub attributions: Vec<Vec<f32>>,
    pub attribution_sum: f64,
    /// Integrated gradients only (null otherwise): |Σ − (F(x) − F(b))| / |F(x) − F(b)|, also
    /// null when F(x) = F(b).
    pub completeness_error: Option<f64>,
    pub completeness: Option<CompletenessJson>,
}

impl ExplanationJson {
    pub fn new(
        attribution: &Attribution,
        settings: &Settings,
        class_names: &[String],
        width: usize,
        predicted: usize,
    ) -> Self {
        let completeness = attribution.completeness.map(|c| CompletenessJson {
            score_input: c.score_input,
            score_baseline: c.score_baseline,
        });
        ExplanationJson {
            method: attribution.method.name(),
            parameters: ParametersJson::of(attribution.method, settings),
            target: class_names
                .get(attribution.target)
                .cloned()
                .unwrap_or_else(|| attribution.target.to_string()),
            target_index: attribution.target,
            target_is_prediction: attribution.target == predicted,
            score: "logit",
            width,
            height: attribution.values.len() / width.max(1),
            attributions: attribution
                .values
                .chunks(width.max(1))
                .map(<[f32]>::to_vec)
                .collect(),
            attribution_sum: attribution.values.iter().map(|&v| v as f64).sum(),
            completeness_error: attribution.completeness.and_then(|c| c.relative_error()),
            completeness,
        }
    }
}
