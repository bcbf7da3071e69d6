//! The library's one error type. Every variant carries enough context (a file, an option,
//! an epoch) for `main` to print a single helpful line.

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
    /// A command-line option has a value we cannot use.
    #[error("invalid value for {option}: {message}")]
    Config { option: String, message: String },
    /// Training diverged.
    #[error("loss became {value} at epoch {epoch}, step {step}; try a smaller --learning-rate")]
    NonFinite {
        epoch: usize,
        step: usize,
        value: f32,
    },
    /// The weights became NaN or infinite although the loss was still finite.
    #[error("the weights became NaN or infinite at epoch {epoch}, step {step}; try a smaller --learning-rate")]
    NonFiniteWeights { epoch: usize, step: usize },
    /// The user asked us to stop (Ctrl-C / SIGTERM).
    #[error("interrupted")]
    Interrupted,
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

    pub fn config(option: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            option: option.into(),
            message: message.into(),
        }
    }

    /// The process exit code documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } => exit_code::USAGE,
            Error::Interrupted => exit_code::INTERRUPTED,
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
