//! The training loop's controls through the library: full-batch gradient descent, validation
//! metrics, learning-rate schedules, early stopping and restoring the best epoch's weights.

use crate::support;

use mnist_train::data::{load_split, Dataset, DatasetKind, Split};
use mnist_train::nn::Architecture;
use mnist_train::optim::schedule::{LrSchedule, ScheduleKind, Warmup};
use mnist_train::optim::OptimizerConfig;
use mnist_train::train::callbacks::{
    BestWeights, EarlyStopping, Metric, Monitor, TrainingControls,
};
use mnist_train::train::{
    evaluate, BatchSize, Callback, Control, EpochRecord, Progress, ProgressMode, TrainConfig,
    Trainer, Validation,
};

/// The synthetic training and test sets of `tests/common`, loaded through the real reader.
fn synthetic(train_count: usize, test_count: usize) -> (Dataset, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    support::write_synthetic_dataset(dir.path(), train_count, test_count, false);
    (
        load_split(dir.path(), Split::Train, DatasetKind::Mnist).unwrap(),
        load_split(dir.path(), Split::Test, DatasetKind::Mnist).unwrap(),
    )
}

/// A small network (784 → 16 → 10) without dropout, so losses are deterministic functions of
/// the weights.
fn small_config(optimizer: OptimizerConfig, learning_rate: f32, epochs: usize) -> TrainConfig {
    TrainConfig {
        architecture: Architecture {
            hidden: vec![16],
            dropout: 0.0,
            ..Architecture::tutorial()
        },
        optimizer,
        learning_rate,
        epochs,
        seed: 11,
        ..TrainConfig::default()
    }
}

fn quiet(epochs: usize) -> Progress {
    Progress::new(ProgressMode::None, epochs)
}

#[test]
fn full_batch_gradient_descent_with_a_small_rate_lowers_the_loss_every_step() {
    let (train, _) = synthetic(120, 10);
    let config = TrainConfig {
        batch_size: BatchSize::Full,
        ..small_config(OptimizerConfig::Sgd, 0.05, 25)
    };
    let mut trainer = Trainer::new(config);
    trainer.fit(&train, &mut quiet(25), &mut []).unwrap();
    // One step per epoch; each record's loss is the full training loss before that epoch's step.
    let losses: Vec<f64> = trainer.history.iter().map(|r| r.loss).collect();
    assert_eq!(losses.len(), 25);
    for pair in losses.windows(2) {
        assert!(pair[1] < pair[0], "loss rose: {losses:?}");
    }
    // And the loss after the last step is lower still.
    let after = evaluate(&trainer.mlp, &trainer.params, &train, 1000).loss;
    assert!(after < losses[24], "{after} vs {losses:?}");
}

#[test]
fn validation_metrics_are_those_of_the_weights_at_the_end_of_each_epoch() {
    let (train, test) = synthetic(200, 60);
    let mut trainer = Trainer::new(small_config(OptimizerConfig::adam_default(), 0.01, 2));
    let validation = Validation {
        data: &test,
        batch_size: 7,
    };
    trainer
        .fit_with_validation(&train, Some(validation), &mut quiet(2), &mut [])
        .unwrap();
    let last = trainer.history.last().unwrap();
    let direct = evaluate(&trainer.mlp, &trainer.params, &test, 1000);
    assert!((last.val_loss.unwrap() - direct.loss).abs() < 1e-9);
    assert_eq!(last.val_accuracy.unwrap(), direct.accuracy);
    assert!(trainer.history.iter().all(|r| r.val_loss.is_some()));
}

#[test]
fn each_epoch_reports_the_scheduled_learning_rate() {
    let (train, _) = synthetic(64, 10);
    // 64 examples in batches of 32: 2 steps per epoch. Warm-up over the first 2 steps, then halve
    // every epoch.
    let config = TrainConfig {
        schedule: LrSchedule {
            kind: ScheduleKind::Step {
                step_size: 1,
                gamma: 0.5,
            },
            warmup: Warmup::Steps(2),
        },
        ..small_config(OptimizerConfig::Sgd, 0.1, 4)
    };
    let mut trainer = Trainer::new(config);
    trainer.fit(&train, &mut quiet(4), &mut []).unwrap();
    let rates: Vec<f32> = trainer.history.iter().map(|r| r.learning_rate).collect();
    // Epoch 1 is the warm-up (its last step runs at the full rate); the decay starts after it.
    assert_eq!(rates, vec![0.1, 0.1, 0.05, 0.025]);
}

/// Sets the weights to a marker of the epoch, then feeds a scripted metric to the callbacks,
/// like the training loop does. Returns the epoch after which they asked to stop.
fn replay(trainer: &mut Trainer, losses: &[f64], controls: &mut TrainingControls) -> Option<usize> {
    for (index, &val_loss) in losses.iter().enumerate() {
        let epoch = index + 1;
        trainer.params.fill(epoch as f32);
        let record = EpochRecord {
            epoch,
            loss: 1.0,
            accuracy: 0.5,
            val_loss: Some(val_loss),
            val_accuracy: Some(0.5),
            learning_rate: 0.001,
            seconds: 1.0,
            epsilon: None,
            samples_per_second: 1.0,
        };
        let mut stop = false;
        for callback in controls.callbacks() {
            stop |= callback.on_epoch_end(trainer, &record).unwrap() == Control::Stop;
        }
        if stop {
            return Some(epoch);
        }
    }
    None
}

fn val_loss_monitor(min_delta: f64) -> Monitor {
    Monitor {
        metric: Metric::ValLoss,
        min_delta,
    }
}

/// Early stopping on val_loss with patience 2, and restore-best on the same metric.
fn patience_two_and_restore_best() -> TrainingControls {
    TrainingControls {
        early_stopping: Some(EarlyStopping::new(val_loss_monitor(0.0), 2)),
        best_weights: Some(BestWeights::new(val_loss_monitor(0.0))),
    }
}

#[test]
fn early_stopping_on_a_scripted_sequence_and_restore_best_returns_that_epochs_weights() {
    let mut trainer = Trainer::new(small_config(OptimizerConfig::Sgd, 0.1, 10));
    let mut controls = patience_two_and_restore_best();
    // Best at epoch 4; epochs 5 and 6 are worse: patience 2 stops after epoch 6.
    let losses = [0.8, 0.6, 0.5, 0.45, 0.47, 0.46, 0.3];
    assert_eq!(replay(&mut trainer, &losses, &mut controls), Some(6));
    let lines = controls.finish(&mut trainer.params);
    assert!(trainer.params.iter().all(|&p| p == 4.0));
    assert!(
        lines.iter().any(|l| l.contains("after epoch 6")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("epoch 4")), "{lines:?}");
}

#[test]
fn restore_best_without_early_stopping_keeps_the_best_epoch_when_epochs_run_out() {
    let mut trainer = Trainer::new(small_config(OptimizerConfig::Sgd, 0.1, 10));
    let mut controls = TrainingControls {
        early_stopping: None,
        best_weights: Some(BestWeights::new(val_loss_monitor(0.0))),
    };
    assert_eq!(
        replay(&mut trainer, &[0.9, 0.4, 0.5, 0.6], &mut controls),
        None
    );
    controls.finish(&mut trainer.params);
    assert!(trainer.params.iter().all(|&p| p == 2.0));
}

/// Remembers the weights after every epoch.
struct WeightsPerEpoch(Vec<Vec<f32>>);

impl Callback for WeightsPerEpoch {
    fn on_epoch_end(
        &mut self,
        trainer: &Trainer,
        _record: &EpochRecord,
    ) -> mnist_train::Result<Control> {
        self.0.push(trainer.params.clone());
        Ok(Control::Continue)
    }
}

#[test]
fn fit_stops_when_early_stopping_asks_and_the_best_weights_come_back() {
    let (train, test) = synthetic(160, 40);
    let mut trainer = Trainer::new(small_config(OptimizerConfig::adam_default(), 0.01, 8));
    // No later epoch can beat the first by 1e9: patience 1 stops after epoch 2, and the best
    // weights are those of epoch 1.
    let impossible = val_loss_monitor(1e9);
    let mut controls = TrainingControls {
        early_stopping: Some(EarlyStopping::new(impossible, 1)),
        best_weights: Some(BestWeights::new(impossible)),
    };
    let mut weights = WeightsPerEpoch(Vec::new());
    let mut callbacks = controls.callbacks();
    callbacks.push(&mut weights);
    let validation = Validation {
        data: &test,
        batch_size: 100,
    };
    trainer
        .fit_with_validation(&train, Some(validation), &mut quiet(8), &mut callbacks)
        .unwrap();
    assert_eq!(trainer.history.len(), 2);
    assert_ne!(trainer.params, weights.0[0]);
    controls.finish(&mut trainer.params);
    assert_eq!(trainer.params, weights.0[0]);
}

#[test]
fn patience_running_out_on_the_last_epoch_is_not_called_an_early_stop() {
    // The same sequence as above, but the run has only 6 epochs.
    let mut trainer = Trainer::new(small_config(OptimizerConfig::Sgd, 0.1, 6));
    let mut controls = patience_two_and_restore_best();
    replay(
        &mut trainer,
        &[0.8, 0.6, 0.5, 0.45, 0.47, 0.46],
        &mut controls,
    );
    let lines = controls.finish(&mut trainer.params);
    assert!(
        !lines.iter().any(|l| l.contains("Early stopping")),
        "{lines:?}"
    );
    assert!(trainer.params.iter().all(|&p| p == 4.0));
}
