//! `train`'s options for private training (DP-SGD) and the private recipe they default to.

use clap::Args;

use crate::cli::{positive, refuse_given_without, require};
use crate::error::{Error, Result};
use crate::optim::privacy::{NoisePlan, PrivacyPlan, DEFAULT_DELTA};
use crate::train::callbacks::Monitor;

/// C when not given.
pub const DEFAULT_CLIP_NORM: f32 = 1.0;

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Private training (DP-SGD)")]
pub struct PrivacyArgs {
    /// Train with differential privacy (DP-SGD): Gaussian noise of standard deviation
    /// SIGMA × clip norm is added to each step's sum of clipped gradients; batches are Poisson
    /// samples of rate batch/N
    #[arg(long, value_name = "SIGMA", allow_hyphen_values = true)]
    pub dp_noise_multiplier: Option<f64>,
    /// Train privately with the smallest noise that keeps the whole run within this ε (printed).
    /// Alone, it also picks the private recipe: momentum SGD with a cosine decay, batch 2048, no
    /// dropout; ε < 1: 10 epochs, lr 1, clip norm 1; ε < 4: 30 epochs, lr 3, clip norm 0.3;
    /// else 60 epochs, lr 1, clip norm 1 (options given explicitly override it)
    #[arg(
        long,
        value_name = "EPSILON",
        conflicts_with = "dp_noise_multiplier",
        allow_hyphen_values = true
    )]
    pub dp_target_epsilon: Option<f64>,
    /// Private training: every example's gradient is clipped to this L2 norm [default: 1]
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    pub dp_clip_norm: Option<f32>,
    /// Private training: δ of the (ε, δ) guarantee [default: 1e-5, below 1/N for MNIST's 60,000
    /// training images]
    #[arg(long, value_name = "DELTA", allow_hyphen_values = true)]
    pub dp_delta: Option<f64>,
}

impl PrivacyArgs {
    /// `None` for an ordinary run. Errors name the option.
    pub fn resolve(&self) -> Result<Option<PrivacyPlan>> {
        let noise = match (self.dp_noise_multiplier, self.dp_target_epsilon) {
            (Some(sigma), _) => NoisePlan::Multiplier(positive("--dp-noise-multiplier", sigma)?),
            (None, Some(epsilon)) => {
                NoisePlan::TargetEpsilon(positive("--dp-target-epsilon", epsilon)?)
            }
            (None, None) => {
                let given = [
                    ("--dp-clip-norm", self.dp_clip_norm.is_some()),
                    ("--dp-delta", self.dp_delta.is_some()),
                ];
                refuse_given_without(&given, "--dp-noise-multiplier or --dp-target-epsilon")?;
                return Ok(None);
            }
        };
        let clip_norm = positive(
            "--dp-clip-norm",
            self.dp_clip_norm.unwrap_or(DEFAULT_CLIP_NORM),
        )?;
        let delta = self.dp_delta.unwrap_or(DEFAULT_DELTA);
        let valid = delta > 0.0 && delta < 1.0;
        let delta = require("--dp-delta", delta, valid, "be in (0, 1)")?;
        Ok(Some(PrivacyPlan {
            noise,
            clip_norm,
            delta,
        }))
    }
}

/// Refuses monitoring a metric of the private training data: early stopping or restore-best
/// decisions based on it leak information the accountant does not count. Validation metrics are
/// measured on held-out data, so decisions on them are post-processing.
pub fn check_monitor(option: &str, monitor: &Monitor) -> Result<()> {
    if monitor.metric.needs_validation() {
        return Ok(());
    }
    Err(Error::config(
        option,
        format!(
            "monitors {}, a metric of the private training data: its decisions would leak what the privacy accountant does not count; use --validation-split with --monitor val_loss or val_accuracy",
            monitor.metric.name()
        ),
    ))
}
