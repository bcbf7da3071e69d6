//! `mnist-train summary`: Keras' `model.summary()` table (layer, output shape, parameters, totals)
//! built from the layer list, and what the model file says about itself.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::interop::{detect_model_file, safetensors, ModelFileKind};
use crate::model_file::{decode_container, read_bounded, Model, Normalization};
use crate::nn::layers::{input_shape, layer_list, Layer};
use crate::nn::Architecture;
use crate::optim::privacy::PrivacyGuarantee;

/// Bytes per parameter (f32).
const PARAMETER_BYTES: usize = 4;
/// Header keys every model file has; any other key (e.g. a privacy guarantee, training options)
/// is shown as recorded metadata.
const STANDARD_HEADER_KEYS: [&str; 6] = [
    "kind",
    "architecture",
    "normalization",
    "dataset",
    "class_names",
    "tensors",
];

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRow {
    /// Position in the Sequential (PyTorch's module index; the safetensors/ONNX key prefix).
    pub index: usize,
    /// Keras-style name: the type in lower case, numbered from the second of a type on (`linear_1`).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Without the batch dimension (Keras shows it as `None`).
    pub output_shape: Vec<usize>,
    pub parameters: usize,
}

/// The file a summary was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    pub path: String,
    /// `mnist-train` (our container) or `safetensors`.
    pub format: String,
    /// Our container's format version; `None` for safetensors.
    pub format_version: Option<u32>,
    pub bytes: u64,
    /// The checksum stored in the file (CRC-32 of everything before it), as 8 hex digits; for
    /// safetensors, which stores none, the CRC-32 of the whole file.
    pub checksum: String,
    /// Whether the stored checksum matches the contents (always true for a file that loaded).
    pub checksum_verified: bool,
    /// Header fields beyond the standard ones (privacy guarantee, training options, …).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Everything `summary` reports, also its `--json` line (`"type": "model_summary"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `[1, 28, 28]` for MNIST images.
    pub input_shape: Vec<usize>,
    pub layers: Vec<LayerRow>,
    pub total_parameters: usize,
    pub trainable_parameters: usize,
    pub non_trainable_parameters: usize,
    pub parameter_bytes: usize,
    pub architecture: Architecture,
    pub dataset: Option<String>,
    pub class_names: Option<Vec<String>>,
    pub normalization: Option<Normalization>,
    pub file: Option<FileInfo>,
}

impl ModelSummary {
    /// The summary of an architecture alone (no trained model).
    pub fn of_architecture(architecture: &Architecture) -> ModelSummary {
        let layers = layer_list(architecture);
        let mut seen: Vec<&str> = Vec::new();
        let rows: Vec<LayerRow> = layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                let kind = layer.type_name();
                let earlier = seen.iter().filter(|&&k| k == kind).count();
                seen.push(kind);
                let base = kind.to_lowercase();
                LayerRow {
                    index,
                    name: if earlier == 0 {
                        base
                    } else {
                        format!("{base}_{earlier}")
                    },
                    kind: kind.to_string(),
                    output_shape: layer.output_shape.clone(),
                    parameters: layer.parameter_count(),
                }
            })
            .collect();
        let total: usize = layers.iter().map(Layer::parameter_count).sum();
        ModelSummary {
            kind: "model_summary",
            input_shape: input_shape(architecture),
            layers: rows,
            total_parameters: total,
            trainable_parameters: total,
            non_trainable_parameters: 0,
            parameter_bytes: total * PARAMETER_BYTES,
            architecture: architecture.clone(),
            dataset: None,
            class_names: None,
            normalization: None,
            file: None,
        }
    }

    /// The summary of a loaded model and the file it came from.
    pub fn of_model(model: &Model, file: FileInfo) -> ModelSummary {
        ModelSummary {
            dataset: Some(model.dataset.name().to_string()),
            class_names: Some(model.class_names.clone()),
            normalization: Some(model.normalization),
            file: Some(file),
            ..ModelSummary::of_architecture(&model.architecture)
        }
    }

    /// The Keras-style table and, for a file, its metadata.
    pub fn to_text(&self) -> String {
        let (name_width, shape_width, params_width) = (34, 22, 13);
        let width = name_width + shape_width + params_width + 1;
        let mut text = format!(
            "Model: \"sequential\" ({}, input (None, {}))\n",
            self.architecture.widths_label(),
            join(&self.input_shape)
        );
        let rule = |c: char| c.to_string().repeat(width) + "\n";
        text.push_str(&rule('_'));
        text.push_str(&format!(
            " {:<name_width$}{:<shape_width$}{:>params_width$}\n",
            "Layer (type)", "Output Shape", "Param #"
        ));
        text.push_str(&rule('='));
        for row in &self.layers {
            let label = format!("{} {} ({})", row.index, row.name, row.kind);
            let shape = format!("(None, {})", join(&row.output_shape));
            text.push_str(&format!(
                " {label:<name_width$}{shape:<shape_width$}{:>params_width$}\n",
                thousands(row.parameters)
            ));
        }
        text.push_str(&rule('='));
        for (label, count) in [
            ("Total params", self.total_parameters),
            ("Trainable params", self.trainable_parameters),
            ("Non-trainable params", self.non_trainable_parameters),
        ] {
            text.push_str(&format!(
                "{label}: {} ({})\n",
                thousands(count),
                readable_size(count * PARAMETER_BYTES)
            ));
        }
        text.push_str(&rule('_'));
        if let Some(dataset) = &self.dataset {
            text.push_str(&format!("Dataset: {dataset}\n"));
        }
        if let Some(classes) = &self.class_names {
            text.push_str(&format!("Classes: {}\n", classes.join(", ")));
        }
        if let Some(normalization) = &self.normalization {
            text.push_str(&format!(
                "Input scaling: pixel * {} + {} (pixel / 255 by default)\n",
                normalization.scale, normalization.offset
            ));
        }
        if let Some(file) = &self.file {
            let version = file
                .format_version
                .map_or(String::new(), |v| format!(" version {v}"));
            text.push_str(&format!(
                "File: {} ({} format{version}, {} bytes)\n",
                file.path,
                file.format,
                thousands(file.bytes as usize)
            ));
            let verified = if file.checksum_verified {
                "verified"
            } else {
                "MISMATCH"
            };
            let checksum_kind = if file.format_version.is_some() {
                format!("stored CRC-32 {verified}")
            } else {
                "CRC-32 of the file; safetensors stores none".to_string()
            };
            text.push_str(&format!("Checksum: {} ({checksum_kind})\n", file.checksum));
            for (key, value) in &file.metadata {
                let guarantee = serde_json::from_value::<PrivacyGuarantee>(value.clone());
                match guarantee {
                    Ok(guarantee) if key == "privacy" => {
                        text.push_str(&format!("Privacy guarantee: {}\n", guarantee.describe()))
                    }
                    _ => text.push_str(&format!("{}: {value}\n", title_case(key))),
                }
            }
            if file.metadata.is_empty() {
                text.push_str("Training options, privacy guarantee: not recorded in this file\n");
            }
        }
        text
    }
}

/// Reads the model file at `path` (ours or safetensors) and summarizes it with its file details.
pub fn summarize_file(path: &Path) -> Result<ModelSummary> {
    let bytes = read_bounded(path, "model")?;
    let (model, format_version, checksum, metadata) = match detect_model_file(path) {
        ModelFileKind::Native => {
            let model = Model::decode(&bytes).map_err(|message| Error::model(path, message))?;
            let (header, _) =
                decode_container(&bytes).map_err(|message| Error::model(path, message))?;
            // decode verified the trailer; these slices exist in any file that decoded.
            let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
            let stored =
                u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap_or_default());
            (model, Some(version), stored, extra_header_fields(&header))
        }
        ModelFileKind::Safetensors => {
            let model = safetensors::import_bytes(&bytes, None)
                .map_err(|message| Error::model(path, message))?;
            (model, None, crc32fast::hash(&bytes), serde_json::Map::new())
        }
    };
    let file = FileInfo {
        path: path.display().to_string(),
        format: if format_version.is_some() {
            "mnist-train"
        } else {
            "safetensors"
        }
        .to_string(),
        format_version,
        bytes: bytes.len() as u64,
        checksum: format!("{checksum:08x}"),
        checksum_verified: true,
        metadata,
    };
    Ok(ModelSummary::of_model(&model, file))
}

/// The header fields of a model file beyond the standard ones.
pub fn extra_header_fields(header: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice::<serde_json::Value>(header) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.retain(|key, value| {
                !STANDARD_HEADER_KEYS.contains(&key.as_str()) && !value.is_null()
            });
            fields
        }
        _ => serde_json::Map::new(),
    }
}

fn join(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `101770` → `101,770`.
pub fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Keras' `readable_memory_size`: 1024-based units with two decimals (`397.54 KB`).
pub fn readable_size(bytes: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.2} {}", units[unit])
}

/// `privacy` → `Privacy`, `training_options` → `Training options`.
fn title_case(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tutorial_network_has_101_770_parameters() {
        let summary = ModelSummary::of_architecture(&Architecture::tutorial());
        // 784·128 + 128 + 128·10 + 10, by hand.
        assert_eq!(summary.total_parameters, 101_770);
        assert_eq!(summary.trainable_parameters, 101_770);
        let text = summary.to_text();
        assert!(text.contains("Total params: 101,770 (397.54 KB)"), "{text}");
        assert!(text.contains("Non-trainable params: 0 (0.00 B)"), "{text}");
        assert!(text.contains("1 linear (Linear)"), "{text}");
        assert!(text.contains("4 linear_1 (Linear)"), "{text}");
        assert!(text.contains("(None, 128)"), "{text}");
    }

    #[test]
    fn numbers_are_grouped_and_sizes_use_1024() {
        for (count, grouped) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(count), grouped);
        }
        for (bytes, size) in [(1023, "1023.00 B"), (1536, "1.50 KB"), (3 << 20, "3.00 MB")] {
            assert_eq!(readable_size(bytes), size);
        }
    }

    #[test]
    fn only_unknown_header_fields_count_as_metadata() {
        let header =
            br#"{"kind":"model","dataset":"mnist","privacy":{"epsilon":1.5},"extra":null}"#;
        let fields = extra_header_fields(header);
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["privacy"]);
    }
}
