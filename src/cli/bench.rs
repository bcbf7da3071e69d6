//! `mnist-train bench`: measure training speed over a matrix of configurations, for people
//! (a table) and scripts (`--json`, `--export-json`, `--export-markdown`).

use std::path::PathBuf;

use clap::Args;

use crate::bench::report::{BenchReport, SCHEMA};
use crate::bench::{measure_case, BenchCase, BenchSettings};
use crate::cli::optimizer_args::OptimizerName;
use crate::cli::performance::KernelArgs;
use crate::cli::{DataArgs, DatasetArg};
use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::kernels;
use crate::model_file::write_atomic;
use crate::optim::OptimizerConfig;
use crate::report::print_json_line;
use crate::train::{default_threads, BatchSize};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Batch sizes to measure, comma-separated (numbers or "full")
    #[arg(long, value_delimiter = ',', default_value = "32,128,full", value_parser = crate::cli::train::parse_batch_size)]
    pub batch_sizes: Vec<BatchSize>,
    /// Thread counts to measure, comma-separated [default: 1 and all cores]
    #[arg(long, value_delimiter = ',', value_name = "N,...", value_parser = crate::cli::thread_count)]
    pub threads: Vec<usize>,
    /// Optimizers to measure, comma-separated, each with its default learning rate
    #[arg(long, value_delimiter = ',', value_enum, default_value = "adam")]
    pub optimizers: Vec<OptimizerName>,
    /// The network to train (as `train --arch`)
    #[arg(long, value_enum, default_value_t = crate::cli::train::ArchName::Mlp)]
    pub arch: crate::cli::train::ArchName,
    /// Also measure every case with private training (DP-SGD: Poisson sampling, per-example
    /// clipping, noise multiplier 1, clip norm 1), right after its ordinary run
    #[arg(long)]
    pub dp: bool,
    /// Epochs per run
    #[arg(long, default_value_t = 2, value_parser = crate::cli::at_least_one::<usize>)]
    pub epochs: usize,
    /// Unmeasured runs per configuration before measuring
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Measured runs per configuration
    #[arg(long, default_value_t = 5, value_parser = crate::cli::at_least_one::<usize>)]
    pub runs: usize,
    /// Train on the first N training images only
    #[arg(long, value_name = "N", value_parser = crate::cli::at_least_one::<usize>)]
    pub limit: Option<usize>,
    /// Seed of every run
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which dataset to train on
    #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Print the report as JSON on stdout (progress and the table go to stderr)
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to PATH
    #[arg(long, value_name = "PATH")]
    pub export_json: Option<PathBuf>,
    /// Also write the report as a Markdown table to PATH
    #[arg(long, value_name = "PATH")]
    pub export_markdown: Option<PathBuf>,
    /// Print only the results
    #[arg(long, short)]
    pub quiet: bool,
}

impl BenchArgs {
    fn validate(&self) -> Result<(BenchSettings, Vec<BenchCase>)> {
        let mut threads = self.threads.clone();
        if threads.is_empty() {
            threads = vec![1, default_threads()];
            threads.dedup();
        }
        let dataset = DatasetKind::from(self.dataset);
        let settings = BenchSettings {
            architecture: crate::cli::train::resolve_architecture(self.arch, None, None, None)?,
            dataset,
            data_dir: self.data.dir_for(dataset),
            limit: self.limit,
            epochs: self.epochs,
            warmup: self.warmup,
            runs: self.runs,
            seed: self.seed,
            test_batch_size: 1000,
        };
        let mut cases = Vec::new();
        for &batch_size in &self.batch_sizes {
            for &thread_count in &threads {
                for &name in &self.optimizers {
                    // Keras' defaults, as `train` uses them.
                    let optimizer = OptimizerConfig::defaults(name.kind());
                    let learning_rate = optimizer.default_learning_rate();
                    for private in [false, true] {
                        if private && !self.dp {
                            continue;
                        }
                        cases.push(BenchCase {
                            batch_size,
                            threads: thread_count,
                            optimizer_name: name.as_str().to_string(),
                            optimizer,
                            learning_rate,
                            private,
                        });
                    }
                }
            }
        }
        Ok((settings, cases))
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let (settings, cases) = args.validate()?;
    let backend = args.kernel.select()?;
    let mut report = BenchReport {
        kind: "bench",
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION"),
        cpu: kernels::cpu_model(),
        available_threads: default_threads(),
        kernel: backend.name(),
        kernel_description: backend.description(),
        fma_peak: kernels::measure_fma_peak(backend, default_threads()),
        dataset: settings.dataset.name(),
        network: settings.architecture.widths_label(),
        training_flops_per_example: settings.architecture.training_flops_per_example(),
        epochs: settings.epochs,
        warmup_runs: settings.warmup,
        measured_runs: settings.runs,
        cases: Vec::new(),
    };
    let say = |line: &str| {
        if !args.quiet {
            eprintln!("{line}");
        }
    };
    say(&report.header());
    for (index, case) in cases.iter().enumerate() {
        let label = format!(
            "[{}/{}] batch {}, {} thread(s), {}{}",
            index + 1,
            cases.len(),
            case.batch_size.label(),
            case.threads,
            case.optimizer_name,
            if case.private { " (DP-SGD)" } else { "" }
        );
        let summary = measure_case(case, &settings, &report.fma_peak, |run, measurement| {
            say(&format!(
                "{label}: run {}/{} {:.3} s (load {:.3} s, epochs {}, eval {:.3} s)",
                run + 1,
                settings.runs,
                measurement.total_seconds,
                measurement.load_seconds,
                measurement
                    .epoch_seconds
                    .iter()
                    .map(|s| format!("{s:.3}"))
                    .collect::<Vec<_>>()
                    .join("/"),
                measurement.eval_seconds
            ))
        })?;
        report.cases.push(summary);
    }
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::config("--json", format!("cannot encode the report: {e}")))?;
    if args.json {
        eprintln!("{}", report.table());
        // One compact line on stdout, as every --json output (the exported file stays indented).
        print_json_line(&report)?;
    } else {
        println!("{}", report.table());
    }
    if let Some(path) = &args.export_json {
        write_atomic(path, format!("{json}\n").as_bytes())?;
    }
    if let Some(path) = &args.export_markdown {
        write_atomic(path, report.markdown().as_bytes())?;
    }
    Ok(())
}
