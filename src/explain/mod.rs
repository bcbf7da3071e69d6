//! Attributions: which input pixels made the network give a class its score, and the checks that
//! show an attribution means something.
//!
//! The score explained is the target class's **logit** (the network's output before softmax):
//! it is what the gradients are taken of and what integrated gradients' completeness is measured
//! on. The deletion check ([`checks`]) follows the target's softmax *probability* instead, as
//! Petsiuk et al. (2018) do, because that is what a user reads off a prediction.
//!
//! Attributions are taken with respect to the pixel values in [0, 1] (the byte value ÷ 255),
//! whatever normalization the model file applies on top ([`PixelInputs`] folds it in), so a map
//! reads the same for every model. The baseline — what a pixel is "removed" to in integrated
//! gradients, occlusion and the deletion check — is a constant pixel value, black (0) by default.
//!
//! Methods, one file each: [`gradient`] (saliency and input × gradient),
//! [`integrated_gradients`], [`occlusion`]. A network takes part by implementing
//! [`Differentiable`]; [`mlp`] does so for the MLP.

pub mod checks;
pub mod gradient;
pub mod integrated_gradients;
pub mod mlp;
pub mod occlusion;
pub mod render;
pub mod report;

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result, Setting};
use crate::model_file::{Model, Normalization};

pub use checks::{run_checks, CheckReport, MethodCheck, DEFAULT_CHECK_IMAGES};
pub use integrated_gradients::{Completeness, Quadrature};
pub use mlp::TrainedMlp;

/// A classifier in inference mode (no dropout) that can give the gradient of a class's logit with
/// respect to its input. Inputs are rows of `input_len()` values exactly as `logits` takes them.
pub trait Differentiable {
    /// Values per input row (784 for a 28×28 image).
    fn input_len(&self) -> usize;
    /// Number of classes (logits per row).
    fn classes(&self) -> usize;
    /// x: [batch, input_len] -> logits: [batch, classes]
    fn logits(&self, x: ArrayView2<f32>) -> Array2<f32>;
    /// `x: [batch, input_len] -> ∂logit[class]/∂x: [batch, input_len]`
    fn input_gradient(&self, x: ArrayView2<f32>, class: usize) -> Array2<f32>;
}

/// Rows handed to a [`Differentiable`] at once: bounds memory whatever the step or patch count.
pub const MAX_BATCH: usize = 256;

/// A network seen through its model file's normalization: inputs are pixel values in [0, 1] and
/// gradients are with respect to them (the chain rule through `x = p · 255 · scale + offset`).
pub struct PixelInputs<'a> {
    network: &'a dyn Differentiable,
    normalization: Normalization,
}

impl<'a> PixelInputs<'a> {
    pub fn new(network: &'a dyn Differentiable, normalization: Normalization) -> Self {
        PixelInputs {
            network,
            normalization,
        }
    }

    /// ∂x/∂p: how much the network's input moves per unit of pixel value.
    fn slope(&self) -> f32 {
        255.0 * self.normalization.scale
    }

    fn to_network(&self, pixels: ArrayView2<f32>) -> Array2<f32> {
        let (slope, offset) = (self.slope(), self.normalization.offset);
        pixels.mapv(|p| p * slope + offset)
    }
}

impl Differentiable for PixelInputs<'_> {
    fn input_len(&self) -> usize {
        self.network.input_len()
    }
    fn classes(&self) -> usize {
        self.network.classes()
    }
    fn logits(&self, pixels: ArrayView2<f32>) -> Array2<f32> {
        self.network.logits(self.to_network(pixels).view())
    }
    fn input_gradient(&self, pixels: ArrayView2<f32>, class: usize) -> Array2<f32> {
        let mut gradient = self
            .network
            .input_gradient(self.to_network(pixels).view(), class);
        let slope = self.slope();
        gradient.mapv_inplace(|g| g * slope);
        gradient
    }
}

/// The network a model file holds, ready to be explained. One place to extend when the model
/// file learns new architectures.
pub fn network_of(model: &Model) -> TrainedMlp<'_> {
    TrainedMlp::new(
        crate::nn::Mlp::new(model.architecture.clone()),
        &model.parameters,
    )
}

/// The attribution methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Sundararajan et al. (2017): (x − baseline) ⊙ the average gradient along the straight path.
    IntegratedGradients,
    /// Simonyan et al. (2013): |∂score/∂pixel|.
    Saliency,
    /// Shrikumar et al. (2016): x ⊙ ∂score/∂x.
    InputXGradient,
    /// Zeiler & Fergus (2014): how much the score drops when a patch is set to the baseline.
    Occlusion,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::IntegratedGradients,
        Method::Saliency,
        Method::InputXGradient,
        Method::Occlusion,
    ];

    /// The name users type and JSON carries.
    pub fn name(self) -> &'static str {
        match self {
            Method::IntegratedGradients => "integrated-gradients",
            Method::Saliency => "saliency",
            Method::InputXGradient => "input-x-gradient",
            Method::Occlusion => "occlusion",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|method| method.name() == name)
    }

    /// Every method's name, comma-separated, for messages and help.
    pub fn names() -> String {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        names.join(", ")
    }
}

/// The methods' parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Gradient evaluations along the integrated-gradients path.
    pub ig_steps: usize,
    pub quadrature: Quadrature,
    /// Side of the square occlusion patch, in pixels (slid one pixel at a time).
    pub occlusion_patch: usize,
    /// The pixel value in [0, 1] a removed pixel takes (integrated gradients' starting point,
    /// occlusion's fill, the deletion check's replacement).
    pub baseline: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ig_steps: 50,
            quadrature: Quadrature::default(),
            occlusion_patch: 4,
            baseline: 0.0,
        }
    }
}

/// Bounds on the settings (the step count and patch size also bound memory and time).
pub const MAX_IG_STEPS: usize = 2000;

impl Settings {
    /// Checks the settings for images of `width × height` pixels.
    pub fn validate(&self, width: usize, height: usize) -> Result<()> {
        let (steps, patch, baseline) = (self.ig_steps, self.occlusion_patch, self.baseline);
        let side = width.min(height);
        let problem = if !(1..=MAX_IG_STEPS).contains(&steps) {
            let why = format!("{steps} steps: must be between 1 and {MAX_IG_STEPS}");
            Some((Setting::IgSteps, why))
        } else if self.quadrature == Quadrature::Trapezoid && steps < 2 {
            let why = "the trapezoid rule needs at least 2 steps".to_string();
            Some((Setting::IgSteps, why))
        } else if !(1..=side).contains(&patch) {
            let why = format!(
                "a {patch}×{patch} patch: must be between 1 and {side} pixels (the image is {width}×{height})"
            );
            Some((Setting::OcclusionPatch, why))
        } else if !(0.0..=1.0).contains(&baseline) {
            let why = format!("{baseline}: must be a pixel value between 0 (black) and 1 (white)");
            Some((Setting::AttributionBaseline, why))
        } else {
            None
        };
        match problem {
            Some((setting, why)) => Err(Error::setting(setting, why)),
            None => Ok(()),
        }
    }
}

/// One image's attribution map.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub method: Method,
    /// The class whose logit is explained.
    pub target: usize,
    /// One value per pixel, row-major; positive raises the target's logit, negative lowers it.
    pub values: Vec<f32>,
    /// Integrated gradients only: how well the values add up to the score difference.
    pub completeness: Option<Completeness>,
}

/// Attributes `target`'s logit on one image (`pixels`: values in [0, 1], row-major, `width`
/// wide) with `method`. `settings` must have passed [`Settings::validate`].
pub fn attribute(
    model: &dyn Differentiable,
    pixels: &[f32],
    width: usize,
    target: usize,
    method: Method,
    settings: &Settings,
) -> Attribution {
    let (values, completeness) = match method {
        Method::IntegratedGradients => {
            let (values, completeness) =
                integrated_gradients::integrated_gradients(model, pixels, target, settings);
            (values, Some(completeness))
        }
        Method::Saliency => (gradient::saliency(model, pixels, target), None),
        Method::InputXGradient => (gradient::input_x_gradient(model, pixels, target), None),
        Method::Occlusion => (
            occlusion::occlusion(
                model,
                pixels,
                width,
                target,
                settings.occlusion_patch,
                settings.baseline,
            ),
            None,
        ),
    };
    Attribution {
        method,
        target,
        values,
        completeness,
    }
}

/// Logits of many rows, [`MAX_BATCH`] at a time. rows: [n, input_len] -> [n, classes]
pub fn logits_batched(model: &dyn Differentiable, rows: ArrayView2<f32>) -> Array2<f32> {
    let mut all = Array2::zeros((rows.nrows(), model.classes()));
    for (chunk, mut out) in rows
        .axis_chunks_iter(ndarray::Axis(0), MAX_BATCH)
        .zip(all.axis_chunks_iter_mut(ndarray::Axis(0), MAX_BATCH))
    {
        out.assign(&model.logits(chunk));
    }
    all
}

/// One image as a [1, len] row.
fn single_row(pixels: &[f32]) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((1, pixels.len()), pixels).expect("one row of the slice's length")
}

/// Pixel bytes as values in [0, 1].
pub fn unit_pixels(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32 / 255.0).collect()
}
