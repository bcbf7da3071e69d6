//! The benchmark report: the machine, the kernels, and one summary per case; as a table for
//! people, Markdown for READMEs and JSON for scripts (schema in the README, "Benchmark mode").

use serde::Serialize;

use crate::bench::{CaseReport, Stats};
use crate::kernels::FmaPeak;
use crate::nn::TrainingFlops;

/// Identifies the JSON layout; bumped when a field changes meaning or disappears.
pub const SCHEMA: &str = "mnist-train-bench/1";

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `"bench"`: like every `--json` document, the report names its kind (see README, JSON output).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub schema: &'static str,
    /// mnist-train's version.
    pub version: &'static str,
    /// The CPU model name.
    pub cpu: String,
    /// Logical CPUs the OS lets the process use.
    pub available_threads: usize,
    /// The kernel backend every case ran on (`avx512`, `avx2` or `portable`).
    pub kernel: &'static str,
    pub kernel_description: &'static str,
    /// The kernel's FMA throughput on this CPU, measured before the cases.
    pub fma_peak: FmaPeak,
    pub dataset: &'static str,
    /// The network every case trained: its layer list (`conv32x3,relu,…`) or the MLP's widths
    /// (`784-128-10`).
    pub network: String,
    /// The matrix-product flops of training on one example, counted from the network's layers
    /// (forward; backward = weight gradients and the input gradients that are needed).
    pub training_flops_per_example: TrainingFlops,
    pub epochs: usize,
    pub warmup_runs: usize,
    pub measured_runs: usize,
    pub cases: Vec<CaseReport>,
}

fn seconds(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.3} s")
    } else {
        format!("{:.1} ms", value * 1000.0)
    }
}

fn mean_sd(stats: &Stats) -> String {
    format!("{} ± {}", seconds(stats.mean), seconds(stats.stddev))
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_string(),
        |b| format!("{:.0} MB", b as f64 / 1e6),
    )
}

const COLUMNS: [&str; 14] = [
    "batch",
    "threads",
    "optimizer",
    "epoch (mean ± σ)",
    "median",
    "min … max",
    "samples/s",
    "GFLOP/s",
    "of peak",
    "× floor",
    "load",
    "eval",
    "peak RSS",
    "test acc.",
];

fn row(case: &CaseReport) -> [String; 14] {
    [
        case.batch_size.clone(),
        case.threads.to_string(),
        if case.private {
            format!("{} (DP-SGD)", case.optimizer)
        } else {
            case.optimizer.clone()
        },
        mean_sd(&case.epoch_seconds),
        seconds(case.epoch_seconds.median),
        format!(
            "{} … {}",
            seconds(case.epoch_seconds.min),
            seconds(case.epoch_seconds.max)
        ),
        format!("{:.0}", case.samples_per_second.median),
        format!("{:.1}", case.achieved_gflops),
        format!("{:.1}%", case.fraction_of_peak * 100.0),
        format!("{:.2}", case.ratio_to_floor),
        seconds(case.load_seconds.median),
        seconds(case.eval_seconds.median),
        megabytes(case.peak_rss_bytes),
        format!("{:.2}%", case.test_accuracy * 100.0),
    ]
}

impl BenchReport {
    /// What was measured where, one fact per line: the CPU, the kernel, the run settings.
    fn header_lines(&self) -> [String; 5] {
        [
            format!(
                "CPU: {} ({} threads available)",
                self.cpu, self.available_threads
            ),
            format!("Kernel: {}", self.kernel_description),
            format!(
                "FMA peak ({}): {:.1} GFLOP/s on 1 thread, {:.1} GFLOP/s on {} threads \
                 (GFLOP/s, of peak and × floor below: the training's matrix products, counted \
                 as dense, direct products)",
                self.kernel,
                self.fma_peak.one_thread_gflops,
                self.fma_peak.all_threads_gflops,
                self.fma_peak.threads
            ),
            format!(
                "Network: {} ({:.3} MFLOP of matrix products per training example: forward {:.3}, \
                 backward {:.3})",
                self.network,
                self.training_flops_per_example.total() / 1e6,
                self.training_flops_per_example.forward / 1e6,
                self.training_flops_per_example.backward / 1e6
            ),
            format!(
                "{} epoch(s) per run on {}, {} warm-up + {} measured run(s) per case",
                self.epochs, self.dataset, self.warmup_runs, self.measured_runs
            ),
        ]
    }

    /// The lines printed before the table.
    pub fn header(&self) -> String {
        self.header_lines().join("\n")
    }

    /// An aligned plain-text table, one line per case.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 14]> = self.cases.iter().map(row).collect();
        let widths: Vec<usize> = (0..COLUMNS.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([COLUMNS[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = vec![line(COLUMNS.to_vec())];
        for r in &rows {
            out.push(line(r.iter().map(String::as_str).collect()));
        }
        out.join("\n")
    }

    /// A Markdown document: the header as a list, then the table.
    pub fn markdown(&self) -> String {
        let mut out: String = self
            .header_lines()
            .iter()
            .map(|line| format!("- {line}\n"))
            .collect();
        out.push('\n');
        out.push_str(&format!("| {} |\n", COLUMNS.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
        for case in &self.cases {
            out.push_str(&format!("| {} |\n", row(case).join(" | ")));
        }
        out
    }
}
