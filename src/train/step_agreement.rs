//! The column-split step (`column_step`) computes the sharded step's bits, on every backend the
//! target has: a unit test, so CI's aarch64 run under qemu covers the neon backend too.

use super::step::{StepBatch, StepEngine};
use crate::data::Dataset;
use crate::kernels::{with_backend, Backend};
use crate::nn::{Architecture, Mlp};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::rng::{stream, Stream};

/// `count` images of random pixels, most of them 0 as in a digit, with labels 0..9 in turn.
fn random_dataset(count: usize, seed: u64) -> Dataset {
    let mut rng = stream(seed, Stream::Init, 0, 0);
    Dataset {
        images: (0..count * 784)
            .map(|_| {
                let lit = rng.next_f32() < 0.3;
                let value = (rng.next_f32() * 256.0) as u8;
                if lit {
                    value
                } else {
                    0
                }
            })
            .collect(),
        labels: (0..count).map(|i| (i % 10) as u8).collect(),
        rows: 28,
        cols: 28,
        class_names: (0..10).map(|c| c.to_string()).collect(),
    }
}

/// Parameters, optimizer slots and the per-step (loss, correct, gradient) after three steps
/// of `engine`; with `update_in_gradient`, as the trainer runs them (the update rule passed to
/// the gradient, so that the column-split step updates W1 in its backward jobs).
type Trained = (Vec<f32>, Vec<Vec<f32>>, Vec<(f64, usize, Vec<f32>)>);

fn three_steps(
    engine: &mut StepEngine,
    mlp: &Mlp,
    data: &Dataset,
    config: OptimizerConfig,
    batch: usize,
    update_in_gradient: bool,
) -> Trained {
    let mut params = mlp.initial_parameters(3);
    let mut optimizer = Optimizer::new(config, params.len());
    engine.load_state(&params, &optimizer);
    let mut reports = Vec::new();
    for global_step in 0..3u64 {
        let indices: Vec<u32> = (0..batch as u32)
            .map(|i| (i * 7 + global_step as u32 * 13) % data.len() as u32)
            .collect();
        let step = StepBatch {
            mlp,
            params: &params,
            dataset: data,
            indices: &indices,
            next_indices: &[],
            seed: 11,
            global_step,
        };
        let (loss, correct) = if update_in_gradient {
            engine.gradient_then_update(&step, optimizer.next_rule(0.01))
        } else {
            engine.gradient(&step)
        };
        let mut grads = vec![0.0; params.len()];
        engine.batch_gradient(&mut grads);
        reports.push((loss, correct, grads));
        engine.apply(&mut optimizer, &mut params, 0.01);
    }
    engine.publish_state(&mut params, &mut optimizer);
    (params, optimizer.slots, reports)
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn the_column_split_step_is_bit_identical_to_the_sharded_step_on_every_backend() {
    // (The sharded step ignores the rule passed with the gradient: it is the reference either way.)
    let data = random_dataset(300, 5);
    let optimizers = [
        OptimizerConfig::adam_default(),
        OptimizerConfig::Sgd,
        OptimizerConfig::Nesterov { momentum: 0.9 },
    ];
    let networks = [
        Architecture::tutorial(),
        Architecture {
            hidden: vec![100],
            dropout: 0.5,
            ..Architecture::tutorial()
        },
    ];
    for backend in Backend::supported() {
        with_backend(backend, || {
            for architecture in &networks {
                let mlp = Mlp::new(architecture.clone());
                for (batch, threads) in [(32, 2), (7, 3), (130, 4), (256, 2)] {
                    for (config, early) in
                        optimizers.into_iter().flat_map(|o| [(o, false), (o, true)])
                    {
                        let mut sharded = StepEngine::new(&mlp, batch, 1);
                        let mut split = StepEngine::new(&mlp, batch, threads);
                        assert!(split.splits_columns(), "{batch} rows on {threads} threads");
                        let expected = three_steps(&mut sharded, &mlp, &data, config, batch, false);
                        let got = three_steps(&mut split, &mlp, &data, config, batch, early);
                        let case = format!(
                            "{backend:?}, {batch} rows, {threads} threads, {config:?}, hidden {:?}, \
                             W1 updated in the gradient: {early}",
                            architecture.hidden
                        );
                        assert!(same_bits(&expected.0, &got.0), "{case}: parameters differ");
                        for (a, b) in expected.1.iter().zip(&got.1) {
                            assert!(same_bits(a, b), "{case}: optimizer slots differ");
                        }
                        for (step, (a, b)) in expected.2.iter().zip(&got.2).enumerate() {
                            assert_eq!(
                                (a.0.to_bits(), a.1),
                                (b.0.to_bits(), b.1),
                                "{case}: loss of step {step}"
                            );
                            assert!(same_bits(&a.2, &b.2), "{case}: gradient of step {step}");
                        }
                    }
                }
            }
        });
    }
}

#[test]
fn a_non_finite_loss_leaves_the_w1_update_to_apply() {
    // The backward jobs do not update W1 on a non-finite loss; `apply` must then do it, giving
    // the bits of a step whose rule came only with `apply`.
    let data = random_dataset(64, 6);
    let mlp = Mlp::new(Architecture::tutorial());
    let run = |rule_with_gradient: bool| {
        let mut params = mlp.initial_parameters(3);
        params[mlp.layers[1].weights.start] = f32::INFINITY;
        let mut optimizer = Optimizer::new(OptimizerConfig::adam_default(), params.len());
        let mut engine = StepEngine::new(&mlp, 32, 2);
        assert!(engine.splits_columns());
        engine.load_state(&params, &optimizer);
        let indices: Vec<u32> = (0..32).collect();
        let step = StepBatch {
            mlp: &mlp,
            params: &params,
            dataset: &data,
            indices: &indices,
            next_indices: &[],
            seed: 11,
            global_step: 0,
        };
        let (loss, _) = if rule_with_gradient {
            engine.gradient_then_update(&step, optimizer.next_rule(0.01))
        } else {
            engine.gradient(&step)
        };
        assert!(!loss.is_finite(), "the loss is {loss}");
        engine.apply(&mut optimizer, &mut params, 0.01);
        engine.publish_state(&mut params, &mut optimizer);
        (params, optimizer.slots)
    };
    let (expected, got) = (run(false), run(true));
    assert!(same_bits(&expected.0, &got.0), "parameters differ");
    for (a, b) in expected.1.iter().zip(&got.1) {
        assert!(same_bits(a, b), "optimizer slots differ");
    }
}

#[test]
fn batches_shorter_than_the_engine_was_made_for_give_the_sharded_steps_bits() {
    // A short last batch can have fewer shards with more rows each than a full one.
    let data = random_dataset(300, 6);
    let mlp = Mlp::new(Architecture::tutorial());
    let config = OptimizerConfig::adam_default();
    for capacity in [16, 32] {
        let mut sharded = StepEngine::new(&mlp, capacity, 1);
        let mut split = StepEngine::new(&mlp, capacity, 2);
        assert!(split.splits_columns());
        for rows in 1..=capacity {
            let expected = three_steps(&mut sharded, &mlp, &data, config, rows, false);
            let got = three_steps(&mut split, &mlp, &data, config, rows, true);
            let case = format!("{rows} rows in engines made for {capacity}");
            assert!(same_bits(&expected.0, &got.0), "{case}: parameters differ");
            for (a, b) in expected.2.iter().zip(&got.2) {
                assert!(same_bits(&a.2, &b.2), "{case}: gradients differ");
            }
        }
    }
}
