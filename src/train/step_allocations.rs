//! No allocation inside the training step: a counting global allocator (test builds only) counts
//! the allocations each thread makes, and the test runs steps on the counted thread.
//!
//! The count is per thread (a thread-local), so other tests running in parallel in this binary
//! cannot disturb it. The calling thread dispatches every step (pool job, shard split, optimizer
//! pass) and computes shards itself, so anything the step allocates on its way shows up here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::step::{StepBatch, StepEngine};
use crate::data::Dataset;
use crate::kernels::{with_backend, Backend};
use crate::nn::{Architecture, Mlp};
use crate::optim::{Optimizer, OptimizerConfig};

struct CountingAllocator;

thread_local! {
    /// Allocations made by this thread while counting is on (None = off). A const-initialized
    /// Cell without destructor: reading it never allocates.
    static ALLOCATIONS: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note_allocation() {
    // `try_with`: during thread teardown the thread-local may be gone; such an allocation is
    // not part of a step.
    let _ = ALLOCATIONS.try_with(|count| {
        if let Some(n) = count.get() {
            count.set(Some(n + 1));
        }
    });
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches only a
// thread-local Cell.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

/// How many allocations this thread makes while running `work`.
fn allocations_during(work: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|count| count.set(Some(0)));
    work();
    ALLOCATIONS.with(|count| count.replace(None)).unwrap_or(0)
}

fn synthetic_dataset(len: usize) -> Dataset {
    Dataset {
        images: (0..len * 784).map(|i| (i * 37 % 256) as u8).collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
        rows: 28,
        cols: 28,
        class_names: (0..10).map(|c| c.to_string()).collect(),
    }
}

#[test]
fn training_steps_allocate_nothing_after_the_first() {
    let dataset = synthetic_dataset(256);
    let mlp = Mlp::new(Architecture::tutorial());
    let batch: Vec<u32> = (0..32).collect();
    // matrixmultiply (the neon backend's products) allocates its packing buffers on every call:
    // at most 2 for each of the 10 products the calling thread runs in a step (5 per shard; on
    // two threads it runs both shards for its hidden units). Our own kernels allocate nothing.
    on_every_backend(&mlp, &dataset, &batch, |backend| match backend {
        Backend::Neon => Some(5 * 10 * 2),
        _ => Some(0),
    });
}

#[test]
fn cnn_training_steps_allocate_nothing_after_the_first() {
    let dataset = synthetic_dataset(64);
    let cnn = Mlp::new(Architecture::cnn());
    let batch: Vec<u32> = (0..16).collect();
    // Not on neon, whose products come from matrixmultiply (it allocates on every call).
    on_every_backend(&cnn, &dataset, &batch, |backend| match backend {
        Backend::Neon => None,
        _ => Some(0),
    });
}

/// [`steps_allocate_at_most`] on every backend this CPU supports, with the allowance
/// `allowed(backend)` (`None`: skip that backend).
fn on_every_backend(
    mlp: &Mlp,
    dataset: &Dataset,
    batch: &[u32],
    allowed: impl Fn(Backend) -> Option<usize>,
) {
    for backend in Backend::supported() {
        if let Some(allowed) = allowed(backend) {
            with_backend(backend, || {
                steps_allocate_at_most(mlp, dataset, batch, backend, allowed)
            });
        }
    }
}

/// Five steps after a first one, for 1 and 2 threads and three optimizers, on the current backend,
/// allocate at most `allowed` times.
fn steps_allocate_at_most(
    mlp: &Mlp,
    dataset: &Dataset,
    batch: &[u32],
    backend: Backend,
    allowed: usize,
) {
    let optimizers = [
        OptimizerConfig::adam_default(),
        OptimizerConfig::Sgd,
        OptimizerConfig::Momentum { momentum: 0.9 },
    ];
    for (threads, config) in [1, 2].into_iter().flat_map(|t| optimizers.map(|o| (t, o))) {
        let mut params = mlp.initial_parameters(1);
        let mut optimizer = Optimizer::new(config, params.len());
        let mut engine = StepEngine::new(mlp, batch.len(), threads);
        engine.load_state(&params, &optimizer);
        // As the trainer runs a step (the column-split step updates W1 in its gradient jobs).
        let mut step = |global_step: u64| {
            let rule = optimizer.next_rule(0.01);
            let batch = StepBatch {
                mlp,
                params: &params,
                dataset,
                indices: batch,
                // (The next batch's prefetch runs too; the same rows serve.)
                next_indices: batch,
                seed: 7,
                global_step,
            };
            engine.gradient_then_update(&batch, rule);
            engine.apply(&mut optimizer, &mut params, 0.01);
        };
        // The first step may size lazily created state.
        step(0);
        let allocations = allocations_during(|| (1..6).for_each(&mut step));
        assert!(
            allocations <= allowed,
            "{backend:?}, {threads} thread(s), {config:?}: 5 steps allocated {allocations} times"
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    let allocations = allocations_during(|| {
        std::hint::black_box(vec![0u8; 100]);
    });
    assert_eq!(allocations, 1);
}
