//! Learning-rate schedules, with an optional linear warm-up.
//!
//! A schedule is evaluated before **every optimization step**, as a function of the step's position
//! in training measured in (fractional) epochs: `e = steps taken / steps per epoch`. Smooth
//! schedules (`exponential`, `cosine`) therefore change the rate a little every step; `step`
//! changes it only at epoch boundaries (every `step_size` epochs). During warm-up the rate climbs
//! linearly from `lr / W` to `lr` over the first `W` steps; the decay then starts from the end of
//! the warm-up, so `e` counts epochs since then.
//!
//! The schedule is plain data (serializable), so a checkpoint can store it and a resumed run
//! recomputes exactly the same rates from the step count.

use serde::{Deserialize, Serialize};

/// The shape of the decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum ScheduleKind {
    /// `lr` throughout.
    Constant,
    /// `lr · gamma^⌊e / step_size⌋`: multiplied by `gamma` every `step_size` epochs.
    Step { step_size: usize, gamma: f32 },
    /// `lr · gamma^e`: multiplied by `gamma` per epoch, smoothly.
    Exponential { gamma: f32 },
    /// `min + (lr − min) · (1 + cos(π · e / E)) / 2`, from `lr` down to `min` at the end of training
    /// (`E` = epochs after warm-up).
    Cosine { min_learning_rate: f32 },
}

impl ScheduleKind {
    /// Epochs between decays of `step` when nothing else is said.
    pub const DEFAULT_STEP_SIZE: usize = 2;
    /// The factor of `step` and `exponential` when nothing else is said.
    pub const DEFAULT_GAMMA: f32 = 0.5;
}

/// How long the linear warm-up lasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "length", rename_all = "lowercase")]
pub enum Warmup {
    None,
    Steps(u64),
    /// A (possibly fractional) number of epochs, rounded to whole steps.
    Epochs(f32),
}

/// A learning-rate schedule: a decay shape plus an optional warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    pub warmup: Warmup,
}

impl Default for LrSchedule {
    /// A constant learning rate without warm-up (Keras' default).
    fn default() -> Self {
        LrSchedule {
            kind: ScheduleKind::Constant,
            warmup: Warmup::None,
        }
    }
}

impl LrSchedule {
    /// The learning rate for optimization step `step` (0-based, counted over the whole run),
    /// given the base rate and the run's length.
    pub fn learning_rate(
        &self,
        base: f32,
        step: u64,
        steps_per_epoch: usize,
        total_epochs: usize,
    ) -> f32 {
        let steps_per_epoch = steps_per_epoch.max(1) as u64;
        let total_steps = steps_per_epoch * total_epochs as u64;
        let warmup_steps = match self.warmup {
            Warmup::None => 0,
            Warmup::Steps(steps) => steps,
            Warmup::Epochs(epochs) => (f64::from(epochs) * steps_per_epoch as f64).round() as u64,
        };
        if step < warmup_steps {
            return base * (step + 1) as f32 / warmup_steps as f32;
        }
        // Epochs since the warm-up ended.
        let epochs_after_warmup = (step - warmup_steps) as f64 / steps_per_epoch as f64;
        let rate = match self.kind {
            ScheduleKind::Constant => f64::from(base),
            ScheduleKind::Step { step_size, gamma } => {
                let decays = (epochs_after_warmup / step_size.max(1) as f64).floor();
                f64::from(base) * f64::from(gamma).powf(decays)
            }
            ScheduleKind::Exponential { gamma } => {
                f64::from(base) * f64::from(gamma).powf(epochs_after_warmup)
            }
            ScheduleKind::Cosine { min_learning_rate } => {
                let decay_steps = total_steps.saturating_sub(warmup_steps).max(1);
                let progress = ((step - warmup_steps) as f64 / decay_steps as f64).min(1.0);
                let (base, min) = (f64::from(base), f64::from(min_learning_rate));
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        };
        rate as f32
    }

    /// Short description for logs, e.g. `cosine (min 0) with 100 warm-up steps`.
    pub fn describe(&self) -> String {
        let mut text = match self.kind {
            ScheduleKind::Constant => "constant".to_string(),
            ScheduleKind::Step { step_size, gamma } => {
                format!("step (x{gamma} every {step_size} epochs)")
            }
            ScheduleKind::Exponential { gamma } => format!("exponential (x{gamma} per epoch)"),
            ScheduleKind::Cosine { min_learning_rate } => {
                format!("cosine (down to {min_learning_rate})")
            }
        };
        match self.warmup {
            Warmup::None => {}
            Warmup::Steps(steps) => text.push_str(&format!(", linear warm-up over {steps} steps")),
            Warmup::Epochs(epochs) => {
                text.push_str(&format!(", linear warm-up over {epochs} epochs"))
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f32, expected: f64) -> bool {
        (f64::from(actual) - expected).abs() <= 1e-6 * expected.abs().max(1e-3)
    }

    /// The rates of `schedule` at (step, expected rate) pairs, for a run of
    /// (base rate, steps per epoch, epochs).
    fn assert_rates(schedule: &LrSchedule, run: (f32, usize, usize), expected: &[(u64, f64)]) {
        let (base, steps_per_epoch, epochs) = run;
        for &(step, rate) in expected {
            let actual = schedule.learning_rate(base, step, steps_per_epoch, epochs);
            assert!(close(actual, rate), "step {step}: {actual} vs {rate}");
        }
    }

    fn schedule(kind: ScheduleKind) -> LrSchedule {
        LrSchedule {
            kind,
            warmup: Warmup::None,
        }
    }

    #[test]
    fn constant_never_changes() {
        let s = LrSchedule::default();
        for step in [0, 1, 99, 10_000] {
            assert_eq!(s.learning_rate(0.01, step, 100, 5), 0.01);
        }
    }

    #[test]
    fn step_decays_at_epoch_boundaries_only() {
        // 10 steps per epoch, halve every 2 epochs.
        let s = schedule(ScheduleKind::Step {
            step_size: 2,
            gamma: 0.5,
        });
        assert!(close(s.learning_rate(0.1, 0, 10, 6), 0.1));
        assert!(close(s.learning_rate(0.1, 19, 10, 6), 0.1)); // last step of epoch 2
        assert!(close(s.learning_rate(0.1, 20, 10, 6), 0.05)); // first step of epoch 3
        assert!(close(s.learning_rate(0.1, 39, 10, 6), 0.05));
        assert!(close(s.learning_rate(0.1, 40, 10, 6), 0.025));
    }

    #[test]
    fn exponential_decays_smoothly_per_step() {
        let s = schedule(ScheduleKind::Exponential { gamma: 0.5 });
        assert!(close(s.learning_rate(0.1, 0, 10, 5), 0.1));
        // Half an epoch in: 0.1 · 0.5^0.5.
        assert!(close(s.learning_rate(0.1, 5, 10, 5), 0.1 * 0.5f64.sqrt()));
        assert!(close(s.learning_rate(0.1, 10, 10, 5), 0.05));
        assert!(close(s.learning_rate(0.1, 30, 10, 5), 0.0125));
    }

    #[test]
    fn cosine_goes_from_base_to_min() {
        let s = schedule(ScheduleKind::Cosine {
            min_learning_rate: 0.001,
        });
        // 4 epochs of 25 steps = 100 steps.
        assert!(close(s.learning_rate(0.1, 0, 25, 4), 0.1));
        // Half way: the mean of base and min.
        assert!(close(s.learning_rate(0.1, 50, 25, 4), 0.0505));
        // A quarter: min + (base - min) · (1 + cos(π/4)) / 2.
        let quarter = 0.001 + 0.099 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!(close(s.learning_rate(0.1, 25, 25, 4), quarter));
        // Never below min, even past the planned end.
        assert!(close(s.learning_rate(0.1, 100, 25, 4), 0.001));
        assert!(close(s.learning_rate(0.1, 500, 25, 4), 0.001));
    }

    #[test]
    fn warmup_climbs_linearly_then_the_decay_starts() {
        let s = LrSchedule {
            kind: ScheduleKind::Exponential { gamma: 0.5 },
            warmup: Warmup::Steps(4),
        };
        // The decay clock starts when the warm-up ends (step 4).
        let expected = [(0, 0.025), (1, 0.05), (3, 0.1), (4, 0.1), (14, 0.05)];
        assert_rates(&s, (0.1, 10, 5), &expected);
    }

    #[test]
    fn warmup_in_epochs_rounds_to_steps() {
        let s = LrSchedule {
            kind: ScheduleKind::Constant,
            warmup: Warmup::Epochs(0.5),
        };
        // 0.5 epochs of 10 steps = 5 warm-up steps.
        assert_rates(&s, (0.2, 10, 3), &[(0, 0.04), (4, 0.2), (5, 0.2)]);
    }

    #[test]
    fn cosine_after_warmup_spans_the_remaining_steps() {
        let s = LrSchedule {
            kind: ScheduleKind::Cosine {
                min_learning_rate: 0.0,
            },
            warmup: Warmup::Steps(20),
        };
        // 100 steps in all, 80 after warm-up: half way is step 60.
        assert!(close(s.learning_rate(0.1, 20, 10, 10), 0.1));
        assert!(close(s.learning_rate(0.1, 60, 10, 10), 0.05));
    }
}
