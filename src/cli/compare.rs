//! `mnist-train compare`: train the optimizer family on the same data, seed and budget; print a
//! table and write the per-epoch history (CSV, JSON), the table (Markdown) and a plot (SVG).

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::Args;

use crate::cli::performance::PerformanceArgs;
use crate::cli::positive;
use crate::cli::train::TensorBoardArgs;
use crate::cli::{DataArgs, DatasetArg, OutputArgs};
use crate::compare::plot::ComparisonFigure;
use crate::compare::report::{
    format_csv, format_markdown_table, format_table, CompareJson, VariantJson,
};
use crate::compare::{default_variants, run_variants, CompareConfig, Variant, VARIANT_NAMES};
use crate::data::{load_split, DatasetKind, Split};
use crate::error::{Error, Result, Setting};
use crate::model_file::write_atomic;
use crate::plot::{save_figure, PlotFormat};
use crate::train::Progress;

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The network every variant trains (as `train --arch`)
    #[arg(long, value_enum, default_value_t = crate::cli::train::ArchName::Mlp)]
    pub arch: crate::cli::train::ArchName,
    /// Passes over the training images: the budget, the same for every variant
    #[arg(long, default_value_t = 20, value_parser = crate::cli::at_least_one::<usize>)]
    pub epochs: usize,
    /// Train on the first N training images (60000 for all of them)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = crate::cli::at_least_one::<usize>)]
    pub limit: usize,
    /// Seed shared by every variant (initialization, shuffling, dropout)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which variants to run, comma-separated [default: all of them]
    #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(VARIANT_NAMES))]
    pub variants: Vec<String>,
    /// Use another learning rate for a variant, e.g. --lr sgd=0.02 (repeatable)
    #[arg(long = "lr", value_name = "VARIANT=LR", value_parser = parse_learning_rate)]
    pub learning_rates: Vec<(String, f32)>,
    /// Examples per step of the mini-batch variants (mini-batch-gd, momentum, adam)
    #[arg(long, default_value_t = 32, value_parser = crate::cli::at_least_one::<usize>)]
    pub batch_size: usize,
    /// Momentum coefficient of the momentum variants
    #[arg(long, default_value_t = 0.9, allow_hyphen_values = true)]
    pub momentum: f32,
    /// Examples per batch when evaluating
    #[arg(long, default_value_t = 1000, value_parser = crate::cli::at_least_one::<usize>)]
    pub test_batch_size: usize,
    /// Which dataset to train on
    #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub data: DataArgs,
    /// Folder for history.csv, history.json, table.md and curves.svg (created if missing)
    #[arg(long, value_name = "DIR", default_value = "compare-results")]
    pub output_dir: PathBuf,
    /// Where to draw the curves, .svg or .png [default: DIR/curves.svg]
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
    // TensorBoard event files, one run folder per variant: `--tensorboard DIR` writes DIR/sgd, …
    #[command(flatten)]
    pub tensorboard: TensorBoardArgs,
    #[command(flatten)]
    pub output_args: OutputArgs,
    #[command(flatten)]
    pub performance: PerformanceArgs,
}

/// `VARIANT=LR`, with a known variant and a positive rate.
fn parse_learning_rate(value: &str) -> std::result::Result<(String, f32), String> {
    let (name, rate) = value
        .split_once('=')
        .ok_or_else(|| "expected VARIANT=LR, e.g. sgd=0.02".to_string())?;
    if !VARIANT_NAMES.contains(&name) {
        return Err(format!(
            "unknown variant {name:?} (one of {})",
            VARIANT_NAMES.join(", ")
        ));
    }
    match rate.parse::<f32>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok((name.to_string(), rate)),
        _ => Err(format!("learning rate {rate:?} is not a positive number")),
    }
}

impl CompareArgs {
    fn plot_path(&self) -> PathBuf {
        self.plot
            .clone()
            .unwrap_or_else(|| self.output_dir.join("curves.svg"))
    }

    /// Checks the options; returns the shared settings and the variants to run, in order.
    pub fn validate(&self) -> Result<(CompareConfig, Vec<Variant>)> {
        PlotFormat::from_path(Setting::Plot, &self.plot_path())?;
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config("--momentum", "must be in [0, 1)"));
        }
        let mut variants = default_variants(self.batch_size, self.momentum);
        if !self.variants.is_empty() {
            variants.retain(|v| self.variants.contains(&v.name));
        }
        for (name, rate) in &self.learning_rates {
            let variant = variants
                .iter_mut()
                .find(|v| &v.name == name)
                .ok_or_else(|| {
                    Error::config("--lr", format!("variant {name} is not among --variants"))
                })?;
            variant.learning_rate = positive("--lr", *rate)?;
        }
        let config = CompareConfig {
            architecture: crate::cli::train::resolve_architecture(self.arch, None, None, None)?,
            epochs: self.epochs,
            seed: self.seed,
            test_batch_size: self.test_batch_size,
            threads: self.performance.threads(),
            dataset: DatasetKind::from(self.dataset),
            tensorboard: self.tensorboard.settings(),
        };
        Ok((config, variants))
    }
}

pub fn run(args: CompareArgs) -> Result<()> {
    let (config, variants) = args.validate()?;
    args.performance.select_kernel()?;
    let dataset = DatasetKind::from(args.dataset);
    let data_dir = args.data.dir_for(dataset);
    std::fs::create_dir_all(&args.output_dir).map_err(|e| Error::io(&args.output_dir, e))?;
    let mut train = load_split(&data_dir, Split::Train, dataset)?;
    let test = load_split(&data_dir, Split::Test, dataset)?;
    train.truncate(args.limit);
    let mode = args.output_args.progress_mode();
    let intro = Progress::new(mode, config.epochs);
    intro.info(&format!(
        "Comparing {} variants: {} epochs over {} training images each (seed {}), measured on the {} test images after every epoch (val_* in the epoch lines)",
        variants.len(),
        config.epochs,
        train.len(),
        config.seed,
        test.len()
    ));

    let results = run_variants(&config, &variants, &train, &test, |index, variant| {
        let progress = Progress::new(mode, config.epochs);
        progress.info(&format!(
            "[{}/{}] {}: {}",
            index + 1,
            variants.len(),
            variant.name,
            variant.describe()
        ));
        progress
    })?;

    print!("{}", format_table(&results));
    let json = CompareJson {
        epochs: config.epochs,
        seed: config.seed,
        train_images: train.len(),
        test_images: test.len(),
        variants: results.iter().map(VariantJson::new).collect(),
    };
    let json = serde_json::to_string_pretty(&json)
        .map_err(|e| Error::io(&args.output_dir, std::io::Error::other(e)))?;
    let title = format!(
        "{} on {} {} training images, {} epochs, seed {}",
        "Optimizers compared",
        train.len(),
        dataset.name(),
        config.epochs,
        config.seed
    );
    let outputs = [
        ("history.csv", format_csv(&results)),
        ("history.json", json + "\n"),
        ("table.md", format_markdown_table(&results)),
    ];
    for (name, contents) in &outputs {
        write_atomic(&args.output_dir.join(name), contents.as_bytes())?;
    }
    let figure = ComparisonFigure {
        title,
        results: &results,
    };
    let plot = args.plot_path();
    save_figure(Setting::Plot, &plot, &figure)?;
    intro.info(&format!(
        "Wrote history.csv, history.json and table.md to {}, and the curves to {}",
        args.output_dir.display(),
        plot.display()
    ));
    Ok(())
}
