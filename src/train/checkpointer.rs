//! The checkpoint sink: writes a checkpoint at the end of every epoch (and every N steps if
//! asked), keeps the newest K plus the best one, and writes the checkpoint of an interrupted run.

use std::path::{Path, PathBuf};

use crate::checkpoint::{
    checkpoint_file_name, checkpoints_to_delete, list_checkpoints, parse_checkpoint_file_name,
    Checkpoint, TrainingData,
};
use crate::data::Dataset;
use crate::error::{Error, Result};
pub use crate::run::spec::CheckpointSettings;
use crate::run::spec::RunSpec;
use crate::train::callbacks::{Metric, Monitor};
use crate::train::{Callback, CallbackPhase, Control, EpochRecord, Trainer};

/// Writes checkpoints of one run. Whoever runs it as a callback gives it
/// [`crate::train::CallbackPhase::Persist`], so the state of every other callback is up to date
/// when it saves.
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
        let best = self.best_epoch(&trainer.history);
        let existing = list_checkpoints(&settings.dir)?;
        for action in folder_actions(settings, position, best, &existing) {
            match action {
                CheckpointAction::Save(path) => self.save_to(trainer, &path)?,
                CheckpointAction::Delete(path) => {
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?
                }
            }
        }
        Ok(settings
            .dir
            .join(checkpoint_file_name(position.0, position.1)))
    }

    /// The best epoch (1-based) so far, as `--restore-best` or `--early-stopping` judge it (their
    /// monitor), else by the lowest validation loss; `None` when nothing is monitored.
    fn best_epoch(&self, history: &[EpochRecord]) -> Option<usize> {
        let validation = &self.spec.validation;
        let monitor = validation
            .restore_best
            .or(validation.early_stopping.map(|(monitor, _)| monitor))
            .unwrap_or(Monitor {
                metric: Metric::ValLoss,
                min_delta: 0.0,
            });
        monitor.best_epoch(history).map(|(epoch, _)| epoch)
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

/// What the checkpointer does with its folder (as burn's checkpointing strategies, the policy
/// decides and the checkpointer carries it out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointAction {
    Save(PathBuf),
    Delete(PathBuf),
}

/// The checkpoint policy at `position` (epochs, steps into the next): save its checkpoint, then
/// delete all but the newest `settings.keep` of the folder (`existing`, oldest first), never the
/// checkpoint that ends `best_epoch`.
pub fn folder_actions(
    settings: &CheckpointSettings,
    position: (usize, usize),
    best_epoch: Option<usize>,
    existing: &[PathBuf],
) -> Vec<CheckpointAction> {
    let new = settings
        .dir
        .join(checkpoint_file_name(position.0, position.1));
    let mut all = existing.to_vec();
    if !all.contains(&new) {
        all.push(new.clone());
    }
    all.sort_by_key(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_checkpoint_file_name)
    });
    let best = best_epoch.map(|epoch| settings.dir.join(checkpoint_file_name(epoch, 0)));
    let mut actions = vec![CheckpointAction::Save(new)];
    actions.extend(
        checkpoints_to_delete(&all, settings.keep, best.as_deref())
            .into_iter()
            .map(CheckpointAction::Delete),
    );
    actions
}

impl Checkpointer<'_> {
    /// Whether this step is checkpointed (every `--checkpoint-every-steps` steps; the last step
    /// of an epoch is checkpointed by `on_epoch_end`, with the epoch's record).
    fn saves_after_step(&self, trainer: &Trainer) -> bool {
        let Some(every) = self.settings.as_ref().and_then(|s| s.every_steps) else {
            return false;
        };
        let batch_size = trainer.config.batch_size.resolve(self.train.len());
        let steps_per_epoch = self.train.len().div_ceil(batch_size);
        let global_step = trainer.epoch * steps_per_epoch + trainer.step_in_epoch;
        global_step.is_multiple_of(every) && trainer.step_in_epoch < steps_per_epoch
    }
}

impl Callback for Checkpointer<'_> {
    fn phase(&self) -> CallbackPhase {
        CallbackPhase::Persist
    }

    fn on_step_end(&mut self, trainer: &Trainer) -> Result<Control> {
        if let (true, Some(settings)) = (self.saves_after_step(trainer), self.settings.clone()) {
            self.save_in_folder(trainer, &settings)?;
        }
        Ok(Control::Continue)
    }

    fn reads_state_after_step(&self, trainer: &Trainer) -> bool {
        self.saves_after_step(trainer)
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, _record: &EpochRecord) -> Result<Control> {
        if let Some(settings) = self.settings.clone() {
            self.save_in_folder(trainer, &settings)?;
        }
        Ok(Control::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(keep: usize) -> CheckpointSettings {
        CheckpointSettings {
            dir: PathBuf::from("run"),
            every_steps: None,
            keep,
        }
    }

    fn file(epoch: usize, step: usize) -> PathBuf {
        PathBuf::from("run").join(checkpoint_file_name(epoch, step))
    }

    #[test]
    fn the_policy_saves_then_keeps_the_newest_and_the_best() {
        let existing = [file(1, 0), file(2, 0), file(3, 0)];
        assert_eq!(
            folder_actions(&settings(2), (4, 0), Some(1), &existing),
            [
                CheckpointAction::Save(file(4, 0)),
                CheckpointAction::Delete(file(2, 0))
            ]
        );
        // Without a best epoch the oldest go; a mid-epoch checkpoint sorts between epochs.
        assert_eq!(
            folder_actions(&settings(2), (3, 50), None, &existing),
            [
                CheckpointAction::Save(file(3, 50)),
                CheckpointAction::Delete(file(1, 0)),
                CheckpointAction::Delete(file(2, 0))
            ]
        );
        // Saving over an existing position (a resumed run) adds nothing to delete.
        assert_eq!(
            folder_actions(&settings(3), (3, 0), None, &existing),
            [CheckpointAction::Save(file(3, 0))]
        );
    }
}
