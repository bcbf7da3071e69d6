//! `mnist-train summary`: the Keras-style layer table of a model file, or of an architecture
//! given by options without a model.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::nn::Architecture;
use crate::report::summary::{summarize_file, ModelSummary};
use crate::report::{print_json_line, HumanOutput};

#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// The model file to describe (ours or safetensors)
    #[arg(long, short, value_name = "PATH", conflicts_with_all = ["hidden", "dropout"])]
    pub model: Option<PathBuf>,
    /// Without --model: hidden layer widths of the network to describe, comma-separated
    /// [default: 128, as train]
    #[arg(long, value_delimiter = ',', value_name = "WIDTHS")]
    pub hidden: Option<Vec<usize>>,
    /// Without --model: dropout rate after each hidden layer [default: 0.2, as train]
    #[arg(long, value_name = "RATE")]
    pub dropout: Option<f32>,
    /// Print one JSON line (`"type": "model_summary"`) instead of the table
    #[arg(long)]
    pub json: bool,
}

impl SummaryArgs {
    /// The architecture the options describe (train's defaults for what is not given).
    fn architecture(&self) -> Result<Architecture> {
        let tutorial = Architecture::tutorial();
        let hidden = self.hidden.clone().unwrap_or(tutorial.hidden.clone());
        if hidden.is_empty() || hidden.iter().any(|&w| w == 0 || w > 1 << 16) {
            return Err(Error::config(
                "--hidden",
                "every hidden layer width must be between 1 and 65536",
            ));
        }
        let dropout = self.dropout.unwrap_or(tutorial.dropout);
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::config("--dropout", "must be in [0, 1)"));
        }
        Ok(Architecture {
            hidden,
            dropout,
            ..tutorial
        })
    }
}

pub fn run(args: SummaryArgs) -> Result<()> {
    let summary = match &args.model {
        Some(path) => summarize_file(path)?,
        None => ModelSummary::of_architecture(&args.architecture()?),
    };
    if args.json {
        print_json_line(&summary)
    } else {
        HumanOutput::new(false).print(&summary.to_text());
        Ok(())
    }
}
