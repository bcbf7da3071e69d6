//! `mnist-train export` and `mnist-train import`: converting between our model file and
//! safetensors (see `interop::safetensors` for the tensor mapping), and exporting to ONNX
//! (`interop::onnx`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::DatasetArg;
use crate::error::Result;
use crate::interop::{load_model, onnx, safetensors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Tensors named and laid out for PyTorch's nn.Sequential `load_state_dict`
    Safetensors,
    /// A standard ONNX graph (opset 13) for onnxruntime: input [N, 1, 28, 28] float32 scaled
    /// pixels (pixel / 255), outputs `probabilities` and `logits` [N, classes]
    Onnx,
}

impl ExportFormat {
    /// The format a file name asks for: `.onnx` → ONNX, anything else → safetensors.
    fn from_path(path: &std::path::Path) -> ExportFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("onnx") => ExportFormat::Onnx,
            _ => ExportFormat::Safetensors,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The model to export (our format or safetensors)
    #[arg(long, short, default_value = "weights.bin", value_name = "PATH")]
    pub model: PathBuf,
    /// The format to write [default: onnx for OUT ending in .onnx, else safetensors]
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
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
    let format = args
        .format
        .unwrap_or_else(|| ExportFormat::from_path(&args.out));
    let (model_path, out) = (args.model.display(), args.out.display());
    let layers = model.architecture.widths_label();
    match format {
        ExportFormat::Safetensors => {
            safetensors::export(&model, &args.out)?;
            println!(
                "Exported {model_path} ({}, layers {layers}) to {out} as safetensors; load it in PyTorch with\n  \
                 model = {}\n  \
                 model.load_state_dict(safetensors.torch.load_file({:?}))",
                model.dataset,
                safetensors::pytorch_module(&model.architecture),
                out.to_string()
            );
        }
        ExportFormat::Onnx => {
            onnx::export(&model, &args.out)?;
            println!(
                "Exported {model_path} ({}, layers {layers}) to {out} as ONNX (opset {}); run it with\n  \
                 session = onnxruntime.InferenceSession({:?})\n  \
                 probabilities, logits = session.run(None, {{\"{}\": pixels.reshape(-1, 1, 28, 28).astype(\"float32\") / 255}})",
                model.dataset,
                onnx::OPSET_VERSION,
                out.to_string(),
                onnx::INPUT_NAME,
            );
        }
    }
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
