//! Criterion micro-benchmarks of the training hot path, per batch size:
//! forward, backward, optimizer step, one full training step, and one epoch on a subset; and the
//! first layer's products on one 16-image shard, over its nonzero pixels and dense.
//!
//!   cargo bench --bench training              # all of them
//!   cargo bench --bench training -- step/     # one group

use std::hint::black_box;
use std::path::Path;

use ndarray::Array2;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mnist_train::data::{gather_normalized, index_batch, load_split, Dataset, DatasetKind, Split};
use mnist_train::kernels::{
    matmul, sparse_matmul, sparse_transposed_matmul, DenormalGuard, GradientUpdate, PixelIndex,
    SparseRows, WorkerPool,
};
use mnist_train::nn::{Architecture, GradientSink, Mlp, Workspace};
use mnist_train::optim::{Optimizer, OptimizerConfig};
use mnist_train::rng::Rng;
use mnist_train::train::step::{StepBatch, StepEngine};
use mnist_train::train::{BatchSize, Progress, ProgressMode, TrainConfig, Trainer};

const BATCH_SIZES: [usize; 3] = [32, 128, 256];

fn mnist_train() -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    load_split(&dir, Split::Train, DatasetKind::Mnist).expect("data/ holds MNIST")
}

fn thread_counts() -> Vec<usize> {
    let all = mnist_train::train::default_threads();
    if all > 1 {
        vec![1, all]
    } else {
        vec![1]
    }
}

/// A workspace holding the first `batch` training images, normalized.
fn filled_workspace(mlp: &Mlp, dataset: &Dataset, batch: usize) -> Workspace {
    let mut workspace = mlp.workspace(batch);
    let indices: Vec<u32> = (0..batch as u32).collect();
    let pixels = mlp.architecture.inputs;
    gather_normalized(
        dataset,
        &indices,
        &mut workspace.inputs[..batch * pixels],
        &mut workspace.labels[..batch],
    );
    workspace
}

fn forward_and_backward(c: &mut Criterion) {
    let dataset = mnist_train();
    let mlp = Mlp::new(Architecture::tutorial());
    let params = mlp.initial_parameters(1);
    let mut grads = vec![0.0; params.len()];
    let mut group = c.benchmark_group("forward");
    for batch in BATCH_SIZES {
        let mut workspace = filled_workspace(&mlp, &dataset, batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| mlp.forward(black_box(&params), &mut workspace, batch, None))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("backward");
    for batch in BATCH_SIZES {
        let mut workspace = filled_workspace(&mlp, &dataset, batch);
        let mut rng = Rng::from_u64(3);
        let gradient = GradientSink::adding(&mut grads, 1.0);
        mlp.train_chunk(&params, &mut workspace, batch, &mut rng, gradient);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                mlp.backward(
                    black_box(&params),
                    &mut workspace,
                    batch,
                    &mut grads,
                    true,
                    false,
                )
            })
        });
    }
    group.finish();
}

fn optimizer_step(c: &mut Criterion) {
    // As in training: values decaying to subnormals are flushed to zero, not computed slowly.
    let _flush = DenormalGuard::new();
    let parameter_count = Architecture::tutorial().parameter_count();
    let grads: Vec<f32> = (0..parameter_count)
        .map(|i| ((i % 97) as f32 - 48.0) * 1e-4)
        .collect();
    let mut group = c.benchmark_group("optimizer");
    group.throughput(Throughput::Elements(parameter_count as u64));
    let optimizers = [
        ("adam", OptimizerConfig::adam_default()),
        ("sgd", OptimizerConfig::Sgd),
        ("momentum", OptimizerConfig::Momentum { momentum: 0.9 }),
    ];
    for (name, config) in optimizers {
        for threads in thread_counts() {
            let pool = WorkerPool::new(threads);
            let mut optimizer = Optimizer::new(config, parameter_count);
            let mut params = vec![0.1f32; parameter_count];
            group.bench_function(BenchmarkId::new(name, format!("{threads}-threads")), |b| {
                b.iter(|| optimizer.step_parallel(&pool, &mut params, black_box(&grads), 1e-3))
            });
        }
    }
    group.finish();
}

fn training_step(c: &mut Criterion) {
    let dataset = mnist_train();
    let mut group = c.benchmark_group("step");
    for batch in BATCH_SIZES {
        for threads in thread_counts() {
            let trainer = Trainer::new(TrainConfig::default());
            let mut params = trainer.params.clone();
            let mut optimizer = Optimizer::new(OptimizerConfig::adam_default(), params.len());
            let mut engine = StepEngine::new(&trainer.mlp, batch, threads);
            let batches: Vec<Vec<u32>> = (0..64)
                .map(|k| ((k * batch) as u32..((k + 1) * batch) as u32).collect())
                .collect();
            let mut step = 0u64;
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                BenchmarkId::new(batch.to_string(), format!("{threads}-threads")),
                |b| {
                    b.iter(|| {
                        let batch = &batches[step as usize % batches.len()];
                        engine.gradient(&StepBatch {
                            mlp: &trainer.mlp,
                            params: &params,
                            dataset: &dataset,
                            indices: batch,
                            next_indices: &[],
                            seed: 42,
                            global_step: step,
                        });
                        engine.apply(&mut optimizer, &mut params, 1e-3);
                        step += 1;
                    })
                },
            );
        }
    }
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let mut dataset = mnist_train();
    // A tenth of MNIST keeps one sample under a second; scale by 10 for a full epoch.
    dataset.truncate(6000);
    let mut group = c.benchmark_group("epoch-6000");
    group.sample_size(10);
    group.throughput(Throughput::Elements(dataset.len() as u64));
    for batch_size in [
        BatchSize::Examples(32),
        BatchSize::Examples(128),
        BatchSize::Full,
    ] {
        let label = match batch_size {
            BatchSize::Examples(n) => n.to_string(),
            BatchSize::Full => "full".to_string(),
        };
        for threads in thread_counts() {
            group.bench_function(
                BenchmarkId::new(label.clone(), format!("{threads}-threads")),
                |b| {
                    b.iter(|| {
                        let mut trainer = Trainer::new(TrainConfig {
                            epochs: 1,
                            batch_size,
                            ..TrainConfig::default()
                        });
                        trainer.threads = threads;
                        let mut progress = Progress::new(ProgressMode::None, 1);
                        trainer
                            .fit(&dataset, &mut progress, &mut [])
                            .expect("training runs");
                        black_box(trainer.params[0])
                    })
                },
            );
        }
    }
    group.finish();
}

/// One 16-image shard against one thread's block of W1 (784 × 64, two threads) and all of it
/// (784 × 128): indexing the nonzeros, then x·W and xᵀ·g over them and dense.
fn first_layer(c: &mut Criterion) {
    let dataset = mnist_train();
    let rows = 16;
    let mut x = vec![0.0; rows * 784];
    let mut labels = vec![0; rows];
    let indices: Vec<u32> = (0..rows as u32).map(|i| i * 3_677 % 60_000).collect();
    gather_normalized(&dataset, &indices, &mut x, &mut labels);
    let x_view = ndarray::ArrayView2::from_shape((rows, 784), &x[..]).expect("16 × 784");
    let mut index = SparseRows::new(rows, 784);
    let mut group = c.benchmark_group("first-layer");
    group.bench_function("index/16", |b| b.iter(|| index.index(black_box(&x), rows)));
    let mut pixels = PixelIndex::new(rows, 784);
    group.bench_function("index-pixels/16", |b| {
        b.iter(|| index_batch(&dataset, black_box(&indices), &mut pixels, &mut labels))
    });
    index.index(&x, rows);
    index_batch(&dataset, &indices, &mut pixels, &mut labels);
    // The other shard of the batch (other images), for the two-shard weight gradient.
    let mut other = PixelIndex::new(rows, 784);
    let other_indices: Vec<u32> = (0..rows as u32)
        .map(|i| (i + 16) * 3_677 % 60_000)
        .collect();
    index_batch(&dataset, &other_indices, &mut other, &mut labels);
    for width in [64, 128] {
        let w = Array2::from_shape_fn((784, width), |(i, j)| ((i * 31 + j) % 97) as f32 * 1e-3);
        let g = Array2::from_shape_fn((rows, width), |(i, j)| ((i * 7 + j) % 13) as f32 * 1e-3);
        let mut h = Array2::<f32>::zeros((rows, width));
        let mut grad_w = Array2::<f32>::zeros((784, width));
        group.bench_function(BenchmarkId::new("x·W/sparse", width), |b| {
            b.iter(|| sparse_matmul(&index, w.view(), &mut h.view_mut(), 0.0))
        });
        group.bench_function(BenchmarkId::new("x·W/pixels", width), |b| {
            b.iter(|| sparse_matmul(&pixels, w.view(), &mut h.view_mut(), 0.0))
        });
        group.bench_function(BenchmarkId::new("x·W/dense", width), |b| {
            b.iter(|| matmul(x_view, w.view(), &mut h.view_mut(), 0.0))
        });
        group.bench_function(BenchmarkId::new("xT·g/sparse", width), |b| {
            let shard = [(&index, g.view())];
            b.iter(|| sparse_transposed_matmul(&shard, &mut grad_w.view_mut(), 0.0, None))
        });
        group.bench_function(BenchmarkId::new("xT·g/two-shards", width), |b| {
            let shards = [(&pixels, g.view()), (&other, g.view())];
            b.iter(|| sparse_transposed_matmul(&shards, &mut grad_w.view_mut(), 0.0, None))
        });
        group.bench_function(BenchmarkId::new("xT·g+adam/two-shards", width), |b| {
            // The column step's backward: both shards' gradients summed, W1's block updated.
            let shards = [(&pixels, g.view()), (&other, g.view())];
            let optimizer = Optimizer::new(OptimizerConfig::adam_default(), 784 * width);
            let rule = optimizer.next_rule(1e-3);
            let mut params = w.as_slice().expect("row-major").to_vec();
            let (mut m, mut v) = (vec![0.0; 784 * width], vec![0.0; 784 * width]);
            b.iter(|| {
                let mut slots: [&mut [f32]; 2] = [&mut m, &mut v];
                let mut update = GradientUpdate {
                    rule,
                    params: &mut params,
                    slots: &mut slots,
                };
                sparse_transposed_matmul(&shards, &mut grad_w.view_mut(), 0.0, Some(&mut update))
            })
        });
        group.bench_function(BenchmarkId::new("xT·g/dense", width), |b| {
            b.iter(|| matmul(x_view.t(), g.view(), &mut grad_w.view_mut(), 0.0))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    first_layer,
    forward_and_backward,
    optimizer_step,
    training_step,
    epoch
);
criterion_main!(benches);
