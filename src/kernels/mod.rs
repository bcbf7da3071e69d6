//! The numeric kernels the network runs on, and the only place with `unsafe` code or CPU features.
//!
//! Layers and optimizers call small safe functions ([`matmul`], [`adam_update`], [`relu_forward`],
//! …) on plain slices or `ndarray` views; which implementation runs is decided once, at start-up,
//! by CPU feature detection:
//!
//! | backend    | CPUs          | matrix products                         | element-wise loops        |
//! |------------|---------------|-----------------------------------------|---------------------------|
//! | `avx512`   | x86-64        | our AVX-512 FMA kernels (`fma_gemm`)    | compiled for AVX-512      |
//! | `avx2`     | x86-64        | our AVX2 FMA kernels (`fma_gemm`)       | compiled for AVX2         |
//! | `neon`     | aarch64       | `matrixmultiply` (its NEON kernel)      | compiled for NEON         |
//! | `portable` | any           | a plain Rust loop nest                  | compiled for the baseline |
//!
//! The first layer's two products with the image batch ([`sparse_matmul`],
//! [`sparse_transposed_matmul`]) read only its nonzero pixels, on every backend, with the same bits
//! as the dense products where those chain in `k` order (`avx512`, `avx2`, `portable`).
//!
//! On x86-64 and aarch64 `portable` runs only when asked for, to rule out a CPU-specific problem
//! (other CPUs have nothing else). `MNIST_TRAIN_KERNEL=auto|avx512|avx2|neon|portable` (or
//! `--kernel`) overrides the choice. The element-wise loops never use fused multiply-add, so they
//! give bit-identical results on every backend and however a buffer is split between threads;
//! the matrix products differ between backends only by rounding (summation order; `avx2` and
//! `avx512` sum in the same order and agree bit for bit).

mod alloc;
mod elementwise;
#[cfg(target_arch = "x86_64")]
mod fma_gemm;
mod fpu;
mod matmul;
mod peak;
mod pixel_index;
pub mod pool;
mod pooling;
mod sparse;
mod walk;
mod winograd;

use crate::choice::choices;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

pub use alloc::{bytes_with_huge_pages, CacheLineAllocator, CACHE_LINE};
pub use elementwise::{
    adam_update, add_assign, add_into, dropout_backward, dropout_forward, normalize_pixels,
    relu_backward, relu_forward, scale_in_place, sum_of_squares, sum_rows_into, update_piece,
    xoshiro_lanes, ziggurat_fast_path, AdamCoefficients, UpdateRule, XOSHIRO_LANES,
    ZIGGURAT_LAYERS,
};
pub use fpu::{flush_denormals, DenormalGuard};
pub use matmul::{matmul, walked_matmul, ProductStart, WalkedMatrix};
pub use peak::{measure_fma_peak, FmaPeak};
pub use pixel_index::PixelIndex;
pub use pool::WorkerPool;
pub use pooling::{max_pool_backward, max_pool_forward, PoolShape};
pub use sparse::{
    sparse_matmul, sparse_transposed_matmul, GradientUpdate, Nonzeros, SparseRows,
    MAX_SPARSE_SHARDS,
};
pub use walk::Walk;
pub use winograd::{
    winograd_input_gradient_transform, winograd_input_transform,
    winograd_output_gradient_transform, winograd_output_transform,
    winograd_weight_gradient_transform, winograd_weight_transform, WinogradShape,
    WINOGRAD_POSITIONS,
};

/// A family of kernels, tied to an instruction-set level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Avx512,
    Avx2,
    Neon,
    Portable,
}

impl Backend {
    /// Fastest first: [`Backend::detect`] takes the first one the CPU supports.
    pub const ALL: [Backend; 4] = [
        Backend::Avx512,
        Backend::Avx2,
        Backend::Neon,
        Backend::Portable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Avx512 => "avx512",
            Backend::Avx2 => "avx2",
            Backend::Neon => "neon",
            Backend::Portable => "portable",
        }
    }

    /// What the backend runs, for `bench` output and `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Backend::Avx512 => {
                "avx512 (own AVX-512 FMA matrix kernels, AVX-512 element-wise loops)"
            }
            Backend::Avx2 => "avx2 (own AVX2/FMA matrix kernels, AVX2 element-wise loops)",
            Backend::Neon => "neon (matrixmultiply NEON kernel, NEON element-wise loops)",
            Backend::Portable => "portable (plain Rust loops, no CPU-specific code)",
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512cd")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            // NEON is part of the aarch64 baseline.
            Backend::Neon => cfg!(target_arch = "aarch64"),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx2 | Backend::Avx512 => false,
        }
    }

    /// The fastest backend this CPU supports.
    pub fn detect() -> Backend {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.is_supported())
            .unwrap_or(Backend::Portable)
    }

    /// Every backend this CPU can run, fastest first.
    pub fn supported() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|backend| backend.is_supported())
            .collect()
    }

    fn to_code(self) -> u8 {
        match self {
            Backend::Avx512 => 1,
            Backend::Avx2 => 2,
            Backend::Portable => 3,
            Backend::Neon => 4,
        }
    }

    fn from_code(code: u8) -> Option<Backend> {
        match code {
            1 => Some(Backend::Avx512),
            2 => Some(Backend::Avx2),
            3 => Some(Backend::Portable),
            4 => Some(Backend::Neon),
            _ => None,
        }
    }
}

choices! {
    /// How the user asked for kernels to be chosen (`--kernel` / `MNIST_TRAIN_KERNEL`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KernelChoice {
        Auto = "auto": "The fastest backend the CPU supports",
        Avx512 = "avx512": "AVX-512 (fails if the CPU lacks it)",
        Avx2 = "avx2": "AVX2 + FMA (fails if the CPU lacks it)",
        Neon = "neon": "AArch64 NEON (fails on other CPUs)",
        Portable = "portable": "Plain Rust loops that run anywhere",
    }
}

impl KernelChoice {
    /// The backend for this choice on this CPU, or why it cannot run here.
    pub fn resolve(self) -> Result<Backend, String> {
        let backend = match self {
            KernelChoice::Auto => return Ok(Backend::detect()),
            KernelChoice::Avx512 => Backend::Avx512,
            KernelChoice::Avx2 => Backend::Avx2,
            KernelChoice::Neon => Backend::Neon,
            KernelChoice::Portable => Backend::Portable,
        };
        if backend.is_supported() {
            Ok(backend)
        } else {
            Err(format!(
                "this CPU does not support the {} kernels (supported: {})",
                backend.name(),
                Backend::supported()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// The process-wide backend (0 = not chosen yet: detect on first use).
static PROCESS_BACKEND: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// A per-thread override, so tests can compare backends side by side in one process.
    static THREAD_BACKEND: Cell<Option<Backend>> = const { Cell::new(None) };
}

/// Sets the backend every thread uses unless it overrides it (the CLI calls this once).
pub fn set_backend(backend: Backend) {
    PROCESS_BACKEND.store(backend.to_code(), Ordering::Relaxed);
}

/// The backend kernels called from this thread use.
pub fn backend() -> Backend {
    if let Some(backend) = THREAD_BACKEND.with(Cell::get) {
        return backend;
    }
    match Backend::from_code(PROCESS_BACKEND.load(Ordering::Relaxed)) {
        Some(backend) => backend,
        None => {
            let detected = Backend::detect();
            set_backend(detected);
            detected
        }
    }
}

/// Runs `work` with this thread (and the worker pools it starts) using `backend`.
/// Panics if the CPU cannot run `backend`: that would be undefined behaviour, not a wrong answer.
pub fn with_backend<R>(backend: Backend, work: impl FnOnce() -> R) -> R {
    assert!(
        backend.is_supported(),
        "backend {} is not supported by this CPU",
        backend.name()
    );
    let previous = THREAD_BACKEND.with(|cell| cell.replace(Some(backend)));
    struct Restore(Option<Backend>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_BACKEND.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(previous);
    work()
}

/// Asks the CPU to start loading `bytes` into the cache (a hint: no effect on results).
#[inline]
pub fn prefetch(bytes: &[u8]) {
    prefetch_lines::<3>(bytes) // _MM_HINT_T0: every level
}

/// [`prefetch`] into the second-level cache only, leaving the first to the work under way.
#[inline]
pub fn prefetch_to_l2(bytes: &[u8]) {
    prefetch_lines::<2>(bytes) // _MM_HINT_T1
}

/// Prefetches every cache line of `bytes` with x86's hint `HINT` (nothing elsewhere).
#[inline]
fn prefetch_lines<const HINT: i32>(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        // Line by line from the line holding the first byte to the one holding the last (an
        // image of 784 bytes that starts late in a line ends 14 lines on).
        let start = bytes.as_ptr() as usize;
        let first_line = start & !(CACHE_LINE - 1);
        for line in (first_line..start + bytes.len()).step_by(CACHE_LINE) {
            // SAFETY: prefetching is a hint that never faults (any address may be named), and
            // SSE is part of x86_64's baseline.
            unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line as *const i8) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// The CPU's model name (from /proc/cpuinfo on Linux), for benchmark reports.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
