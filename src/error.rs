//! The library's one error type. Every variant carries enough context (a file, a setting, an
//! epoch) for the program to print a single helpful line. Errors speak in the library's terms
//! ([`Setting`]); the command line names the options behind them.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in mnist-train.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file (IDX, gzip) is malformed.
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    /// A model or checkpoint file is malformed, corrupt or does not fit.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// A command-line option has a value we cannot use (raised by the command line, which
    /// knows the option's name).
    #[error("invalid value for {option}: {message}")]
    Config { option: String, message: String },
    /// A setting of the run has a value we cannot use, named in the library's terms; the
    /// command line names the option behind it.
    #[error("invalid {setting}: {message}")]
    Setting { setting: Setting, message: String },
    /// A fresh run was given a checkpoint folder that holds another run's checkpoints.
    #[error("invalid {}: {} already holds checkpoints of another run", Setting::CheckpointDir, dir.display())]
    CheckpointFolderInUse { dir: PathBuf },
    /// The final model could not be written, but the newest checkpoint holds the weights.
    #[error("{}: {source}; the trained weights are safe in {}: resuming it writes the model", path.display(), checkpoint.display())]
    SaveFailedWeightsSafe {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        checkpoint: PathBuf,
    },
    /// Training diverged.
    #[error("loss became {value} at epoch {epoch}, step {step}; try a smaller learning rate")]
    NonFinite {
        epoch: usize,
        step: usize,
        value: f32,
    },
    /// The weights became NaN or infinite although the loss was still finite.
    #[error("the weights became NaN or infinite at epoch {epoch}, step {step}; try a smaller learning rate")]
    NonFiniteWeights { epoch: usize, step: usize },
    /// The user asked us to stop (Ctrl-C / SIGTERM); `checkpoint` holds the run's state.
    #[error("interrupted")]
    Interrupted { checkpoint: Option<PathBuf> },
}

/// A setting of a run that a library error can be about (the command line maps each to its
/// option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// How many training images to use.
    Limit,
    /// The fraction held out for validation.
    ValidationSplit,
    /// The CSV history file.
    History,
    /// A picture file (curves, confusion matrix).
    Plot,
    /// Where the model is saved.
    Output,
    /// Where checkpoints go.
    CheckpointDir,
    /// Where the dataset is read from.
    DataDir,
    /// The checkpoint (file or folder) a run continues.
    Resume,
    /// The widths of the hidden layers.
    HiddenWidths,
    /// Examples per optimization step.
    BatchSize,
    /// Examples per evaluation batch.
    TestBatchSize,
    /// Where TensorBoard event files go.
    TensorBoard,
    /// The ε a private run must stay within.
    TargetEpsilon,
    /// Integrated gradients' number of path points.
    IgSteps,
    /// The occlusion patch's side.
    OcclusionPatch,
    /// The pixel value removed pixels take in attributions and their check.
    AttributionBaseline,
    /// The explanation picture file.
    ExplanationPicture,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Setting::Limit => "training-set limit",
            Setting::ValidationSplit => "validation split",
            Setting::History => "history file",
            Setting::Plot => "picture file",
            Setting::Output => "model path",
            Setting::CheckpointDir => "checkpoint folder",
            Setting::DataDir => "data folder",
            Setting::Resume => "checkpoint to resume",
            Setting::HiddenWidths => "hidden layer widths",
            Setting::BatchSize => "batch size",
            Setting::TestBatchSize => "evaluation batch size",
            Setting::TensorBoard => "TensorBoard folder",
            Setting::TargetEpsilon => "target ε",
            Setting::IgSteps => "integrated-gradients steps",
            Setting::OcclusionPatch => "occlusion patch",
            Setting::AttributionBaseline => "attribution baseline",
            Setting::ExplanationPicture => "explanation picture",
        })
    }
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn data(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn model(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn setting(setting: Setting, message: impl Into<String>) -> Self {
        Error::Setting {
            setting,
            message: message.into(),
        }
    }

    pub fn config(option: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            option: option.into(),
            message: message.into(),
        }
    }

    /// The process exit code documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } | Error::Setting { .. } | Error::CheckpointFolderInUse { .. } => {
                exit_code::USAGE
            }
            Error::Interrupted { .. } => exit_code::INTERRUPTED,
            _ => exit_code::ERROR,
        }
    }
}

/// Process exit codes (documented in the README).
pub mod exit_code {
    pub const SUCCESS: i32 = 0;
    /// A file could not be read or written, or its contents are invalid; training diverged.
    pub const ERROR: i32 = 1;
    /// The command line is invalid (unknown option, out-of-range or contradictory values).
    pub const USAGE: i32 = 2;
    /// Stopped by SIGINT or SIGTERM.
    pub const INTERRUPTED: i32 = 130;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
