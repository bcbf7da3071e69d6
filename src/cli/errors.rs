//! Library errors in the command line's words: a setting becomes the option that sets it, and
//! hints name the options and commands to type.

use std::path::Path;

use crate::error::{Error, Setting};

/// The option behind a setting (the same name in every command that has it).
pub fn option_for(setting: Setting) -> &'static str {
    match setting {
        Setting::Limit => "--limit",
        Setting::ValidationSplit => "--validation-split",
        Setting::History => "--history",
        Setting::Plot => "--plot",
        Setting::Output => "--output",
        Setting::CheckpointDir => "--checkpoint-dir",
        Setting::DataDir => "--data-dir",
        Setting::Resume => "--resume",
        Setting::HiddenWidths => "--hidden",
        Setting::BatchSize => "--batch-size",
        Setting::TestBatchSize => "--test-batch-size",
        Setting::TensorBoard => "--tensorboard",
        Setting::TargetEpsilon => "--dp-target-epsilon",
        Setting::IgSteps => "--ig-steps",
        Setting::OcclusionPatch => "--occlusion-patch",
        Setting::AttributionBaseline => "--baseline",
        Setting::ExplanationPicture => "--explain-out",
    }
}

/// The one line printed after `error: `.
pub fn message(error: &Error) -> String {
    match error {
        Error::Setting { setting, message } => {
            format!("invalid value for {}: {message}", option_for(*setting))
        }
        Error::CheckpointFolderInUse { dir } => format!(
            "invalid value for {}: {} already holds checkpoints; continue that run with --resume {}, or choose an empty folder",
            option_for(Setting::CheckpointDir),
            dir.display(),
            dir.display()
        ),
        Error::SaveFailedWeightsSafe {
            path,
            source,
            checkpoint,
        } => format!(
            "{}: {source}; the trained weights are safe in {1}: `mnist-train train --resume {1}` writes the model once there is room (add --output to write it elsewhere)",
            path.display(),
            shell_quote(checkpoint)
        ),
        Error::NonFinite { epoch, step, value } => format!(
            "loss became {value} at epoch {epoch}, step {step}; try a smaller --learning-rate"
        ),
        Error::NonFiniteWeights { epoch, step } => format!(
            "the weights became NaN or infinite at epoch {epoch}, step {step}; try a smaller --learning-rate"
        ),
        other => other.to_string(),
    }
}

/// What to type to continue an interrupted run, if it left a checkpoint.
pub fn how_to_continue(error: &Error) -> Option<String> {
    match error {
        Error::Interrupted {
            checkpoint: Some(path),
        } => Some(format!(
            "To continue: mnist-train train --resume {}",
            shell_quote(path)
        )),
        _ => None,
    }
}

/// Quotes a path for a copy-pasteable shell command when it needs it.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_by_their_options() {
        let error = Error::setting(Setting::ValidationSplit, "leaves no validation images");
        assert_eq!(
            message(&error),
            "invalid value for --validation-split: leaves no validation images"
        );
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let error = Error::SaveFailedWeightsSafe {
            path: "weights.bin".into(),
            source: full,
            checkpoint: "run dir/ckpt-e0002-s0000000.ckpt".into(),
        };
        assert_eq!(
            message(&error),
            "weights.bin: No space left on device; the trained weights are safe in \
             'run dir/ckpt-e0002-s0000000.ckpt': `mnist-train train --resume \
             'run dir/ckpt-e0002-s0000000.ckpt'` writes the model once there is room \
             (add --output to write it elsewhere)"
        );
    }
}
