//! Differentially private SGD (Abadi et al. 2016): every example's gradient is clipped to norm C
//! (cheaply, from per-layer norms: [`clipping`]), Gaussian noise of standard deviation σ·C is
//! added to the sum ([`noise`]), each step trains on a Poisson sample of the data ([`sampling`]),
//! and the [`accountant`] turns (sampling rate, σ, steps, δ) into the (ε, δ) guarantee.

pub mod accountant;
pub mod clipping;
pub mod noise;
pub mod sampling;

use serde::{Deserialize, Serialize};

pub use accountant::{noise_multiplier_for_epsilon, SampledGaussian, ACCOUNTANT};

/// δ when the user gives none: 1e-5, below 1/N for MNIST's 60,000 examples (the usual rule: δ
/// much smaller than the chance of picking any one person).
pub const DEFAULT_DELTA: f64 = 1e-5;

/// How a run is made private. Part of the training configuration (checkpoints store it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// σ: the noise's standard deviation divided by the clip norm.
    pub noise_multiplier: f64,
    /// C: every example's gradient is clipped to this L2 norm.
    pub clip_norm: f32,
    /// δ of the reported (ε, δ) guarantee.
    pub delta: f64,
}

/// The guarantee a private run gives: what summaries, model files, `eval` and `export` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyGuarantee {
    pub epsilon: f64,
    pub delta: f64,
    pub noise_multiplier: f64,
    pub clip_norm: f32,
    pub sampling_rate: f64,
    pub steps: u64,
    pub accountant: String,
}

impl DpConfig {
    /// The guarantee after `steps` Poisson-sampled steps at `sampling_rate`.
    pub fn guarantee(&self, sampling_rate: f64, steps: u64) -> PrivacyGuarantee {
        let epsilon = SampledGaussian {
            sampling_rate,
            noise_multiplier: self.noise_multiplier,
        }
        .epsilon(steps, self.delta);
        PrivacyGuarantee {
            epsilon,
            delta: self.delta,
            noise_multiplier: self.noise_multiplier,
            clip_norm: self.clip_norm,
            sampling_rate,
            steps,
            accountant: ACCOUNTANT.to_string(),
        }
    }
}

impl PrivacyGuarantee {
    /// `(ε = 1.98, δ = 1e-5)`.
    pub fn short(&self) -> String {
        format!(
            "(ε = {:.2}, δ = {})",
            self.epsilon,
            format_delta(self.delta)
        )
    }

    /// The guarantee with the accountant's parameters, one line.
    pub fn describe(&self) -> String {
        format!(
            "{} by the {} accountant (Poisson sampling rate q = {:.5}, noise multiplier σ = {:.4}, clip norm C = {}, {} steps)",
            self.short(),
            accountant_name(&self.accountant),
            self.sampling_rate,
            self.noise_multiplier,
            self.clip_norm,
            self.steps
        )
    }
}

fn accountant_name(key: &str) -> &str {
    if key == ACCOUNTANT {
        "RDP (sampled Gaussian, Balle et al. 2020 conversion)"
    } else {
        key
    }
}

/// δ as a user writes it: `1e-5`, `0.001`.
pub fn format_delta(delta: f64) -> String {
    if delta != 0.0 && delta.abs() < 1e-3 {
        format!("{delta:e}")
    } else {
        format!("{delta}")
    }
}
