//! Differentially private SGD (Abadi et al. 2016): every example's gradient is clipped to norm C
//! (cheaply, from per-layer norms: [`clipping`]), Gaussian noise of standard deviation σ·C is
//! added to the sum ([`noise`]), each step trains on a Poisson sample of the data ([`sampling`]),
//! and the [`accountant`] turns (sampling rate, σ, steps, δ) into the (ε, δ) guarantee.

pub mod accountant;
pub mod clipping;
pub mod noise;
pub mod sampling;

use serde::{Deserialize, Serialize};

pub use accountant::{
    noise_multiplier_for_epsilon, SampledGaussian, ACCOUNTANT, MAX_NOISE_MULTIPLIER,
};

use crate::error::{Error, Result, Setting};

/// δ when the user gives none: 1e-5, below 1/N for MNIST's 60,000 examples (the usual rule: δ
/// much smaller than the chance of picking any one person).
pub const DEFAULT_DELTA: f64 = 1e-5;

/// The documented private recipe: what `--dp-target-epsilon` alone trains with. The command line applies each
/// value only where the user did not give the option.
/// Tuned on MNIST at ε = 2 (README, "Private accuracy"): large Poisson batches, many epochs, a
/// cosine decay that quiets the noise at the end, no dropout (clipping already regularizes).
pub mod recipe {
    pub const EPOCHS: usize = 60;
    pub const BATCH_SIZE: usize = 2048;
    pub const OPTIMIZER: &str = "momentum";
    pub const LEARNING_RATE: f32 = 1.0;
    pub const MOMENTUM: f32 = 0.9;
    pub const SCHEDULE: &str = "cosine";
    pub const DROPOUT: f32 = 0.0;
}

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

/// How much noise a private run adds: given, or the smallest meeting a target ε, found once the
/// training-set size is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoisePlan {
    Multiplier(f64),
    TargetEpsilon(f64),
}

/// What the accountant needs to know of a run: its Poisson sampling rate, steps per epoch and
/// epochs (see `TrainConfig::run_length`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLength {
    pub sampling_rate: f64,
    pub steps_per_epoch: usize,
    pub epochs: usize,
}

/// A private run as asked for (validated), before the noise for a target ε is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyPlan {
    pub noise: NoisePlan,
    pub clip_norm: f32,
    pub delta: f64,
}

impl PrivacyPlan {
    /// The noise, clipping and δ of a run of length `run`.
    pub fn dp_config(&self, run: RunLength) -> Result<DpConfig> {
        let noise_multiplier = match self.noise {
            NoisePlan::Multiplier(sigma) => sigma,
            NoisePlan::TargetEpsilon(target) => {
                let steps = (run.steps_per_epoch * run.epochs) as u64;
                noise_multiplier_for_epsilon(target, run.sampling_rate, steps, self.delta).map_err(
                    |unreachable| {
                        Error::setting(
                            Setting::TargetEpsilon,
                            format!(
                                "{target} cannot be met by this run (even noise multiplier {MAX_NOISE_MULTIPLIER} spends ε = {:.3}); allow a larger ε or δ, fewer epochs or a smaller batch",
                                unreachable.best_epsilon
                            ),
                        )
                    },
                )?
            }
        };
        Ok(DpConfig {
            noise_multiplier,
            clip_norm: self.clip_norm,
            delta: self.delta,
        })
    }

    /// `Private training (DP-SGD): …`: the noise (and how it was chosen), clipping and sampling.
    pub fn describe(&self, privacy: &DpConfig, run: RunLength) -> String {
        let RunLength {
            sampling_rate,
            steps_per_epoch,
            epochs,
        } = run;
        let chosen = match self.noise {
            NoisePlan::TargetEpsilon(target) => format!(
                " (the smallest keeping {epochs} epochs within ε = {target} at δ = {})",
                format_delta(privacy.delta)
            ),
            NoisePlan::Multiplier(_) => String::new(),
        };
        format!(
            "Private training (DP-SGD): noise multiplier {:.4}{chosen}, clip norm {}, Poisson sampling rate {:.5} ({} steps per epoch), δ = {}",
            privacy.noise_multiplier,
            privacy.clip_norm,
            sampling_rate,
            steps_per_epoch,
            format_delta(privacy.delta)
        )
    }
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
