//! Property tests for every parser of untrusted bytes: the IDX reader (raw and gzip), the model
//! file and the checkpoint file. Arbitrary and mutated inputs never panic; every valid file
//! round-trips exactly; any single changed byte of a model or checkpoint is detected.

use crate::support;

use std::collections::BTreeMap;

use proptest::prelude::*;

use mnist_train::checkpoint::Checkpoint;
use mnist_train::data::idx::read_idx_bytes;
use mnist_train::data::DatasetKind;
use mnist_train::model_file::{Model, Normalization};
use mnist_train::nn::Architecture;
use mnist_train::optim::{Optimizer, OptimizerConfig};
use mnist_train::run::RunSpec;
use mnist_train::train::{BatchSize, CallbackState, EpochRecord, RunningMetrics, TrainConfig};
use support::{gzip, idx_bytes, test_run};

/// Dimensions (1–3 of them, small) and matching data.
fn idx_array() -> impl Strategy<Value = (Vec<u32>, Vec<u8>)> {
    prop::collection::vec(0u32..6, 1..=3).prop_flat_map(|dims| {
        let len = dims.iter().product::<u32>() as usize;
        (Just(dims), prop::collection::vec(any::<u8>(), len))
    })
}

/// A change to a byte string: flip bits, truncate, extend, or overwrite a run.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Overwrite(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, bits)| Mutation::Xor(at, bits)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, run)| Mutation::Overwrite(at, run)),
    ]
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for mutation in mutations {
        match mutation {
            Mutation::Xor(at, bits) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= bits;
            }
            Mutation::Truncate(len) => bytes.truncate(len % (bytes.len() + 1)),
            Mutation::Append(extra) => bytes.extend_from_slice(extra),
            Mutation::Overwrite(at, run) if !bytes.is_empty() => {
                let at = at % bytes.len();
                for (offset, value) in run.iter().enumerate() {
                    if let Some(byte) = bytes.get_mut(at + offset) {
                        *byte = *value;
                    }
                }
            }
            _ => {}
        }
    }
    bytes
}

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite", |v| v.is_finite())
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |v| v.is_finite())
}

fn small_architecture() -> impl Strategy<Value = Architecture> {
    (
        1usize..12,
        prop::collection::vec(1usize..6, 0..3),
        1usize..5,
        0.0f32..0.9,
    )
        .prop_map(|(inputs, hidden, outputs, dropout)| Architecture {
            inputs,
            hidden,
            outputs,
            activation: "relu".to_string(),
            dropout,
            layers: None,
        })
}

fn model() -> impl Strategy<Value = Model> {
    small_architecture().prop_flat_map(|architecture| {
        let count = architecture.parameter_count();
        let outputs = architecture.outputs;
        (
            prop::collection::vec(finite_f32(), count),
            prop::collection::vec("[a-zA-Z0-9 /-]{0,12}", outputs),
            Just(architecture),
        )
            .prop_map(|(parameters, class_names, architecture)| Model {
                architecture,
                normalization: Normalization::default(),
                dataset: DatasetKind::Mnist,
                class_names,
                parameters,
                privacy: None,
            })
    })
}

fn record(epoch: usize) -> impl Strategy<Value = EpochRecord> {
    (
        finite_f64(),
        finite_f64(),
        prop::option::of(finite_f64()),
        finite_f32(),
        finite_f64(),
        finite_f64(),
    )
        .prop_map(
            move |(loss, accuracy, val_loss, learning_rate, seconds, samples_per_second)| {
                EpochRecord {
                    epoch,
                    loss,
                    accuracy,
                    val_loss,
                    val_accuracy: val_loss.map(|v| v / 2.0),
                    learning_rate,
                    seconds,
                    epsilon: None,
                    samples_per_second,
                }
            },
        )
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (
        small_architecture(),
        prop_oneof![
            Just(OptimizerConfig::Sgd),
            Just(OptimizerConfig::Momentum { momentum: 0.9 }),
            Just(OptimizerConfig::adam_default()),
        ],
        1usize..200,
        1usize..50,
        0usize..4,
        any::<u64>(),
        finite_f32(),
    )
        .prop_flat_map(
            |(architecture, optimizer, train_examples, batch, epoch, seed, learning_rate)| {
                let count = architecture.parameter_count();
                let slots = Optimizer::new(optimizer, 0).slots.len();
                let steps_per_epoch = train_examples.div_ceil(batch.min(train_examples));
                (
                    Just((architecture, optimizer, train_examples, batch, epoch, seed)),
                    Just(learning_rate),
                    prop::collection::vec(finite_f32(), count),
                    prop::collection::vec(prop::collection::vec(finite_f32(), count), slots),
                    0..=steps_per_epoch,
                    finite_f64(),
                    (0..epoch).map(|e| record(e + 1)).collect::<Vec<_>>(),
                    prop::collection::vec(finite_f32(), 0..5),
                    any::<u64>(),
                )
            },
        )
        .prop_map(
            |(
                (architecture, optimizer, train_examples, batch, epoch, seed),
                learning_rate,
                params,
                slots,
                step_in_epoch,
                loss_sum,
                history,
                callback_tensor,
                steps,
            )| {
                let mut callback_state = BTreeMap::new();
                let mut state = CallbackState {
                    values: serde_json::json!({ "best": loss_sum, "epoch": epoch }),
                    tensors: BTreeMap::new(),
                };
                state.tensors.insert("params".to_string(), callback_tensor);
                callback_state.insert("best_weights".to_string(), state);
                let (spec, data) = test_run(train_examples);
                Checkpoint {
                    program_version: "0.1.0".to_string(),
                    spec: RunSpec {
                        training: TrainConfig {
                            architecture,
                            optimizer,
                            learning_rate,
                            epochs: epoch + 1,
                            batch_size: BatchSize::Examples(batch),
                            seed,
                            ..TrainConfig::default()
                        },
                        limit: Some(train_examples),
                        ..spec
                    },
                    data,
                    epoch,
                    step_in_epoch,
                    running: RunningMetrics {
                        loss_sum,
                        correct: 0,
                        seen: 0,
                    },
                    optimizer: Optimizer {
                        config: optimizer,
                        steps,
                        slots,
                    },
                    history,
                    callback_state,
                    params,
                }
            },
        )
}

/// Recomputes the trailing CRC-32, so a mutation reaches the parsing behind the checksum.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 4 {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

proptest! {
    #[test]
    fn idx_reader_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        ndims in 1usize..=3,
    ) {
        let _ = read_idx_bytes(&bytes, ndims);
        let _ = read_idx_bytes(&gzip(&bytes), ndims);
    }

    #[test]
    fn valid_idx_files_round_trip_raw_and_gzip((dims, data) in idx_array()) {
        let raw = idx_bytes(&dims, &data);
        for bytes in [raw.clone(), gzip(&raw)] {
            let array = read_idx_bytes(&bytes, dims.len()).unwrap();
            let expected: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            prop_assert_eq!(array.dims, expected);
            prop_assert_eq!(&array.data, &data);
        }
    }

    #[test]
    fn mutated_idx_files_never_panic_and_never_lie(
        (dims, data) in idx_array(),
        mutations in prop::collection::vec(mutation(), 1..4),
        compress_first in any::<bool>(),
    ) {
        let raw = idx_bytes(&dims, &data);
        // Mutate the raw file, or the gzip stream itself.
        let bytes = if compress_first {
            apply(&gzip(&raw), &mutations)
        } else {
            apply(&raw, &mutations)
        };
        if let Ok(array) = read_idx_bytes(&bytes, dims.len()) {
            // Whatever is accepted is self-consistent.
            prop_assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
        }
    }

    #[test]
    fn model_decoder_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = Model::decode(&bytes);
        let _ = Checkpoint::decode(&bytes);
        // With a valid magic, version and checksum, the header and data parsing is reached.
        let mut sealed = b"MNISTTRN\x01\x00\x00\x00".to_vec();
        sealed.extend_from_slice(&bytes);
        sealed.extend_from_slice(&[0; 4]);
        let sealed = reseal(sealed);
        let _ = Model::decode(&sealed);
        let _ = Checkpoint::decode(&sealed);
    }

    #[test]
    fn valid_models_round_trip_exactly(model in model()) {
        let decoded = Model::decode(&model.encode()).unwrap();
        let bits = |m: &Model| m.parameters.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&decoded), bits(&model));
        prop_assert_eq!(decoded, model);
    }

    #[test]
    fn valid_checkpoints_round_trip_exactly(checkpoint in checkpoint()) {
        let decoded = Checkpoint::decode(&checkpoint.encode()).unwrap();
        // f64 sums and history survive the JSON header bit for bit.
        prop_assert_eq!(
            decoded.running.loss_sum.to_bits(),
            checkpoint.running.loss_sum.to_bits()
        );
        prop_assert_eq!(decoded, checkpoint);
    }

    #[test]
    fn any_changed_byte_of_a_model_or_checkpoint_is_detected(
        model in model(),
        checkpoint in checkpoint(),
        at in any::<usize>(),
        bits in 1u8..,
    ) {
        let flip = |mut bytes: Vec<u8>| {
            let at = at % bytes.len();
            bytes[at] ^= bits;
            bytes
        };
        prop_assert!(Model::decode(&flip(model.encode())).is_err());
        prop_assert!(Checkpoint::decode(&flip(checkpoint.encode())).is_err());
    }

    #[test]
    fn mutated_and_resealed_models_and_checkpoints_never_panic(
        model in model(),
        checkpoint in checkpoint(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        if let Ok(decoded) = Model::decode(&reseal(apply(&model.encode(), &mutations))) {
            prop_assert_eq!(
                decoded.parameters.len(),
                decoded.architecture.parameter_count()
            );
        }
        let bytes = reseal(apply(&checkpoint.encode(), &mutations));
        if let Ok(decoded) = Checkpoint::decode(&bytes) {
            prop_assert_eq!(decoded.params.len(), decoded.spec.training.architecture.parameter_count());
        }
    }
}
