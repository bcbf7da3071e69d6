//! The model file format, and the atomic write every saved file goes through.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "MNISTTRN"
//! 8       4     format version, u32 little-endian (currently 1)
//! 12      4     header length H, u32 little-endian
//! 16      H     header: UTF-8 JSON (kind, architecture, normalization, dataset, class names, tensors)
//! 16+H    4·N   tensor data: N little-endian f32, tensors in header order, row-major
//! end-4   4     CRC-32 (IEEE) of every preceding byte, u32 little-endian
//! ```
//! Checkpoints use the same container with `"kind": "checkpoint"` and extra tensors.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::nn::Architecture;
use crate::optim::privacy::PrivacyGuarantee;

pub const MAGIC: &[u8; 8] = b"MNISTTRN";
pub const FORMAT_VERSION: u32 = 1;
/// Fixed bytes before the header and after the data.
const PREAMBLE_LEN: usize = 16;
const CHECKSUM_LEN: usize = 4;
/// Far larger than any header we write; bounds what a corrupt length field can make us parse.
const MAX_HEADER_LEN: usize = 16 << 20;
/// Files larger than this are refused before reading (a 4096-wide MLP is ~70 MB).
pub const MAX_FILE_LEN: u64 = 4 << 30;

/// A tensor's name and shape, as listed in the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How pixels were turned into inputs: `input = pixel * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub scale: f32,
    pub offset: f32,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            scale: 1.0 / 255.0,
            offset: 0.0,
        }
    }
}

/// A trained model: its architecture, what data it expects, and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub architecture: Architecture,
    pub normalization: Normalization,
    /// The dataset it was trained on (decides which test set `eval` reads).
    pub dataset: DatasetKind,
    pub class_names: Vec<String>,
    /// The flat parameter buffer, laid out as [`Architecture::dense_layouts`] says.
    pub parameters: Vec<f32>,
    /// The (ε, δ) guarantee of a privately trained model; `None` otherwise (and in files written
    /// before private training existed).
    pub privacy: Option<PrivacyGuarantee>,
}

/// The model file's JSON header.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModelHeader {
    kind: String,
    architecture: Architecture,
    normalization: Normalization,
    dataset: DatasetKind,
    class_names: Vec<String>,
    tensors: Vec<TensorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    privacy: Option<PrivacyGuarantee>,
}

impl Model {
    /// A model of `dataset` (its class names, pixels scaled to [0, 1], no privacy guarantee).
    pub fn for_dataset(
        architecture: Architecture,
        dataset: DatasetKind,
        parameters: Vec<f32>,
    ) -> Model {
        Model {
            architecture,
            normalization: Normalization::default(),
            dataset,
            class_names: dataset.class_names(),
            parameters,
            privacy: None,
        }
    }

    /// Writes the model atomically: a crash never leaves a half-written or missing file.
    pub fn save(&self, path: &Path) -> Result<()> {
        // Never replace a good model with a diverged one.
        if !self.parameters.iter().all(|v| v.is_finite()) {
            return Err(Error::model(
                path,
                "refusing to save NaN or infinite weights (training diverged; try a smaller learning rate); the previous file is untouched",
            ));
        }
        write_atomic(path, &self.encode())
    }

    /// The file's bytes (header, tensors, checksum).
    pub fn encode(&self) -> Vec<u8> {
        let tensors = tensor_list(&self.architecture);
        let header = ModelHeader {
            kind: "model".to_string(),
            architecture: self.architecture.clone(),
            normalization: self.normalization,
            dataset: self.dataset,
            class_names: self.class_names.clone(),
            tensors,
            privacy: self.privacy.clone(),
        };
        let header = serde_json::to_vec(&header).expect("header serializes");
        encode_container(&header, &[&self.parameters])
    }

    /// Reads and verifies a model file (magic, version, checksum, shapes).
    pub fn load(path: &Path) -> Result<Model> {
        let bytes = read_bounded(path, "model")?;
        Model::decode(&bytes).map_err(|message| Error::model(path, message))
    }

    /// Parses and verifies model file bytes; the error is a message without the file name.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Model, String> {
        let (header, data) = decode_container(bytes)?;
        #[derive(Deserialize)]
        struct KindOnly {
            kind: String,
        }
        // Name the file type first: a checkpoint handed to `eval` says so, not "missing field".
        if let Ok(KindOnly { kind }) = serde_json::from_slice::<KindOnly>(&header) {
            if kind != "model" {
                return Err(format!("is a {kind} file, not a model"));
            }
        }
        let header: ModelHeader =
            serde_json::from_slice(&header).map_err(|e| format!("invalid model header: {e}"))?;
        validate_architecture(Path::new(""), &header.architecture).map_err(|e| match e {
            Error::Model { message, .. } => message,
            other => other.to_string(),
        })?;
        if header.tensors != tensor_list(&header.architecture) {
            return Err("tensor list does not match the architecture".to_string());
        }
        if data.len() != header.architecture.parameter_count() {
            return Err(format!(
                "holds {} parameters but the architecture needs {}",
                data.len(),
                header.architecture.parameter_count()
            ));
        }
        if header.class_names.len() != header.architecture.outputs {
            return Err("number of class names does not match the output layer".to_string());
        }
        if !data.iter().all(|v| v.is_finite()) {
            return Err("contains NaN or infinite weights".to_string());
        }
        Ok(Model {
            architecture: header.architecture,
            normalization: header.normalization,
            dataset: header.dataset,
            class_names: header.class_names,
            parameters: data,
            privacy: header.privacy,
        })
    }
}

/// The tensors a model file of `architecture` lists, in data-section order.
fn tensor_list(architecture: &Architecture) -> Vec<TensorInfo> {
    architecture
        .tensor_names()
        .into_iter()
        .map(|(name, shape, _)| TensorInfo { name, shape })
        .collect()
}

/// Checks an architecture read from a file before anything is sized by it.
pub fn validate_architecture(path: &Path, architecture: &Architecture) -> Result<()> {
    let widths = architecture.widths();
    if widths.iter().any(|&w| w == 0 || w > 1 << 16) {
        return Err(Error::model(
            path,
            "layer widths must be between 1 and 65536",
        ));
    }
    if architecture.hidden.len() > 64 {
        return Err(Error::model(path, "more than 64 hidden layers"));
    }
    if architecture.activation != "relu" {
        return Err(Error::model(
            path,
            format!("unknown activation {:?}", architecture.activation),
        ));
    }
    if !(0.0..1.0).contains(&architecture.dropout) {
        return Err(Error::model(path, "dropout rate must be in [0, 1)"));
    }
    if let Some(Err(message)) = architecture.sequential() {
        return Err(Error::model(path, message));
    }
    Ok(())
}

/// Serializes a header and tensors into the container layout described at the top of this file.
pub fn encode_container(header: &[u8], tensors: &[&[f32]]) -> Vec<u8> {
    let data_len: usize = tensors.iter().map(|t| t.len() * 4).sum();
    let mut bytes = Vec::with_capacity(PREAMBLE_LEN + header.len() + data_len + CHECKSUM_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(header);
    for tensor in tensors {
        for value in tensor.iter() {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Reads a container file and returns its JSON header bytes and all its f32 data.
pub fn read_container(path: &Path) -> Result<(Vec<u8>, Vec<f32>)> {
    let bytes = read_bounded(path, "model")?;
    decode_container(&bytes).map_err(|message| Error::model(path, message))
}

/// Reads a whole `what` ("model", "checkpoint") file, refusing folders and absurd sizes first.
pub fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if metadata.is_dir() {
        return Err(Error::model(
            path,
            format!("is a directory, expected a {what} file"),
        ));
    }
    if metadata.len() > MAX_FILE_LEN {
        return Err(Error::model(
            path,
            format!("is too large to be a {what} file"),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Parses the container layout; the error is a message without the file name.
pub fn decode_container(bytes: &[u8]) -> std::result::Result<(Vec<u8>, Vec<f32>), String> {
    if bytes.is_empty() {
        return Err("is empty, expected a model file".to_string());
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("is not an mnist-train model file (wrong magic bytes)".to_string());
    }
    if bytes.len() < PREAMBLE_LEN + CHECKSUM_LEN {
        return Err("is truncated (shorter than the fixed header)".to_string());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        let relation = if version > FORMAT_VERSION {
            "a newer"
        } else {
            "an older"
        };
        return Err(format!(
            "has format version {version}, {relation} format than this program reads (version {FORMAT_VERSION})"
        ));
    }
    let body_len = bytes.len() - CHECKSUM_LEN;
    let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..body_len]) != stored {
        return Err("checksum mismatch: the file is corrupt or truncated".to_string());
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    if header_len > MAX_HEADER_LEN || PREAMBLE_LEN + header_len > body_len {
        return Err("header length field is out of range".to_string());
    }
    let header = bytes[PREAMBLE_LEN..PREAMBLE_LEN + header_len].to_vec();
    let data = &bytes[PREAMBLE_LEN + header_len..body_len];
    if !data.len().is_multiple_of(4) {
        return Err("tensor data is not a whole number of f32 values".to_string());
    }
    let values = data
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect();
    Ok((header, values))
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one:
/// write a temporary file in the same folder, fsync it, rename it over `path`, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::model(path, "is not a file path"))?;
    let temp_path = directory.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = File::create(&temp_path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp_path, path)?;
        // Make the rename itself durable.
        if let Ok(dir) = File::open(&directory) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temp_path);
        let message = if path.exists() {
            format!("could not write it ({error}); the previous version is untouched")
        } else {
            format!("could not write it ({error})")
        };
        return Err(Error::io(path, std::io::Error::new(error.kind(), message)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_model() -> Model {
        let architecture = Architecture {
            inputs: 4,
            hidden: vec![3],
            outputs: 2,
            ..Architecture::tutorial()
        };
        let parameters = (0..architecture.parameter_count())
            .map(|i| i as f32 * 0.25 - 1.0)
            .collect();
        Model {
            architecture,
            normalization: Normalization::default(),
            dataset: DatasetKind::Mnist,
            class_names: vec!["zero".into(), "one".into()],
            parameters,
            privacy: None,
        }
    }

    #[test]
    fn an_unknown_dataset_name_is_refused_not_read_as_mnist() {
        let (header, data) = decode_container(&sample_model().encode()).unwrap();
        let header = String::from_utf8(header)
            .unwrap()
            .replace(r#""dataset":"mnist""#, r#""dataset":"kmnist""#);
        assert!(header.contains("kmnist"), "the test edits the header");
        let bytes = encode_container(header.as_bytes(), &[&data]);
        let message = Model::decode(&bytes).unwrap_err();
        assert!(message.contains(r#"unknown dataset "kmnist""#), "{message}");
    }

    /// `sample_model()` saved in a new temporary folder: (the folder, the file, the model).
    fn saved_sample() -> (tempfile::TempDir, PathBuf, Model) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        let model = sample_model();
        model.save(&path).unwrap();
        (dir, path, model)
    }

    #[test]
    fn save_then_load_round_trips_exactly() {
        let (dir, path, model) = saved_sample();
        assert_eq!(Model::load(&path).unwrap(), model);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let (dir, path, _) = saved_sample();
        let original = std::fs::read(&path).unwrap();
        let corrupt_path = dir.path().join("corrupt.bin");
        for index in 0..original.len() {
            let mut bytes = original.clone();
            bytes[index] ^= 0x10;
            std::fs::write(&corrupt_path, &bytes).unwrap();
            let error = Model::load(&corrupt_path).unwrap_err().to_string();
            assert!(error.contains("corrupt.bin"), "byte {index}: {error}");
        }
    }

    #[test]
    fn truncated_files_are_rejected_with_a_clear_message() {
        let (_dir, path, _) = saved_sample();
        let original = std::fs::read(&path).unwrap();
        for length in [0, 5, 8, 15, 20, original.len() / 2, original.len() - 1] {
            std::fs::write(&path, &original[..length]).unwrap();
            let error = Model::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("empty")
                    || error.contains("truncated")
                    || error.contains("checksum")
                    || error.contains("magic"),
                "length {length}: {error}"
            );
        }
    }

    #[test]
    fn other_format_versions_are_named() {
        let mut bytes = encode_container(b"{}", &[]);
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        let body = bytes.len() - 4;
        let checksum = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
        let error = decode_container(&bytes).unwrap_err();
        assert!(
            error.contains("format version 7, a newer format"),
            "{error}"
        );
    }

    #[test]
    fn failed_save_leaves_the_previous_model_untouched() {
        let (_dir, path, model) = saved_sample();
        let before = std::fs::read(&path).unwrap();
        // A path whose parent is a regular file cannot be created, even by root.
        let impossible = path.join("nested.bin");
        assert!(model.save(&impossible).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
