//! Exact resume at the library level: a run stopped after ANY step, saved to checkpoint bytes,
//! loaded back and continued, ends bit-identical to the uninterrupted run (weights, optimizer
//! state and every history field except wall time).

use crate::support;

use mnist_train::checkpoint::Checkpoint;
use mnist_train::nn::Architecture;
use mnist_train::optim::privacy::DpConfig;
use mnist_train::optim::OptimizerConfig;
use mnist_train::train::{
    BatchSize, Callback, CallbackState, Control, EpochRecord, Progress, ProgressMode, TrainConfig,
    Trainer,
};
use support::{assert_same_training_state, random_dataset, small_run, test_run};

/// Asks the loop to stop once `stop_after` optimization steps are done.
struct StopAfter {
    stop_after: usize,
    steps: usize,
}

impl Callback for StopAfter {
    fn on_step_end(&mut self, _trainer: &Trainer) -> mnist_train::Result<Control> {
        self.steps += 1;
        Ok(if self.steps == self.stop_after {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// A stateful callback standing in for early stopping: counts epochs and keeps a tensor.
#[derive(Default)]
struct EpochCounter {
    epochs_seen: u64,
    restored: bool,
}

impl Callback for EpochCounter {
    fn on_epoch_end(
        &mut self,
        _trainer: &Trainer,
        _record: &EpochRecord,
    ) -> mnist_train::Result<Control> {
        self.epochs_seen += 1;
        Ok(Control::Continue)
    }
    fn state_key(&self) -> Option<&'static str> {
        Some("epoch_counter")
    }
    fn checkpoint_state(&self) -> Option<CallbackState> {
        let mut state = CallbackState {
            values: serde_json::json!({ "epochs_seen": self.epochs_seen }),
            ..Default::default()
        };
        state
            .tensors
            .insert("marker".to_string(), vec![self.epochs_seen as f32; 3]);
        Some(state)
    }
    fn restore_checkpoint_state(&mut self, state: &CallbackState) -> mnist_train::Result<()> {
        self.epochs_seen = state.values["epochs_seen"].as_u64().unwrap();
        assert_eq!(state.tensors["marker"], vec![self.epochs_seen as f32; 3]);
        self.restored = true;
        Ok(())
    }
}

/// Three epochs of a 12-unit MLP.
fn config(optimizer: OptimizerConfig, batch_size: BatchSize) -> TrainConfig {
    let mlp = Architecture {
        hidden: vec![12],
        ..Architecture::tutorial()
    };
    TrainConfig {
        optimizer,
        ..small_run(mlp, batch_size, 3)
    }
}

#[test]
fn resuming_after_every_possible_step_is_bit_identical() {
    // 50 examples: batch 16 gives 4 steps per epoch with a short last batch.
    let train = random_dataset(50, 3);
    let cases = [
        (OptimizerConfig::adam_default(), BatchSize::Examples(16)),
        (
            OptimizerConfig::Momentum { momentum: 0.9 },
            BatchSize::Examples(16),
        ),
        (
            OptimizerConfig::Nesterov { momentum: 0.9 },
            BatchSize::Examples(7),
        ),
        (
            OptimizerConfig::Rmsprop {
                rho: 0.9,
                epsilon: 1e-7,
            },
            BatchSize::Full,
        ),
        (OptimizerConfig::Sgd, BatchSize::Examples(50)),
    ];
    // The same, privately (Poisson sampling, clipping, noise; ε in every record).
    let private = DpConfig {
        noise_multiplier: 1.1,
        clip_norm: 0.5,
        delta: 1e-5,
    };
    let cases = cases
        .map(|(optimizer, batch_size)| (optimizer, batch_size, None))
        .into_iter()
        .chain([
            (
                OptimizerConfig::Momentum { momentum: 0.9 },
                BatchSize::Examples(16),
                Some(private),
            ),
            (
                OptimizerConfig::adam_default(),
                BatchSize::Examples(7),
                Some(private),
            ),
        ]);
    for (optimizer, batch_size, privacy) in cases {
        let config = TrainConfig {
            privacy,
            ..config(optimizer, batch_size)
        };
        let mut progress = Progress::new(ProgressMode::None, config.epochs);
        let mut reference = Trainer::new(config.clone());
        let mut counter = EpochCounter::default();
        reference
            .fit(&train, &mut progress, &mut [&mut counter])
            .unwrap();
        let total_steps = reference.optimizer.steps as usize;
        assert!(total_steps >= 3, "{optimizer:?}");

        for stop_after in 1..total_steps {
            let mut first = Trainer::new(config.clone());
            let mut counter = EpochCounter::default();
            let mut stop = StopAfter {
                stop_after,
                steps: 0,
            };
            first
                .fit(&train, &mut progress, &mut [&mut counter, &mut stop])
                .unwrap();
            assert_eq!(first.optimizer.steps as usize, stop_after);

            let (spec, data) = test_run(train.len());
            let bytes = Checkpoint::capture(&first, &spec, &data).encode();
            let checkpoint = Checkpoint::decode(&bytes).unwrap();
            let mut resumed = checkpoint.into_trainer();
            let mut counter = EpochCounter::default();
            resumed
                .fit(&train, &mut progress, &mut [&mut counter])
                .unwrap();

            let context =
                format!("{optimizer:?} {batch_size:?} {privacy:?} stopped after {stop_after}");
            assert_same_training_state(&resumed, &reference, &context);
            assert_eq!(counter.epochs_seen, 3, "{context}");
            // Callback state is sampled at epoch ends, so it exists once an epoch completed.
            assert_eq!(counter.restored, first.epoch > 0, "{context}");
        }
    }
}

#[test]
fn checkpoint_round_trips_every_field() {
    let train = random_dataset(40, 5);
    let config = config(OptimizerConfig::adam_default(), BatchSize::Examples(16));
    let mut trainer = Trainer::new(config.clone());
    let mut progress = Progress::new(ProgressMode::None, config.epochs);
    let mut counter = EpochCounter::default();
    let mut stop = StopAfter {
        stop_after: 4,
        steps: 0,
    };
    trainer
        .fit(&train, &mut progress, &mut [&mut counter, &mut stop])
        .unwrap();
    let (spec, data) = test_run(train.len());
    let original = Checkpoint::capture(&trainer, &spec, &data);
    let decoded = Checkpoint::decode(&original.encode()).unwrap();
    assert_eq!(decoded, original);
    assert_eq!(decoded.epoch, 1);
    assert_eq!(decoded.step_in_epoch, 1);
    assert!(decoded.callback_state.contains_key("epoch_counter"));
}
