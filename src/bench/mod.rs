//! Benchmark runs for scripts (`mnist-train bench`): a matrix of configurations (batch size ×
//! thread count × optimizer), each measured hyperfine-style (warm-up runs, then N measured runs
//! of the whole job: load, train, evaluate) and summarized as mean ± σ, median, min and max.

pub mod report;
pub mod stats;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::data::DatasetKind;
use crate::error::Result;
use crate::kernels::FmaPeak;
use crate::optim::privacy::{DpConfig, DEFAULT_DELTA};
use crate::optim::OptimizerConfig;
use crate::run::{self, Observers, RunSpec, Source};
use crate::train::{BatchSize, Progress, ProgressMode, TrainConfig};

pub use stats::Stats;

/// One configuration of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchCase {
    pub batch_size: BatchSize,
    pub threads: usize,
    /// The optimizer's name as on the command line (`adam`, `sgd`, …).
    pub optimizer_name: String,
    pub optimizer: OptimizerConfig,
    pub learning_rate: f32,
    /// Train privately (DP-SGD with [`BENCH_PRIVACY`]) instead.
    pub private: bool,
}

/// What `bench --dp` measures: DP-SGD with noise multiplier 1 and clip norm 1 (the speed does
/// not depend on the values).
pub const BENCH_PRIVACY: DpConfig = DpConfig {
    noise_multiplier: 1.0,
    clip_norm: 1.0,
    delta: DEFAULT_DELTA,
};

/// What every case shares.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// The network every case trains (`--arch`).
    pub architecture: crate::nn::Architecture,
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    /// Train on the first N images only.
    pub limit: Option<usize>,
    pub epochs: usize,
    /// Runs before measuring (caches, page faults, CPU frequency), not reported.
    pub warmup: usize,
    /// Measured runs per case.
    pub runs: usize,
    pub seed: u64,
    pub test_batch_size: usize,
}

/// One measured run of the whole job.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeasurement {
    pub load_seconds: f64,
    /// Training time of each epoch.
    pub epoch_seconds: Vec<f64>,
    pub eval_seconds: f64,
    /// load + train + evaluate.
    pub total_seconds: f64,
    pub train_examples: usize,
    pub final_loss: f64,
    pub final_accuracy: f64,
    pub test_accuracy: f64,
}

impl BenchCase {
    /// The run this case measures.
    pub fn spec(&self, settings: &BenchSettings) -> RunSpec {
        let training = TrainConfig {
            architecture: settings.architecture.clone(),
            optimizer: self.optimizer,
            learning_rate: self.learning_rate,
            epochs: settings.epochs,
            batch_size: self.batch_size,
            seed: settings.seed,
            privacy: self.private.then_some(BENCH_PRIVACY),
            ..TrainConfig::default()
        };
        RunSpec {
            data_dir: settings.data_dir.clone(),
            limit: settings.limit,
            test_batch_size: settings.test_batch_size,
            threads: NonZeroUsize::new(self.threads),
            ..RunSpec::new(training, settings.dataset)
        }
    }
}

/// Runs the whole job once for `case`: load the data, train, evaluate on the test set.
pub fn run_once(case: &BenchCase, settings: &BenchSettings) -> Result<RunMeasurement> {
    let started = Instant::now();
    let mut progress = Progress::new(ProgressMode::None, settings.epochs);
    let outcome = run::execute(
        &case.spec(settings),
        Source::Load,
        None,
        Observers::quiet(&mut progress),
    )?;
    let history = &outcome.trainer.history;
    let last = history.last();
    Ok(RunMeasurement {
        load_seconds: outcome.load_seconds,
        epoch_seconds: history.iter().map(|r| r.seconds).collect(),
        eval_seconds: outcome.eval_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        train_examples: outcome.train.len(),
        final_loss: last.map_or(f64::NAN, |r| r.loss),
        final_accuracy: last.map_or(f64::NAN, |r| r.accuracy),
        test_accuracy: outcome.evaluation.accuracy,
    })
}

/// The summary of one case's measured runs.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// "32", "128" or "full".
    pub batch_size: String,
    pub threads: usize,
    pub optimizer: String,
    pub learning_rate: f32,
    /// Trained privately (DP-SGD: Poisson sampling, per-example clipping, noise).
    pub private: bool,
    /// Over every epoch of every measured run.
    pub epoch_seconds: Stats,
    /// Training examples per second of each epoch.
    pub samples_per_second: Stats,
    pub load_seconds: Stats,
    pub eval_seconds: Stats,
    /// Whole job: load + train + evaluate.
    pub total_seconds: Stats,
    /// Peak resident memory while this case ran (VmHWM; null where the OS does not report it).
    pub peak_rss_bytes: Option<u64>,
    pub train_examples: usize,
    /// The matrix products of one training epoch (forward, weight and input gradients), in
    /// GFLOP, counted from the trained network's layers ([`crate::nn::Architecture::training_flops_per_example`]
    /// × `train_examples`): what the floor and the fraction of the peak are computed from.
    pub training_gflop_per_epoch: f64,
    /// `training_gflop_per_epoch` ÷ the median epoch time.
    pub achieved_gflops: f64,
    /// The FMA peak of the threads this case used (see [`FmaPeak::for_threads`]).
    pub peak_gflops: f64,
    /// `achieved_gflops` ÷ `peak_gflops`.
    pub fraction_of_peak: f64,
    /// The shortest possible epoch: `training_gflop_per_epoch` ÷ `peak_gflops`.
    pub floor_seconds: f64,
    /// Median epoch time ÷ `floor_seconds` (1 would be the CPU's limit).
    pub ratio_to_floor: f64,
    /// Of the last measured run (every run computes the same model).
    pub final_loss: f64,
    pub final_accuracy: f64,
    pub test_accuracy: f64,
    pub runs: Vec<RunMeasurement>,
}

/// Warms up, measures `settings.runs` runs of `case` and summarizes them against the machine's
/// FMA `peak`. `on_run(index, run)` is told about every measured run as it finishes.
pub fn measure_case(
    case: &BenchCase,
    settings: &BenchSettings,
    peak: &FmaPeak,
    mut on_run: impl FnMut(usize, &RunMeasurement),
) -> Result<CaseReport> {
    let peak_tracked = reset_peak_rss();
    for _ in 0..settings.warmup {
        run_once(case, settings)?;
    }
    let mut runs = Vec::with_capacity(settings.runs);
    for index in 0..settings.runs.max(1) {
        let run = run_once(case, settings)?;
        on_run(index, &run);
        runs.push(run);
    }
    let epochs: Vec<f64> = runs.iter().flat_map(|r| r.epoch_seconds.clone()).collect();
    let throughput: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            r.epoch_seconds
                .iter()
                .map(move |&s| r.train_examples as f64 / s.max(1e-12))
        })
        .collect();
    let pick = |field: fn(&RunMeasurement) -> f64| -> Vec<f64> { runs.iter().map(field).collect() };
    let last = runs.last().cloned().expect("at least one run");
    let epoch_seconds = Stats::of(&epochs);
    // Counted from the network that was trained (its layer stack, or the MLP's widths).
    let training_gflop_per_epoch = last.train_examples as f64
        * settings.architecture.training_flops_per_example().total()
        / 1e9;
    let peak_gflops = peak.for_threads(case.threads);
    let achieved_gflops = training_gflop_per_epoch / epoch_seconds.median.max(1e-12);
    let floor_seconds = training_gflop_per_epoch / peak_gflops.max(1e-12);
    Ok(CaseReport {
        batch_size: case.batch_size.label(),
        threads: case.threads,
        optimizer: case.optimizer_name.clone(),
        learning_rate: case.learning_rate,
        private: case.private,
        epoch_seconds,
        samples_per_second: Stats::of(&throughput),
        load_seconds: Stats::of(&pick(|r| r.load_seconds)),
        eval_seconds: Stats::of(&pick(|r| r.eval_seconds)),
        total_seconds: Stats::of(&pick(|r| r.total_seconds)),
        peak_rss_bytes: if peak_tracked { peak_rss_bytes() } else { None },
        train_examples: last.train_examples,
        training_gflop_per_epoch,
        achieved_gflops,
        peak_gflops,
        fraction_of_peak: achieved_gflops / peak_gflops.max(1e-12),
        floor_seconds,
        ratio_to_floor: epoch_seconds.median / floor_seconds.max(1e-12),
        final_loss: last.final_loss,
        final_accuracy: last.final_accuracy,
        test_accuracy: last.test_accuracy,
        runs,
    })
}

/// Peak resident memory of this process so far (Linux: VmHWM in /proc/self/status).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak-memory mark to the current usage (Linux ≥ 4.0), so each case reports its own
/// peak. Returns false where that is not possible (the figure would then be the process's peak).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
