//! The CPU's floating-point limit for a backend: how many f32 multiply-adds per second its vector
//! units sustain, measured with independent chains (no memory traffic, no dependencies between
//! chains, enough chains to hide the FMA latency). `bench` divides the training arithmetic by
//! this to say how close a run is to what the machine can do.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Backend;

/// Independent accumulator chains: FMA latency (4-5 cycles) × 2 pipes, plus slack, and still
/// within the 16 (AVX2) / 32 (AVX-512, NEON) vector registers.
const CHAINS: usize = 12;
/// Iterations per timed block (each iteration is one FMA per chain).
const BLOCK_ITERATIONS: u64 = 20_000;
/// How long one timed round runs; the best of [`ROUNDS`] rounds is reported (a short probe: the
/// whole measurement takes a few tenths of a second).
const ROUND_DURATION: Duration = Duration::from_millis(40);
const ROUNDS: usize = 3;

/// Measured FMA throughput, in GFLOP/s (one fused multiply-add = 2 floating-point operations).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FmaPeak {
    pub one_thread_gflops: f64,
    pub all_threads_gflops: f64,
    /// How many threads "all" was.
    pub threads: usize,
}

impl FmaPeak {
    /// The peak available to `threads` threads: the one-thread figure scaled by the thread
    /// count, capped at the all-threads measurement (more threads than cores add nothing).
    pub fn for_threads(&self, threads: usize) -> f64 {
        if threads <= 1 {
            self.one_thread_gflops
        } else {
            (self.one_thread_gflops * threads as f64).min(self.all_threads_gflops)
        }
    }
}

/// Measures `backend`'s FMA peak on one thread and on `threads` threads at once.
/// Panics if the CPU cannot run `backend` (as [`super::with_backend`]).
pub fn measure_fma_peak(backend: Backend, threads: usize) -> FmaPeak {
    assert!(
        backend.is_supported(),
        "backend {} is not supported by this CPU",
        backend.name()
    );
    let threads = threads.max(1);
    let one_thread = best_of_rounds(|| {
        let (flops, seconds) = timed_chains(backend, |elapsed| elapsed >= ROUND_DURATION);
        flops / seconds
    });
    // Every thread runs the same fixed amount of work (about one round at the one-thread rate),
    // started together; the wall time until the last finishes gives the all-threads rate.
    let blocks =
        ((one_thread * ROUND_DURATION.as_secs_f64()) / block_flops(backend)).max(1.0) as u64;
    let all_threads = if threads == 1 {
        one_thread
    } else {
        best_of_rounds(|| {
            let start = Barrier::new(threads + 1);
            let seconds = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            let mut done = 0;
                            timed_chains(backend, |_| {
                                done += 1;
                                done > blocks
                            })
                        })
                    })
                    .collect();
                start.wait();
                let started = Instant::now();
                for worker in workers {
                    // A probe thread cannot panic (pure arithmetic); if one did, count no work.
                    let _ = worker.join();
                }
                started.elapsed().as_secs_f64()
            });
            threads as f64 * blocks as f64 * block_flops(backend) / seconds
        })
    };
    FmaPeak {
        one_thread_gflops: one_thread / 1e9,
        all_threads_gflops: all_threads / 1e9,
        threads,
    }
}

fn best_of_rounds(mut round: impl FnMut() -> f64) -> f64 {
    (0..ROUNDS).map(|_| round()).fold(0.0, f64::max)
}

/// f32 lanes of one vector of the backend's widest FMA.
fn lanes(backend: Backend) -> usize {
    match backend {
        Backend::Avx512 => 16,
        Backend::Avx2 => 8,
        Backend::Neon | Backend::Portable => 4,
    }
}

fn block_flops(backend: Backend) -> f64 {
    (BLOCK_ITERATIONS * (CHAINS * lanes(backend) * 2) as u64) as f64
}

/// Runs blocks of FMA chains until `stop(elapsed)` says so; returns (flops, seconds).
fn timed_chains(backend: Backend, mut stop: impl FnMut(Duration) -> bool) -> (f64, f64) {
    let started = Instant::now();
    let mut blocks = 0u64;
    let mut sink = 0.0f32;
    loop {
        let elapsed = started.elapsed();
        if stop(elapsed) {
            break;
        }
        sink += run_block(backend, black_box(1.0 + blocks as f32 * 1e-9));
        blocks += 1;
    }
    black_box(sink);
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    (blocks as f64 * block_flops(backend), seconds)
}

/// One block of [`BLOCK_ITERATIONS`] × [`CHAINS`] vector FMAs; returns a value that depends on
/// every chain, so none can be optimized away.
fn run_block(backend: Backend, seed: f32) -> f32 {
    match backend {
        // SAFETY: `measure_fma_peak` checked that the CPU supports the backend.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86::chains_avx512(seed) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => unsafe { x86::chains_avx2(seed) },
        #[cfg(target_arch = "aarch64")]
        Backend::Neon => neon::chains(seed),
        _ => chains_portable(seed),
    }
}

/// The portable backend's arithmetic: separate multiply and add (plain Rust never fuses), on
/// whatever vectors the baseline target has. Counted as 2 flops per multiply-add, like an FMA.
fn chains_portable(seed: f32) -> f32 {
    let scale = black_box(0.999_f32);
    let offset = black_box(1e-3_f32);
    let mut acc = [[seed; 4]; CHAINS];
    for _ in 0..BLOCK_ITERATIONS {
        for chain in acc.iter_mut() {
            for lane in chain.iter_mut() {
                *lane = *lane * scale + offset;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// One block of the chains on a vector type: `splat(x)` broadcasts x, `fma(chain, scale, offset)`
/// is chain · scale + offset in one instruction. Evaluates to the [`CHAINS`] accumulators.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! fma_chains {
    ($seed:expr, $splat:expr, $fma:expr) => {{
        let scale = $splat(black_box(0.999));
        let offset = $splat(black_box(1e-3));
        let mut acc = [$splat($seed); CHAINS];
        for _ in 0..BLOCK_ITERATIONS {
            for chain in acc.iter_mut() {
                *chain = $fma(*chain, scale, offset);
            }
        }
        acc
    }};
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    use super::{BLOCK_ITERATIONS, CHAINS};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains_avx512(seed: f32) -> f32 {
        let acc = fma_chains!(seed, _mm512_set1_ps, _mm512_fmadd_ps);
        acc.iter().map(|&chain| _mm512_reduce_add_ps(chain)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains_avx2(seed: f32) -> f32 {
        let acc = fma_chains!(seed, _mm256_set1_ps, _mm256_fmadd_ps);
        let mut lanes = [0.0f32; 8];
        let mut total = 0.0;
        for chain in acc {
            _mm256_storeu_ps(lanes.as_mut_ptr(), chain);
            total += lanes.iter().sum::<f32>();
        }
        total
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;
    use std::hint::black_box;

    use super::{BLOCK_ITERATIONS, CHAINS};

    /// NEON is part of the aarch64 baseline, so no detection is needed.
    pub fn chains(seed: f32) -> f32 {
        // SAFETY: NEON is always present on aarch64 (the target enables it by default).
        unsafe {
            let fma = |chain, scale, offset| vfmaq_f32(offset, chain, scale);
            let acc = fma_chains!(seed, vdupq_n_f32, fma);
            acc.iter().map(|&chain| vaddvq_f32(chain)).sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_of_more_threads_never_exceeds_the_measured_all_threads_figure() {
        let peak = FmaPeak {
            one_thread_gflops: 100.0,
            all_threads_gflops: 150.0,
            threads: 4,
        };
        assert_eq!(peak.for_threads(1), 100.0);
        assert_eq!(peak.for_threads(2), 150.0);
        assert_eq!(peak.for_threads(0), 100.0);
    }

    #[test]
    fn every_supported_backend_reports_a_positive_finite_peak() {
        for backend in Backend::supported() {
            let peak = measure_fma_peak(backend, 2);
            for gflops in [peak.one_thread_gflops, peak.all_threads_gflops] {
                assert!(gflops.is_finite() && gflops > 0.0, "{backend:?}: {gflops}");
            }
        }
    }
}
