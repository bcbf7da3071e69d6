//! Human-readable progress on stderr: an indicatif bar per epoch on a terminal, and one Keras-style
//! summary line per epoch everywhere (no carriage returns or control codes when not a terminal).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::metrics::EpochRecord;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal (and TERM is not "dumb"), plain lines otherwise.
    Auto,
    Bar,
    Plain,
    None,
}

impl ProgressMode {
    /// Resolves `Auto` against the environment.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto => {
                let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
                if std::io::stderr().is_terminal() && !dumb {
                    ProgressMode::Bar
                } else {
                    ProgressMode::Plain
                }
            }
            other => other,
        }
    }
}

/// Receives training events and shows them.
pub struct Progress {
    mode: ProgressMode,
    epochs: usize,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode, epochs: usize) -> Self {
        Progress {
            mode: mode.resolve(),
            epochs,
            bar: None,
        }
    }

    pub fn start_epoch(&mut self, epoch: usize, steps: usize) {
        if self.mode != ProgressMode::Bar {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "Epoch {prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{}", self.epochs));
        self.bar = Some(bar);
    }

    /// Called after each step with the running means of the epoch so far.
    pub fn update_step(&mut self, step: usize, running_loss: f64, running_accuracy: f64) {
        if let Some(bar) = &self.bar {
            // Redrawing text every step costs more than the step; indicatif rate-limits drawing,
            // but formatting the message is ours to limit.
            if step.is_multiple_of(64) {
                bar.set_message(format!(
                    "loss: {running_loss:.4} - accuracy: {running_accuracy:.4}"
                ));
            }
            bar.set_position(step as u64);
        }
    }

    pub fn end_epoch(&mut self, record: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode != ProgressMode::None {
            eprintln!("{}", format_epoch_line(record, self.epochs));
        }
    }

    /// Prints a free-form informational line unless progress is off.
    pub fn info(&self, line: &str) {
        if self.mode != ProgressMode::None {
            eprintln!("{line}");
        }
    }
}

/// A learning rate to 4 significant digits without float noise: `0.001`, `0.02939`, and in
/// scientific notation below 1e-4 (`2.147e-10`), as schedules produce.
pub fn format_learning_rate(learning_rate: f32) -> String {
    let rounded: f64 = format!("{:.3e}", learning_rate)
        .parse()
        .unwrap_or(f64::from(learning_rate));
    if rounded == 0.0 || rounded.abs() >= 1e-4 {
        format!("{rounded}")
    } else {
        format!("{rounded:e}")
    }
}

/// `Epoch 3/5 - 1.21s - loss: 0.0712 - accuracy: 0.9781 [- val_loss: … - val_accuracy: …] - learning_rate: 0.001 [- epsilon: 1.234]`
pub fn format_epoch_line(record: &EpochRecord, epochs: usize) -> String {
    let mut line = format!(
        "Epoch {}/{} - {:.2}s - loss: {:.4} - accuracy: {:.4}",
        record.epoch, epochs, record.seconds, record.loss, record.accuracy
    );
    if let (Some(val_loss), Some(val_accuracy)) = (record.val_loss, record.val_accuracy) {
        line.push_str(&format!(
            " - val_loss: {val_loss:.4} - val_accuracy: {val_accuracy:.4}"
        ));
    }
    line.push_str(&format!(
        " - learning_rate: {}",
        format_learning_rate(record.learning_rate)
    ));
    if let Some(epsilon) = record.epsilon {
        line.push_str(&format!(" - epsilon: {epsilon:.3}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rates_print_without_float_noise() {
        assert_eq!(format_learning_rate(0.001), "0.001");
        assert_eq!(format_learning_rate(0.029393109), "0.02939");
        assert_eq!(format_learning_rate(2.1469936e-10), "2.147e-10");
        assert_eq!(format_learning_rate(0.0), "0");
    }
}
