//! Model files from and for other tools: safetensors export/import (loadable by PyTorch), ONNX
//! export (for onnxruntime and other deployment runtimes), and
//! [`load_model`], which every command's `--model` goes through so that either our own model file
//! or a safetensors file is accepted, told apart by content rather than by name.

pub mod onnx;
pub mod safetensors;

use std::io::Read;
use std::path::Path;

use crate::error::Result;
use crate::model_file::{Model, MAGIC};

/// What kind of model file `path` holds, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFileKind {
    /// Our own container ("MNISTTRN" magic) — also assumed for anything unrecognized, so that
    /// [`Model::load`] reports exactly what is wrong with it.
    Native,
    /// A safetensors file: a little-endian u64 header length that fits the file, then a JSON object.
    Safetensors,
}

/// Sniffs the first bytes of `path`; unreadable or unknown files count as [`ModelFileKind::Native`].
pub fn detect_model_file(path: &Path) -> ModelFileKind {
    let sniff = || -> std::io::Result<ModelFileKind> {
        let length = std::fs::metadata(path)?.len();
        let mut start = [0u8; 9];
        std::fs::File::open(path)?.read_exact(&mut start)?;
        let header_len = u64::from_le_bytes(start[..8].try_into().expect("8 bytes"));
        let is_safetensors = &start[..MAGIC.len()] != MAGIC
            && start[8] == b'{'
            && header_len >= 2
            && header_len <= length.saturating_sub(8);
        Ok(if is_safetensors {
            ModelFileKind::Safetensors
        } else {
            ModelFileKind::Native
        })
    };
    sniff().unwrap_or(ModelFileKind::Native)
}

/// Loads a model from our own format or from safetensors, whichever the file holds.
pub fn load_model(path: &Path) -> Result<Model> {
    match detect_model_file(path) {
        ModelFileKind::Native => Model::load(path),
        ModelFileKind::Safetensors => safetensors::import(path, None),
    }
}

/// A dense layer's weights in PyTorch's `nn.Linear` layout: ours are `[inputs, outputs]`
/// row-major (`x · W`), PyTorch's and ONNX Gemm's (transB = 1) are `[outputs, inputs]`.
/// weights: [inputs, outputs] -> [outputs, inputs]
pub fn pytorch_weight(weights: &[f32], inputs: usize, outputs: usize) -> Vec<f32> {
    let mut transposed = Vec::with_capacity(weights.len());
    for output in 0..outputs {
        for input in 0..inputs {
            transposed.push(weights[input * outputs + output]);
        }
    }
    transposed
}

/// The tutorial MLP with `hidden` layers, initialized from `seed`, as a model of `dataset`: the
/// exporters' test subject.
#[cfg(test)]
pub(crate) fn test_model(
    hidden: Vec<usize>,
    seed: u64,
    dataset: crate::data::DatasetKind,
) -> Model {
    let architecture = crate::nn::Architecture {
        hidden,
        ..crate::nn::Architecture::tutorial()
    };
    let parameters = crate::nn::Mlp::new(architecture.clone()).initial_parameters(seed);
    Model::for_dataset(architecture, dataset, parameters)
}
