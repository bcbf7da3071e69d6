//! The command line: clap structs, one per subcommand. Each is turned into a validated config
//! (errors name the option) before any work starts.

pub mod bench;
pub mod compare;
pub mod completions;
pub mod errors;
pub mod eval;
pub mod explain_args;
pub mod interop;
pub mod memory_args;
pub mod optimizer_args;
pub mod performance;
pub mod predict;
pub mod privacy_args;
pub mod resume;
pub mod summary;
pub mod train;
pub mod validation_args;

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::choice::Choice;
use crate::data::DatasetKind;
use crate::error::Result;
use crate::train::ProgressMode;

#[derive(Debug, Parser)]
#[command(
    name = "mnist-train",
    version,
    about = "Train and evaluate a handwritten-digit classifier on MNIST, natively on the CPU",
    long_about = "Train and evaluate a handwritten-digit classifier on MNIST, natively on the CPU.\n\n\
                  Without a subcommand, `mnist-train [OPTIONS]` trains (the same as `mnist-train train [OPTIONS]`).",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default command, `train`.
    #[command(flatten)]
    pub train: train::TrainArgs,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model and evaluate it on the test set (the default command)
    Train(train::TrainArgs),
    /// Evaluate a saved model on the test set
    Eval(eval::EvalArgs),
    /// Classify image files (PNG, JPEG, PGM) or test-set images with a saved model
    Predict(predict::PredictArgs),
    /// Train the optimizer family (full-batch GD, SGD, mini-batch GD, momentum and their
    /// combinations, Adam) on the same data, seed and budget; print a table, write curves
    Compare(compare::CompareArgs),
    /// Measure training speed over batch sizes, thread counts and optimizers (hyperfine-style)
    Bench(bench::BenchArgs),
    /// Write a model as safetensors (tensor names PyTorch's nn.Sequential loads) or ONNX
    Export(interop::ExportArgs),
    /// Convert a safetensors file (ours or PyTorch's) into an mnist-train model file
    Import(interop::ImportArgs),
    /// Describe a model like Keras' model.summary(): layers, output shapes, parameters, and the
    /// file's metadata (or an architecture given by --hidden/--dropout, without a model)
    Summary(summary::SummaryArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
}

/// Options shared by every command that reads a dataset.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Folder with the four MNIST-format files (gzip or raw IDX, detected by content)
    /// [default: data/ for mnist, /usr/share/datasets/fashion-mnist for fashion]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// `--data-dir` if given, else where `dataset` lives by default.
    pub fn dir_for(&self, dataset: DatasetKind) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| dataset.default_dir())
    }
}

/// Options for how much is printed.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// How to show progress on stderr: a bar on a terminal, plain lines otherwise
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Print only results (same as --progress none)
    #[arg(long, short)]
    pub quiet: bool,
}

impl OutputArgs {
    pub fn progress_mode(&self) -> ProgressMode {
        if self.quiet {
            return ProgressMode::None;
        }
        match self.progress {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Bar => ProgressMode::Bar,
            ProgressArg::Plain => ProgressMode::Plain,
            ProgressArg::None => ProgressMode::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Plain,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetArg {
    /// Handwritten digits (the embedded default)
    Mnist,
    /// Zalando's Fashion-MNIST clothing images
    Fashion,
}

impl From<DatasetArg> for DatasetKind {
    fn from(value: DatasetArg) -> Self {
        match value {
            DatasetArg::Mnist => DatasetKind::Mnist,
            DatasetArg::Fashion => DatasetKind::Fashion,
        }
    }
}

/// The value parser of an option whose values are a library [`Choice`] (`--kernel`, `--color`,
/// `--invert`): the names, their help and the parsing all come from the library's enum.
pub fn choice<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: Choice + std::str::FromStr<Err = String> + Clone + Send + Sync,
{
    let values = T::CHOICES.iter().map(|&(_, name, help)| match help {
        Some(help) => PossibleValue::new(name).help(help),
        None => PossibleValue::new(name),
    });
    PossibleValuesParser::new(values).try_map(|name| name.parse::<T>())
}

/// `value` if it is `valid`, else an error naming `option`: "must <must>, got <value>".
pub fn require<T: std::fmt::Display>(option: &str, value: T, valid: bool, must: &str) -> Result<T> {
    if valid {
        Ok(value)
    } else {
        Err(crate::error::Error::config(
            option,
            format!("must {must}, got {value}"),
        ))
    }
}

/// A finite value > 0.
pub fn positive<T: Into<f64> + Copy + std::fmt::Display>(option: &str, value: T) -> Result<T> {
    let number: f64 = value.into();
    let valid = number.is_finite() && number > 0.0;
    require(option, value, valid, "be a positive number")
}

/// Refuses the first of `options` (name, whether it was given) that was given: it has no effect
/// without `needs`.
pub fn refuse_given_without(options: &[(&str, bool)], needs: &str) -> Result<()> {
    match options.iter().find(|(_, given)| *given) {
        Some(&(option, _)) => Err(crate::error::Error::config(
            option,
            format!("has no effect without {needs}"),
        )),
        None => Ok(()),
    }
}

/// A count that must be at least 1 (`--epochs`, `--limit`, `--runs`, …): checked while parsing,
/// so clap names the option in the error.
pub fn at_least_one<T>(value: &str) -> std::result::Result<T, String>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    match value.parse::<T>() {
        Ok(count) if count == T::from(0) => Err("must be at least 1".to_string()),
        Ok(count) => Ok(count),
        Err(error) => Err(error.to_string()),
    }
}

/// Threads: 1 to 1024.
pub fn thread_count(value: &str) -> std::result::Result<usize, String> {
    match at_least_one::<usize>(value)? {
        count if count > 1024 => Err("must be at most 1024".to_string()),
        count => Ok(count),
    }
}

/// Parses the command line like `Cli::try_parse_from`, and also records which train options
/// were given explicitly (a resumed run takes the checkpoint's value for the others).
pub fn parse_from<I, T>(args: I) -> std::result::Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let (train_args, train_matches) = match (&mut cli.command, matches.subcommand()) {
        (None, _) => (&mut cli.train, &matches),
        (Some(Command::Train(args)), Some((_, sub_matches))) => (args, sub_matches),
        _ => return Ok(cli),
    };
    train_args.checkpoints.given = train_matches
        .ids()
        .filter(|id| train_matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect();
    Ok(cli)
}

/// The whole program: parses `args`, runs the command, prints an error as one line. Returns the
/// process exit code.
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return report_parse_error(error),
    };
    match run(cli) {
        Ok(()) => crate::error::exit_code::SUCCESS,
        Err(error) => {
            if let Some(hint) = errors::how_to_continue(&error) {
                eprintln!("{hint}");
            }
            eprintln!("error: {}", errors::message(&error));
            error.exit_code()
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => train::run(cli.train),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Predict(args)) => predict::run(args),
        Some(Command::Compare(args)) => compare::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Export(args)) => interop::run_export(args),
        Some(Command::Import(args)) => interop::run_import(args),
        Some(Command::Summary(args)) => summary::run(args),
        Some(Command::Completions(args)) => completions::run(args),
    }
}

/// Prints a command-line parsing error as one line (help and version requests print in full)
/// and returns the exit code.
pub fn report_parse_error(error: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            crate::error::exit_code::SUCCESS
        }
        _ => {
            let rendered = error.render().to_string();
            let first_line = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first_line} (see --help)");
            crate::error::exit_code::USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::{Debug, Display};
    use std::str::FromStr;

    use super::*;
    use crate::kernels::KernelChoice;
    use crate::predict::InvertMode;
    use crate::report::ColorChoice;

    /// Every choice of `T` is offered with its help, parses from its name and prints as it.
    fn offers_every_choice<T>()
    where
        T: Choice + FromStr<Err = String> + Display + Clone + Send + Sync + PartialEq + Debug,
    {
        let offered: Vec<PossibleValue> = choice::<T>()
            .possible_values()
            .expect("a fixed list")
            .collect();
        assert_eq!(offered.len(), T::CHOICES.len());
        for (&(choice, _, _), value) in T::CHOICES.iter().zip(&offered) {
            assert_eq!(value.get_name(), choice.name());
            let help = value.get_help().map(|help| help.to_string());
            assert_eq!(help.as_deref(), choice.description());
            assert_eq!(choice.to_string(), choice.name());
            assert_eq!(choice.name().parse::<T>(), Ok(choice));
        }
    }

    #[test]
    fn choice_options_offer_the_library_enums_names_and_help() {
        offers_every_choice::<KernelChoice>();
        offers_every_choice::<ColorChoice>();
        offers_every_choice::<InvertMode>();
    }

    #[test]
    fn an_unknown_choice_is_a_usage_error_listing_the_names() {
        let error = parse_from(["mnist-train", "--kernel", "sse9"]).expect_err("sse9 is no kernel");
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
        let text = error.to_string();
        assert!(text.contains("sse9"), "{text}");
        assert!(
            text.contains("auto, avx512, avx2, neon, portable"),
            "{text}"
        );
        let error = "Never"
            .parse::<ColorChoice>()
            .expect_err("names are lower case");
        assert!(error.contains("auto, always, never"), "{error}");
    }
}
