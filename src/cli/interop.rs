//! `mnist-train export` and `mnist-train import`: converting between our model file and
//! safetensors (see `interop::safetensors` for the tensor mapping).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::DatasetArg;
use crate::error::Result;
use crate::interop::{load_model, safetensors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Tensors named and laid out for PyTorch's nn.Sequential `load_state_dict`
    Safetensors,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The model to export (our format or safetensors)
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub model: PathBuf,
    /// The format to write
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    pub format: ExportFormat,
    /// Where to write the exported model
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The safetensors file to import
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Where to write the model in mnist-train's format
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub output: PathBuf,
    /// Which dataset the weights are for, when the file does not say (e.g. saved by PyTorch)
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetArg>,
}

pub fn run_export(args: ExportArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    match args.format {
        ExportFormat::Safetensors => safetensors::export(&model, &args.out)?,
    }
    println!(
        "Exported {} ({}, layers {}) to {} as safetensors; load it in PyTorch with\n  \
         model = {}\n  \
         model.load_state_dict(safetensors.torch.load_file({:?}))",
        args.model.display(),
        model.dataset,
        model.architecture.widths_label(),
        args.out.display(),
        safetensors::pytorch_module(&model.architecture),
        args.out.display().to_string()
    );
    if let Some(privacy) = &model.privacy {
        println!(
            "Privacy guarantee (kept in the file's metadata): {}",
            privacy.describe()
        );
    }
    Ok(())
}

pub fn run_import(args: ImportArgs) -> Result<()> {
    let model = safetensors::import(&args.input, args.dataset.map(Into::into))?;
    model.save(&args.output)?;
    println!(
        "Imported {} ({}, layers {}) to {}",
        args.input.display(),
        model.dataset,
        model.architecture.widths_label(),
        args.output.display()
    );
    Ok(())
}
