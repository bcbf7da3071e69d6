//! What guards a run that saves a model: the checkpoint writer and the Ctrl-C/SIGTERM handler.

use std::path::{Path, PathBuf};

use crate::checkpoint::list_checkpoints;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::run::spec::RunSpec;
use crate::train::checkpointer::Checkpointer;
use crate::train::interrupt::InterruptGuard;
use crate::train::{Callback, CallbackPhase, Control, EpochRecord, Trainer};

pub struct Safeguards<'a> {
    checkpointer: Checkpointer<'a>,
    interrupt: InterruptGuard,
    interrupted_path: PathBuf,
}

impl<'a> Safeguards<'a> {
    /// Installs the signal handlers; from now on Ctrl-C stops at the next batch boundary.
    /// `interrupted_path`: where the checkpoint of an interrupted run goes without a folder.
    pub fn install(spec: &RunSpec, train: &'a Dataset, interrupted_path: PathBuf) -> Result<Self> {
        Ok(Safeguards {
            checkpointer: Checkpointer::new(spec, train),
            interrupt: InterruptGuard::install()?,
            interrupted_path,
        })
    }

    /// After `fit`: if a signal stopped training, writes the checkpoint and returns
    /// [`Error::Interrupted`] naming it. Also refuses weights that diverged in the last step.
    pub fn finish(mut self, trainer: &Trainer) -> Result<()> {
        let finished = trainer.epoch >= trainer.config.epochs;
        if self.interrupt.requested() && !finished {
            let path = self
                .checkpointer
                .save_interrupted(trainer, &self.interrupted_path)?;
            eprintln!(
                "Interrupted after {} epoch(s) and {} step(s); saved checkpoint {}",
                trainer.epoch,
                trainer.step_in_epoch,
                path.display()
            );
            return Err(Error::Interrupted {
                checkpoint: Some(path),
            });
        }
        if !trainer.params.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteWeights {
                epoch: trainer.epoch,
                step: trainer.step_in_epoch,
            });
        }
        Ok(())
    }
}

impl Callback for Safeguards<'_> {
    fn phase(&self) -> CallbackPhase {
        CallbackPhase::Persist
    }

    fn on_step_end(&mut self, trainer: &Trainer) -> Result<Control> {
        self.checkpointer.on_step_end(trainer)?;
        self.interrupt.on_step_end(trainer)
    }

    fn reads_state_after_step(&self, trainer: &Trainer) -> bool {
        self.checkpointer.reads_state_after_step(trainer)
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        self.checkpointer.on_epoch_end(trainer, record)
    }
}

/// The final model could not be written (a full disk, say): if the run checkpointed, its
/// newest checkpoint holds the trained weights, and resuming it writes the model.
pub fn explain_save_failure(checkpoint_dir: Option<&Path>, error: Error) -> Error {
    let newest = checkpoint_dir
        .and_then(|dir| list_checkpoints(dir).ok())
        .and_then(|mut files| files.pop());
    match (error, newest) {
        (Error::Io { path, source }, Some(checkpoint)) => Error::SaveFailedWeightsSafe {
            path,
            source,
            checkpoint,
        },
        (error, _) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_final_save_points_to_the_newest_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ckpt-e0001-s0000000.ckpt", "ckpt-e0002-s0000000.ckpt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        match explain_save_failure(Some(dir.path()), Error::io("weights.bin", full)) {
            Error::SaveFailedWeightsSafe {
                path,
                source,
                checkpoint,
            } => {
                assert_eq!(path, Path::new("weights.bin"));
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
                assert_eq!(checkpoint, dir.path().join("ckpt-e0002-s0000000.ckpt"));
            }
            other => panic!("{other}"),
        }
        // Without checkpoints there is nothing to point to: the error is unchanged.
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert_eq!(
            explain_save_failure(None, Error::io("weights.bin", denied)).to_string(),
            "weights.bin: denied"
        );
    }
}
