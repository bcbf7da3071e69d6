//! Persistent worker threads for the training step.
//!
//! A step at batch 32 takes tens of microseconds, so waking threads through the OS for each one
//! would cost more than it saves. The pool's threads are created once per training run; between
//! jobs they spin briefly (the next job usually comes within microseconds) and then sleep on a
//! condition variable. The calling thread works too.
//!
//! Work is claimed item by item from a shared counter, and the caller never waits for a worker
//! that has not started: if the machine is busy and a worker is not scheduled, the caller does
//! all the items itself instead of stalling for a time slice. A worker joins a job only while it
//! is open; the caller closes it when no items are left and waits only for workers that joined.
//!
//! Which thread runs which item never affects results: callers give each item its own buffers
//! and combine them in a fixed order afterwards.

use std::cell::UnsafeCell;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::{backend, with_backend, Backend, DenormalGuard};

/// Waiting rounds before an idle worker goes to sleep (a few milliseconds: see [`pause`]).
const SPIN_LIMIT: u32 = 4_000;
/// Waiting rounds that only spin; later rounds give the core away (`sched_yield`) each time.
/// Measured on an idle 2-core VM: yielding after 64 rounds made two threads slower than one
/// (1.32 s vs 1.00 s for the default job; every yield is a syscall, and the waits between steps
/// are tens of microseconds), spinning through the whole window gives 0.67 s. On a busy machine
/// an idle worker still goes to sleep after `SPIN_LIMIT` rounds, and the caller never waits for a
/// worker that has not joined.
const PURE_SPINS: u32 = SPIN_LIMIT;

/// `state` layout: job generation in the high 32 bits, the "open" flag, then the number of
/// workers running the current job.
const GENERATION_SHIFT: u32 = 32;
const OPEN: u64 = 1 << 31;
const ACTIVE_MASK: u64 = OPEN - 1;

/// A job as the workers see it: a borrowed closure whose lifetime [`WorkerPool::broadcast`]
/// guarantees by not returning while any worker runs it.
#[derive(Clone, Copy)]
struct JobRef {
    run: *const (dyn Fn() + Sync + 'static),
    backend: Backend,
}

struct Shared {
    /// Generation, open flag and active count (see the constants above).
    state: AtomicU64,
    /// Written only while the job is closed and no worker is active.
    job: UnsafeCell<Option<JobRef>>,
    /// Workers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    panicked: AtomicBool,
}

// SAFETY: `job` is written by the pool's owner only while no worker can join (closed, none
// active) and read by a worker only after it joined the open job; the state counter's
// release/acquire ordering publishes each write before any read.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// The items of a job, shared by the threads that claim them by index.
struct Items<T>(*mut T);
// SAFETY: the jobs below claim each index exactly once (an atomic counter or bit mask), so no
// item is used by two threads; T: Send lets it be used from another thread.
unsafe impl<T: Send> Sync for Items<T> {}
impl<T> Items<T> {
    fn at(&self, index: usize) -> *mut T {
        self.0.wrapping_add(index)
    }
}

thread_local! {
    /// This thread's index in its pool: 0 for a caller, 1.. for the workers.
    static POOL_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A fixed set of threads that help the caller with jobs.
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// A pool of `threads` threads in all, the caller included (`threads - 1` are spawned).
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("mnist-train-worker-{index}"))
                    .spawn(move || {
                        POOL_INDEX.set(index);
                        worker_loop(&shared)
                    })
                    .expect("the OS refused to start a worker thread")
            })
            .collect();
        WorkerPool { shared, workers }
    }

    /// Threads in the pool, the caller included.
    pub fn thread_count(&self) -> usize {
        self.workers.len() + 1
    }

    /// How many parts to cut an element-wise pass into: a few per thread, so that the caller
    /// can take over a busy or descheduled worker's share at a fine grain.
    pub fn element_parts(&self) -> usize {
        if self.workers.is_empty() {
            1
        } else {
            2 * self.thread_count()
        }
    }

    /// Runs `job` on the caller and on every worker that joins in time, and returns when the
    /// caller's run is over and every worker that joined is done. `job` must therefore do all
    /// the work when run once (workers only help: see [`WorkerPool::for_each_mut`]).
    fn broadcast(&self, job: &(dyn Fn() + Sync)) {
        if self.workers.is_empty() {
            job();
            return;
        }
        // SAFETY: only the lifetime is erased. `CloseAndWait` below keeps this function from
        // returning (or unwinding) while any worker can still use the job.
        let run: *const (dyn Fn() + Sync + 'static) = unsafe { std::mem::transmute(job) };
        let shared = &*self.shared;
        // SAFETY: the previous job is closed and has no active worker, so nobody reads `job`.
        unsafe {
            *shared.job.get() = Some(JobRef {
                run,
                backend: backend(),
            });
        }
        let generation = (shared.state.load(Ordering::Relaxed) >> GENERATION_SHIFT) + 1;
        shared
            .state
            .store((generation << GENERATION_SHIFT) | OPEN, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        struct CloseAndWait<'a>(&'a Shared);
        impl Drop for CloseAndWait<'_> {
            fn drop(&mut self) {
                let state = &self.0.state;
                state.fetch_and(!OPEN, Ordering::SeqCst);
                let mut spin = 0u32;
                while state.load(Ordering::Acquire) & ACTIVE_MASK != 0 {
                    pause(spin);
                    spin = spin.saturating_add(1);
                }
            }
        }
        {
            let _close = CloseAndWait(shared);
            job();
        }
        if shared.panicked.swap(false, Ordering::Relaxed) {
            panic!("a worker thread panicked");
        }
    }

    /// Calls `work(index, &mut items[index])` once for every item; the caller and the workers
    /// claim items in index order from a shared counter.
    pub fn for_each_mut<T: Send>(&self, items: &mut [T], work: impl Fn(usize, &mut T) + Sync) {
        let len = items.len();
        let base = Items(items.as_mut_ptr());
        let next = AtomicUsize::new(0);
        self.broadcast(&|| loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= len {
                break;
            }
            // SAFETY: index < len and was claimed by this thread alone.
            work(index, unsafe { &mut *base.at(index) });
        });
    }
}

impl WorkerPool {
    /// [`WorkerPool::for_each_mut`] where thread `i` of the pool (the caller is 0) runs item
    /// `i` when it joins in time, so an item whose data stays in one core's caches from job to
    /// job keeps running on that core; then every thread takes any item still unclaimed. At
    /// most 64 items.
    pub fn for_each_mut_affine<T: Send>(
        &self,
        items: &mut [T],
        work: impl Fn(usize, &mut T) + Sync,
    ) {
        let len = items.len();
        assert!(len <= 64, "for_each_mut_affine: at most 64 items");
        let base = Items(items.as_mut_ptr());
        let claimed = AtomicU64::new(0);
        let claim = |index: usize| {
            let bit = 1u64 << index;
            claimed.load(Ordering::Relaxed) & bit == 0
                && claimed.fetch_or(bit, Ordering::Relaxed) & bit == 0
        };
        self.broadcast(&|| {
            let own = POOL_INDEX.get();
            let order = std::iter::once(own).chain(0..len);
            for index in order.filter(|&index| index < len) {
                if claim(index) {
                    // SAFETY: index < len and was claimed by this thread alone.
                    work(index, unsafe { &mut *base.at(index) });
                }
            }
        });
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // A new (closed) generation wakes every worker, which then sees `shutdown`.
        self.shared
            .state
            .fetch_add(1 << GENERATION_SHIFT, Ordering::SeqCst);
        {
            let _lock = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker_loop(shared: &Shared) {
    let _flush = DenormalGuard::new();
    let mut seen = 0u64;
    loop {
        seen = wait_for_new_generation(shared, seen);
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        if !join(shared, seen) {
            continue;
        }
        // SAFETY: joining (acquire) happened after the job was written, and the owner does not
        // touch `job` again before this worker leaves.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            // SAFETY: the closure outlives every joined worker's run (see `broadcast`).
            let run = unsafe { &*job.run };
            let outcome = catch_unwind(AssertUnwindSafe(|| with_backend(job.backend, run)));
            if outcome.is_err() {
                shared.panicked.store(true, Ordering::Relaxed);
            }
        }
        shared.state.fetch_sub(1, Ordering::Release);
    }
}

/// One round of waiting: a CPU spin hint at first (the answer usually comes within a
/// microsecond), then a yield, so that on a busy machine a waiting thread hands its time slice to
/// a thread with work (often the other thread of this pool) instead of burning it.
fn pause(round: u32) {
    if round < PURE_SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Joins job `generation` if it is still open; false if it is over already.
fn join(shared: &Shared, generation: u64) -> bool {
    let mut state = shared.state.load(Ordering::Acquire);
    loop {
        if state >> GENERATION_SHIFT != generation || state & OPEN == 0 {
            return false;
        }
        match shared.state.compare_exchange_weak(
            state,
            state + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(current) => state = current,
        }
    }
}

/// Spins, then sleeps, until the job generation differs from `seen`; returns the new one.
fn wait_for_new_generation(shared: &Shared, seen: u64) -> u64 {
    let generation_of = |state: u64| state >> GENERATION_SHIFT;
    for spin in 0..SPIN_LIMIT {
        let generation = generation_of(shared.state.load(Ordering::Acquire));
        if generation != seen {
            return generation;
        }
        pause(spin);
    }
    let mut lock = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
    shared.sleepers.fetch_add(1, Ordering::SeqCst);
    let generation = loop {
        let generation = generation_of(shared.state.load(Ordering::SeqCst));
        if generation != seen {
            break generation;
        }
        lock = shared.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
    };
    shared.sleepers.fetch_sub(1, Ordering::SeqCst);
    generation
}

/// Part `part` of `0..len` cut into `parts` contiguous ranges of near-equal size whose boundaries
/// fall on multiples of 16 elements (64 bytes of f32: threads then never write the same cache
/// line). Computed, not stored, so cutting a buffer allocates nothing.
pub fn even_part(len: usize, parts: usize, part: usize) -> Range<usize> {
    const ALIGN: usize = 16;
    let parts = parts.max(1);
    let blocks = len.div_ceil(ALIGN);
    let boundary = |p: usize| (blocks * p / parts * ALIGN).min(len);
    boundary(part)..boundary(part + 1)
}

/// Every [`even_part`] of `0..len`, in order.
pub fn split_evenly(len: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts.max(1))
        .map(|part| even_part(len, parts, part))
        .collect()
}

impl WorkerPool {
    /// Cuts each of `buffers` (all of one length) into [`WorkerPool::element_parts`] parts
    /// ([`even_part`]) and calls `work(range, [that part of each buffer])` once per part, on the
    /// caller and the workers. Allocates nothing, so a training step can use it.
    pub fn for_each_part_mut<const N: usize>(
        &self,
        buffers: [&mut [f32]; N],
        work: impl Fn(Range<usize>, [&mut [f32]; N]) + Sync,
    ) {
        struct Bases<const N: usize>([*mut f32; N]);
        // SAFETY: the pointers are only turned into slices of disjoint parts (see below).
        unsafe impl<const N: usize> Sync for Bases<N> {}
        impl<const N: usize> Bases<N> {
            /// # Safety
            /// `range` lies within every buffer and no other live slice overlaps it.
            unsafe fn parts<'a>(&self, range: &Range<usize>) -> [&'a mut [f32]; N] {
                self.0.map(|base| unsafe {
                    std::slice::from_raw_parts_mut(base.add(range.start), range.len())
                })
            }
        }
        let len = buffers.first().map_or(0, |buffer| buffer.len());
        assert!(
            buffers.iter().all(|buffer| buffer.len() == len),
            "for_each_part_mut: buffers of different lengths"
        );
        let bases = Bases(buffers.map(|buffer| buffer.as_mut_ptr()));
        let parts = self.element_parts();
        let next = AtomicUsize::new(0);
        self.broadcast(&|| loop {
            let part = next.fetch_add(1, Ordering::Relaxed);
            if part >= parts {
                break;
            }
            let range = even_part(len, parts, part);
            // SAFETY: the parts are disjoint and within `len`, each is claimed by one thread
            // only, and the buffers stay mutably borrowed until `broadcast` returns.
            work(range.clone(), unsafe { bases.parts(&range) });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_visited_once_by_any_pool_size() {
        for threads in 1..=4 {
            let pool = WorkerPool::new(threads);
            let mut items = vec![0u32; 11];
            for round in 1..=50 {
                pool.for_each_mut(&mut items, |index, item| *item += index as u32 + round);
            }
            let expected: Vec<u32> = (0..11).map(|i| 50 * i + (1..=50).sum::<u32>()).collect();
            assert_eq!(items, expected, "{threads} threads");
        }
    }

    #[test]
    fn every_item_is_visited_once_by_the_affine_loop_too() {
        for threads in 1..=4 {
            let pool = WorkerPool::new(threads);
            for len in [0, 1, 3, 4, 11] {
                let mut items = vec![0u32; len];
                for _ in 0..50 {
                    pool.for_each_mut_affine(&mut items, |index, item| *item += index as u32 + 1);
                }
                let expected: Vec<u32> = (0..len as u32).map(|i| 50 * (i + 1)).collect();
                assert_eq!(items, expected, "{threads} threads, {len} items");
            }
        }
    }

    #[test]
    fn split_evenly_covers_the_buffer_in_aligned_parts() {
        for (len, parts) in [(101_770, 2), (101_770, 3), (10, 4), (0, 2), (33, 1)] {
            let ranges = split_evenly(len, parts);
            assert_eq!(ranges.len(), parts);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[parts - 1].end, len);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert_eq!(pair[0].end % 16, 0);
            }
        }
    }

    #[test]
    fn for_each_part_mut_hands_out_every_element_once_with_its_position() {
        for threads in [1, 2, 3] {
            let pool = WorkerPool::new(threads);
            let (mut a, mut b) = (vec![0.0f32; 1001], vec![0.0f32; 1001]);
            pool.for_each_part_mut([&mut a, &mut b], |range, [a, b]| {
                assert_eq!((a.len(), b.len()), (range.len(), range.len()));
                for (offset, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                    *x += (range.start + offset) as f32;
                    *y += 1.0;
                }
            });
            assert!(a.iter().enumerate().all(|(i, &x)| x == i as f32));
            assert!(b.iter().all(|&y| y == 1.0));
        }
    }

    #[test]
    fn a_panicking_job_is_reported_to_the_caller() {
        let pool = WorkerPool::new(2);
        let mut items = vec![0u32; 64];
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.for_each_mut(&mut items, |index, _| assert!(index != 40, "item 40 fails"));
        }));
        assert!(result.is_err());
        // The pool still works afterwards.
        pool.for_each_mut(&mut items, |index, item| *item = index as u32);
        assert!(items.iter().enumerate().all(|(i, &v)| v == i as u32));
    }
}
