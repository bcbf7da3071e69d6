//! The benchmark report: the machine, the kernels, and one summary per case; as a table for
//! people, Markdown for READMEs and JSON for scripts (schema in the README, "Benchmark mode").

use serde::Serialize;

use crate::bench::{CaseReport, Stats};

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
    pub dataset: &'static str,
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

const COLUMNS: [&str; 11] = [
    "batch",
    "threads",
    "optimizer",
    "epoch (mean ± σ)",
    "median",
    "min … max",
    "samples/s",
    "load",
    "eval",
    "peak RSS",
    "test acc.",
];

fn row(case: &CaseReport) -> [String; 11] {
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
        seconds(case.load_seconds.median),
        seconds(case.eval_seconds.median),
        megabytes(case.peak_rss_bytes),
        format!("{:.2}%", case.test_accuracy * 100.0),
    ]
}

impl BenchReport {
    /// What was measured where, one fact per line: the CPU, the kernel, the run settings.
    fn header_lines(&self) -> [String; 3] {
        [
            format!(
                "CPU: {} ({} threads available)",
                self.cpu, self.available_threads
            ),
            format!("Kernel: {}", self.kernel_description),
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
        let rows: Vec<[String; 11]> = self.cases.iter().map(row).collect();
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
