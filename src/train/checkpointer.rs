//! The checkpoint sink: writes a checkpoint at the end of every epoch (and every N steps if
//! asked), keeps the newest K plus the best one, and writes the checkpoint of an interrupted run.

use std::path::{Path, PathBuf};

use crate::checkpoint::{checkpoint_file_name, prune_checkpoints, Checkpoint, TrainingData};
use crate::data::Dataset;
use crate::error::{Error, Result};
pub use crate::run::spec::CheckpointSettings;
use crate::run::spec::RunSpec;
use crate::train::{Callback, Control, EpochRecord, Trainer};

/// Writes checkpoints of one run. Put it last in the callback list, so the state of every other
/// callback is already up to date when it saves.
pub struct Checkpointer<'a> {
    settings: Option<CheckpointSettings>,
    spec: RunSpec,
    train: &'a Dataset,
    /// Computed at the first save (a CRC of the whole training set).
    data: Option<TrainingData>,
    /// (epoch, step_in_epoch) and file of the newest checkpoint written, to avoid writing twice.
    last_saved: Option<((usize, usize), PathBuf)>,
}

impl<'a> Checkpointer<'a> {
    /// Checkpoints of `spec` running on `train`, the set `fit` trains on.
    pub fn new(spec: &RunSpec, train: &'a Dataset) -> Self {
        Checkpointer {
            settings: spec.checkpoints.settings(),
            spec: spec.clone(),
            train,
            data: None,
            last_saved: None,
        }
    }

    /// Writes the trainer's state to `path` (atomically), refusing diverged weights.
    pub fn save_to(&mut self, trainer: &Trainer, path: &Path) -> Result<()> {
        if !trainer.params.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteWeights {
                epoch: trainer.epoch + usize::from(trainer.step_in_epoch > 0),
                step: trainer.step_in_epoch,
            });
        }
        let train = self.train;
        let data = self.data.get_or_insert_with(|| TrainingData::of(train));
        Checkpoint::capture(trainer, &self.spec, data).save(path)?;
        self.last_saved = Some(((trainer.epoch, trainer.step_in_epoch), path.to_path_buf()));
        Ok(())
    }

    /// Writes a checkpoint into the checkpoint folder and prunes old ones. Returns its path.
    fn save_in_folder(
        &mut self,
        trainer: &Trainer,
        settings: &CheckpointSettings,
    ) -> Result<PathBuf> {
        let position = (trainer.epoch, trainer.step_in_epoch);
        if let Some((saved, path)) = &self.last_saved {
            if *saved == position {
                return Ok(path.clone());
            }
        }
        let path = settings
            .dir
            .join(checkpoint_file_name(trainer.epoch, trainer.step_in_epoch));
        self.save_to(trainer, &path)?;
        let best =
            best_epoch(trainer).map(|epoch| settings.dir.join(checkpoint_file_name(epoch, 0)));
        prune_checkpoints(&settings.dir, settings.keep, best.as_deref())?;
        Ok(path)
    }

    /// The checkpoint of an interrupted run: into the checkpoint folder if there is one, else to
    /// `fallback` (`<output>.interrupted.ckpt`). Returns where it went.
    pub fn save_interrupted(&mut self, trainer: &Trainer, fallback: &Path) -> Result<PathBuf> {
        match self.settings.clone() {
            Some(settings) => self.save_in_folder(trainer, &settings),
            None => {
                self.save_to(trainer, fallback)?;
                Ok(fallback.to_path_buf())
            }
        }
    }
}

/// The best epoch (1-based) so far: as `--restore-best` or `--early-stopping` judge it (their
/// monitored metric), else the lowest validation loss; `None` when the run does not validate.
pub fn best_epoch(trainer: &Trainer) -> Option<usize> {
    for (key, field) in [("best_weights", "epoch"), ("early_stopping", "best_epoch")] {
        if let Some(epoch) = trainer
            .callback_state
            .get(key)
            .and_then(|state| state.values[field].as_u64())
            .filter(|&epoch| epoch > 0)
        {
            return Some(epoch as usize);
        }
    }
    trainer
        .history
        .iter()
        .filter_map(|record| record.val_loss.map(|loss| (loss, record.epoch)))
        .fold(
            None,
            |best: Option<(f64, usize)>, (loss, epoch)| match best {
                Some((best_loss, _)) if best_loss <= loss => best,
                _ => Some((loss, epoch)),
            },
        )
        .map(|(_, epoch)| epoch)
}

impl Callback for Checkpointer<'_> {
    fn on_step_end(&mut self, trainer: &Trainer) -> Result<Control> {
        let Some(settings) = self.settings.clone() else {
            return Ok(Control::Continue);
        };
        let Some(every) = settings.every_steps else {
            return Ok(Control::Continue);
        };
        let batch_size = trainer.config.batch_size.resolve(self.train.len());
        let steps_per_epoch = self.train.len().div_ceil(batch_size);
        let global_step = trainer.epoch * steps_per_epoch + trainer.step_in_epoch;
        // The last step of an epoch is checkpointed by on_epoch_end, with the epoch's record.
        if global_step.is_multiple_of(every) && trainer.step_in_epoch < steps_per_epoch {
            self.save_in_folder(trainer, &settings)?;
        }
        Ok(Control::Continue)
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, _record: &EpochRecord) -> Result<Control> {
        if let Some(settings) = self.settings.clone() {
            self.save_in_folder(trainer, &settings)?;
        }
        Ok(Control::Continue)
    }
}
