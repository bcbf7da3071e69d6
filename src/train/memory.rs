//! How much memory a run will need, worked out before allocating it, and how much the machine
//! can give. Layer widths and batch sizes come from the user; a run that cannot fit is refused up
//! front instead of aborting on a failed allocation or driving the machine into swap.
//!
//! The estimate uses the formulas the allocators use ([`Mlp::workspace_layout`],
//! [`shard_buffers`], [`evaluation_rows`], [`OptimizerConfig::slot_count`]), so it cannot drift
//! from what is really allocated.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::nn::Mlp;
use crate::optim::OptimizerConfig;
use crate::train::evaluate::evaluation_rows;
use crate::train::shards::{poisson_shard_capacity, shard_buffers, MAX_SHARDS};

const F32_BYTES: u64 = std::mem::size_of::<f32>() as u64;

/// What a training run will allocate, as far as the options decide it.
#[derive(Debug, Clone)]
pub struct TrainingShape<'a> {
    pub mlp: &'a Mlp,
    pub optimizer: OptimizerConfig,
    /// Rows per optimization step as the trainer resolves them; before the training set is read,
    /// the batch size asked for (`usize::MAX` for the full set: the step buffers are capped anyway).
    pub batch_rows: usize,
    /// The evaluation batch size asked for and the most examples evaluated at once (test or
    /// validation set); `None` before the data is read.
    pub evaluation: Option<(usize, usize)>,
    /// Early stopping's restore-best keeps a second copy of the parameters.
    pub keeps_best_weights: bool,
    /// Private training (DP-SGD): Poisson-sampled batches may need every shard, and each step
    /// draws a parameter-sized noise buffer.
    pub private: bool,
}

/// Bytes a run needs, by what they are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The parameters, plus the best epoch's copy when restoring the best weights.
    pub parameters: u64,
    /// The optimizer's per-parameter state (Adam's moments, momentum's velocity).
    pub optimizer_state: u64,
    /// One parameter-sized gradient buffer per shard of a step (and private training's noise).
    pub gradients: u64,
    /// One activation/gradient workspace per shard of a step (each thread works on a shard).
    pub workspaces: u64,
    /// Evaluation's workspace and its per-example indices and predictions.
    pub evaluation: u64,
    /// Writing a checkpoint: a snapshot of parameters and state, its encoding, and the read-back
    /// check, alive together.
    pub saving: u64,
}

/// One of the uses counted in a [`MemoryEstimate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUse {
    Parameters,
    OptimizerState,
    Gradients,
    Workspaces,
    Evaluation,
    Saving,
}

impl MemoryUse {
    pub fn label(self) -> &'static str {
        match self {
            MemoryUse::Parameters => "parameters",
            MemoryUse::OptimizerState => "optimizer state",
            MemoryUse::Gradients => "gradients",
            MemoryUse::Workspaces => "step workspaces",
            MemoryUse::Evaluation => "evaluation buffers",
            MemoryUse::Saving => "checkpoint writing",
        }
    }
}

impl MemoryEstimate {
    /// What training (and the evaluations during and after it) will allocate.
    pub fn training(shape: &TrainingShape) -> MemoryEstimate {
        let parameter_bytes = (shape.mlp.parameter_count() as u64).saturating_mul(F32_BYTES);
        let copies = |count: u64| parameter_bytes.saturating_mul(count);
        let slots = shape.optimizer.slot_count() as u64;
        let best_copy = u64::from(shape.keeps_best_weights);
        let (shards, capacity) = shard_buffers(shape.batch_rows);
        let (shard_count, capacity) = if shape.private {
            (MAX_SHARDS, poisson_shard_capacity(shape.batch_rows))
        } else {
            (shards, capacity)
        };
        let noise = u64::from(shape.private);
        let workspace = shape.mlp.workspace_layout(capacity).bytes();
        let evaluation = shape.evaluation.map_or(0, |(batch_size, examples)| {
            MemoryEstimate::evaluation(shape.mlp, batch_size, examples).evaluation
        });
        MemoryEstimate {
            parameters: copies(1 + best_copy),
            optimizer_state: copies(slots),
            gradients: copies(shard_count as u64 + noise),
            workspaces: workspace.saturating_mul(shard_count as u64),
            evaluation,
            saving: copies(3u64.saturating_mul(1 + slots + best_copy)),
        }
    }

    /// What evaluating `examples` examples `batch_size` at a time allocates besides the model.
    pub fn evaluation(mlp: &Mlp, batch_size: usize, examples: usize) -> MemoryEstimate {
        let rows = evaluation_rows(batch_size, examples);
        // A u32 index and a u8 prediction per example.
        let per_example = (examples as u64).saturating_mul(5);
        MemoryEstimate {
            evaluation: mlp
                .workspace_layout(rows)
                .bytes()
                .saturating_add(per_example),
            ..MemoryEstimate::default()
        }
    }

    /// Every use with its bytes, in a fixed order.
    pub fn parts(&self) -> [(MemoryUse, u64); 6] {
        [
            (MemoryUse::Parameters, self.parameters),
            (MemoryUse::OptimizerState, self.optimizer_state),
            (MemoryUse::Gradients, self.gradients),
            (MemoryUse::Workspaces, self.workspaces),
            (MemoryUse::Evaluation, self.evaluation),
            (MemoryUse::Saving, self.saving),
        ]
    }

    pub fn total(&self) -> u64 {
        self.parts()
            .iter()
            .fold(0u64, |sum, &(_, bytes)| sum.saturating_add(bytes))
    }

    /// The use needing the most memory (the first of equals).
    pub fn largest(&self) -> MemoryUse {
        self.parts()
            .iter()
            .fold((MemoryUse::Parameters, 0), |best, &(usage, bytes)| {
                if bytes > best.1 {
                    (usage, bytes)
                } else {
                    best
                }
            })
            .0
    }

    /// Ok when the estimate fits in `available` bytes (`limited`: a limit the user set rather
    /// than what the system reports).
    pub fn check(self, available: u64, limited: bool) -> Result<(), MemoryShortfall> {
        if self.total() <= available {
            Ok(())
        } else {
            Err(MemoryShortfall {
                estimate: self,
                available,
                limited,
            })
        }
    }
}

/// A run that needs more memory than is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryShortfall {
    pub estimate: MemoryEstimate,
    pub available: u64,
    /// `available` is a limit that was set, not what the system reports.
    pub limited: bool,
}

impl fmt::Display for MemoryShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .estimate
            .parts()
            .iter()
            .filter(|(_, bytes)| *bytes > 0)
            .map(|(usage, bytes)| format!("{} {}", usage.label(), format_bytes(*bytes)))
            .collect();
        write!(
            f,
            "the run would need about {} of memory ({}), more than the {} {}",
            format_bytes(self.estimate.total()),
            parts.join(", "),
            format_bytes(self.available),
            if self.limited {
                "allowed by the memory limit"
            } else {
                "available"
            }
        )
    }
}

/// `bytes` for people, in binary units: `512 B`, `1.5 KiB`, `80.2 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Parses a memory size: a number of bytes, optionally with a binary unit suffix K, M, G or T
/// (`KiB`, `MB` … are accepted too, all meaning powers of 1024): `512M`, `1.5G`, `2147483648`.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} (use K, M, G or T)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 512M or 2G, got {text:?}"))?;
    let bytes = value * multiplier as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is not a usable memory size"));
    }
    Ok(bytes as u64)
}

/// Memory this process can still get: the kernel's `MemAvailable`, capped by the memory limit of
/// the process's control group (v1 or v2) minus its usage. `None` where neither is known (not
/// Linux): then nothing is refused.
pub fn available_memory() -> Option<u64> {
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_available(&text));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_headroom(&text, Path::new("/sys/fs/cgroup")));
    match (system, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The smallest (limit − usage) over the process's memory control groups and their ancestors,
/// given `/proc/self/cgroup` and where the cgroup file systems are mounted.
fn cgroup_headroom(proc_self_cgroup: &str, root: &Path) -> Option<u64> {
    let mut headroom: Option<u64> = None;
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // v2 (unified): "0::/path", files memory.max / memory.current. v1: "N:memory:/path".
        let candidates: Vec<(PathBuf, &str, &str)> = if controllers.is_empty() {
            [root.to_path_buf(), root.join("unified")]
                .into_iter()
                .map(|base| (base, "memory.max", "memory.current"))
                .collect()
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![(
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )]
        } else {
            continue;
        };
        for (base, limit_file, usage_file) in candidates {
            let mut dir = base.join(path.trim_start_matches('/'));
            loop {
                if let Some(room) = group_headroom(&dir, limit_file, usage_file) {
                    headroom = Some(headroom.map_or(room, |h| h.min(room)));
                }
                if dir == base || !dir.pop() {
                    break;
                }
            }
        }
    }
    headroom
}

/// limit − usage of one control group folder; `None` when unlimited or unreadable.
fn group_headroom(dir: &Path, limit_file: &str, usage_file: &str) -> Option<u64> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    // v2 writes "max" for no limit (which does not parse); v1 a huge page-rounded number.
    let limit = read(limit_file)?;
    if limit >= 1 << 60 {
        return None;
    }
    Some(limit.saturating_sub(read(usage_file).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;
    use crate::train::shards::CHUNK_ROWS;

    fn mlp(hidden: &[usize]) -> Mlp {
        Mlp::new(Architecture {
            hidden: hidden.to_vec(),
            ..Architecture::tutorial()
        })
    }

    fn adam() -> OptimizerConfig {
        OptimizerConfig::adam_default()
    }

    #[test]
    fn tutorial_network_estimate_counts_every_buffer_by_hand() {
        let network = mlp(&[128]);
        let estimate = MemoryEstimate::training(&TrainingShape {
            mlp: &network,
            optimizer: adam(),
            batch_rows: 32,
            evaluation: Some((1000, 10_000)),
            keeps_best_weights: false,
            private: false,
        });
        // 784·128 + 128 + 128·10 + 10 parameters, 4 bytes each.
        let parameters = 101_770 * 4;
        assert_eq!(estimate.parameters, parameters);
        assert_eq!(estimate.optimizer_state, 2 * parameters);
        // A batch of 32 is split into 2 shards of 16 rows.
        assert_eq!(estimate.gradients, 2 * parameters);
        // Per row: 784 inputs, 128 + 10 activations, 128 mask, 2 × 128 gradients, 128 + 10
        // output gradients kept for private training and 1 clip factor (f32), 1 label.
        let per_row = (784 + 138 + 128 + 2 * 128 + 138 + 1) * 4 + 1;
        // Each 16-row shard's index of its nonzero pixels: 17 row starts, 784 column counts,
        // (column, value) by row with 8 entries of slack, (row, value) by column.
        let index = (17 + 784 + 2 * (16 * 784 + 8) + 2 * 16 * 784) * 4;
        assert_eq!(estimate.workspaces, 2 * (16 * per_row + index));
        assert_eq!(estimate.evaluation, 1000 * per_row + 10_000 * 5);
        assert_eq!(estimate.saving, 3 * 3 * parameters);
        assert_eq!(
            estimate.total(),
            parameters * (1 + 2 + 2 + 9) + 32 * per_row + 2 * index + 1000 * per_row + 50_000
        );
    }

    #[test]
    fn a_cnn_estimate_counts_the_workspaces_it_allocates() {
        // The estimate's workspaces are the bytes the allocator really hands out (convolution
        // buffers, every layer's outputs, masks, gradient scratch), for every shard.
        let network = Mlp::new(Architecture::cnn());
        for batch_rows in [1, 7, 16, 32, 64, 128, 1000, usize::MAX] {
            let estimate = MemoryEstimate::training(&TrainingShape {
                mlp: &network,
                optimizer: adam(),
                batch_rows,
                evaluation: Some((1000, 10_000)),
                keeps_best_weights: false,
                private: false,
            });
            let (shards, capacity) = shard_buffers(batch_rows);
            let allocated = network.workspace(capacity).allocated_bytes();
            assert_eq!(
                network.workspace_layout(capacity).bytes(),
                allocated,
                "batch {batch_rows}"
            );
            assert_eq!(
                estimate.workspaces,
                shards as u64 * allocated,
                "batch {batch_rows}"
            );
            let evaluation = network.workspace(1000).allocated_bytes();
            assert_eq!(estimate.evaluation, evaluation + 10_000 * 5);
        }
        // By hand, one shard of 16 rows, run in passes of 8 (ROWS_PER_PASS). Per row of the
        // shard: the input 784 and a label byte, the logits 10, private training's norm 1. Per
        // row of a pass: conv1's output 26·26·32 and patches 26·26·9; pool1 13·13·32; conv2's
        // output 11·11·64; pool2 5·5·64; the dropout mask 1600; dense 10; two gradient buffers
        // of the largest layer (26·26·32); private training's unscaled logit gradients 10 and
        // clip factor 1. Per pass, conv2's Winograd buffers (transformed weights, then input
        // tiles and products: 36 tiles of 16 positions per image), twice (forward's and
        // backward's scratch).
        assert_eq!(crate::nn::sequential::ROWS_PER_PASS, 8);
        let conv1 = 26 * 26 * 32;
        let per_pass_row = conv1
            + 26 * 26 * 9
            + 13 * 13 * 32
            + 11 * 11 * 64
            + 1600
            + 1600
            + 10
            + 2 * conv1
            + 10
            + 1;
        let winograd = 16 * 32 * 64 + 8 * 36 * 16 * (32 + 64);
        // Private training's scratch for one example's conv2 gradient: weights and biases, and
        // its transformed output gradient and weight gradient.
        let norm_scratch = 3 * 3 * 32 * 64 + 64 + 36 * 16 * 64 + 16 * 32 * 64;
        let layout = network.workspace_layout(16);
        assert_eq!(
            layout.bytes(),
            16 * ((784 + 10 + 1) * 4 + 1) + 4 * (8 * per_pass_row + 2 * winograd + norm_scratch)
        );
        // Nearly 7 MB per shard; the MLP-sized layout the estimate used before counted 53 KB.
        assert!(layout.bytes() > 6_000_000, "{}", layout.bytes());
    }

    #[test]
    fn huge_batches_are_capped_by_the_step_chunks_and_the_dataset() {
        let network = mlp(&[128]);
        let shape = |batch_rows, evaluation| TrainingShape {
            mlp: &network,
            optimizer: OptimizerConfig::Sgd,
            batch_rows,
            evaluation,
            keeps_best_weights: true,
            private: false,
        };
        let full = MemoryEstimate::training(&shape(usize::MAX, Some((usize::MAX, 500))));
        let per_row = (784 + 138 + 128 + 2 * 128 + 138 + 1) * 4 + 1;
        assert_eq!(full.workspaces, 8 * CHUNK_ROWS as u64 * per_row);
        assert_eq!(full.evaluation, 500 * per_row + 500 * 5);
        assert_eq!(full.optimizer_state, 0);
        assert_eq!(
            full.parameters,
            2 * 101_770 * 4,
            "with the best-weights copy"
        );
        let before_data = MemoryEstimate::training(&shape(64, None));
        assert_eq!(before_data.evaluation, 0);
        // Private training: every shard may be needed, plus the noise buffer.
        let private = MemoryEstimate::training(&TrainingShape {
            private: true,
            ..shape(32, None)
        });
        assert_eq!(private.gradients, (8 + 1) * 101_770 * 4);
    }

    #[test]
    fn six_layers_of_65536_need_hundreds_of_gigabytes_and_are_refused() {
        let network = mlp(&[65_536; 6]);
        let estimate = MemoryEstimate::training(&TrainingShape {
            mlp: &network,
            optimizer: adam(),
            batch_rows: 32,
            evaluation: None,
            keeps_best_weights: false,
            private: false,
        });
        let parameters: u64 =
            784 * 65_536 + 65_536 + 5 * (65_536 * 65_536 + 65_536) + 65_536 * 10 + 10;
        assert_eq!(estimate.parameters, parameters * 4);
        assert_eq!(estimate.largest(), MemoryUse::Saving);
        let shortfall = estimate.check(16 << 30, false).unwrap_err();
        let message = shortfall.to_string();
        assert!(
            message.contains("more than the 16.0 GiB available"),
            "{message}"
        );
        assert!(message.contains("parameters 80.2 GiB"), "{message}");
        let limited = estimate.check(1 << 30, true).unwrap_err().to_string();
        assert!(
            limited.contains("1.0 GiB allowed by the memory limit"),
            "{limited}"
        );
        assert!(estimate.check(estimate.total(), false).is_ok());
    }

    #[test]
    fn largest_use_names_the_evaluation_when_its_batch_dominates() {
        let network = mlp(&[4096]);
        let estimate = MemoryEstimate::training(&TrainingShape {
            mlp: &network,
            optimizer: OptimizerConfig::Sgd,
            batch_rows: 32,
            evaluation: Some((60_000, 60_000)),
            keeps_best_weights: false,
            private: false,
        });
        assert_eq!(estimate.largest(), MemoryUse::Evaluation);
    }

    #[test]
    fn byte_sizes_parse_with_binary_units_and_refuse_nonsense() {
        assert_eq!(parse_byte_size("2147483648"), Ok(2 << 30));
        assert_eq!(parse_byte_size("512M"), Ok(512 << 20));
        assert_eq!(parse_byte_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_byte_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_byte_size("64kb"), Ok(64 << 10));
        for bad in ["", "G", "-1G", "0", "2X", "1e99T", "1.2.3M"] {
            assert!(parse_byte_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn mem_available_is_read_in_kilobytes() {
        let meminfo =
            "MemTotal:       24683568 kB\nMemFree:  100 kB\nMemAvailable:   22313344 kB\n";
        assert_eq!(mem_available(meminfo), Some(22_313_344 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn cgroup_limits_cap_the_headroom_for_v1_and_v2() {
        let root = tempfile::tempdir().unwrap();
        // v2: a limited group inside an unlimited parent.
        let v2 = root.path().join("jobs/one");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(v2.join("memory.current"), "73741824\n").unwrap();
        std::fs::write(root.path().join("jobs/memory.max"), "max\n").unwrap();
        assert_eq!(
            cgroup_headroom("0::/jobs/one\n", root.path()),
            Some(1_000_000_000)
        );
        // v1: the memory controller's hierarchy; "no limit" is a huge number.
        let v1 = root.path().join("memory/box");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_headroom("4:memory:/box\n", root.path()), None);
        std::fs::write(v1.join("memory.limit_in_bytes"), "500000000\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "100000000\n").unwrap();
        assert_eq!(
            cgroup_headroom("4:memory:/box\n1:cpu:/box\n", root.path()),
            Some(400_000_000)
        );
    }
}
