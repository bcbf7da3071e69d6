//! `--tensorboard DIR` through the real binary: the event files are read back as TFRecords with a
//! bitwise CRC-32C written here and decoded with the test's own protobuf reader; every epoch
//! scalar must equal the `--json` epoch line (rounded to f32, TensorBoard's `simple_value`), and a
//! resumed run must leave each step once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use mnist_train::report::tensorboard::RUNNING_LOSS_TAG;
use serde_json::Value;

use crate::support::protobuf::{double, float, int, messages, string};
use crate::support::{mnist_train, write_synthetic_dataset};

/// CRC-32C, bit by bit (reflected polynomial 0x82F63B78).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The records of a TFRecord file, every checksum verified.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let length_bytes = &bytes[at..at + 8];
        let length_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(
            length_crc,
            masked(crc32c(length_bytes)),
            "length CRC at {at}"
        );
        let length = u64::from_le_bytes(length_bytes.try_into().unwrap()) as usize;
        let data = &bytes[at + 12..at + 12 + length];
        let data_crc = u32::from_le_bytes(
            bytes[at + 12 + length..at + 16 + length]
                .try_into()
                .unwrap(),
        );
        assert_eq!(data_crc, masked(crc32c(data)), "data CRC at {at}");
        out.push(data.to_vec());
        at += 16 + length;
    }
    out
}

/// One scalar event.
#[derive(Debug, Clone, PartialEq)]
struct Scalar {
    tag: String,
    step: i64,
    value: f32,
    wall_time: f64,
}

/// Every scalar of every event file in `dir`, files in name order (as TensorBoard reads them).
fn read_scalars(dir: &Path) -> (Vec<Scalar>, usize) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let mut scalars = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let records = records(&std::fs::read(file).unwrap());
        // Event.file_version (3) first.
        assert_eq!(string(&records[0], 3), "brain.Event:2");
        for event in &records[1..] {
            let summary = messages(event, 5)[0];
            for value in messages(summary, 1) {
                scalars.push(Scalar {
                    tag: string(value, 1),
                    step: int(event, 2).unwrap_or(0),
                    value: float(value, 2).expect("simple_value"),
                    wall_time: double(event, 1).unwrap(),
                });
            }
        }
    }
    (scalars, files.len())
}

fn epoch_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["type"] == "epoch")
        .collect()
}

fn epoch_scalars(scalars: &[Scalar]) -> BTreeMap<(String, i64), f32> {
    let mut map = BTreeMap::new();
    for scalar in scalars.iter().filter(|s| s.tag != RUNNING_LOSS_TAG) {
        let previous = map.insert((scalar.tag.clone(), scalar.step), scalar.value);
        assert!(
            previous.is_none(),
            "{} at step {} twice",
            scalar.tag,
            scalar.step
        );
    }
    map
}

/// 400 training images at batch 50: 8 steps an epoch, the running loss every 3 steps, each step
/// once.
fn assert_running_loss_every_3_of_8_steps(scalars: &[Scalar]) {
    let mut running: Vec<i64> = scalars
        .iter()
        .filter(|s| s.tag == RUNNING_LOSS_TAG)
        .map(|s| s.step)
        .collect();
    // Files written in the same second sort by process id, not by time: compare as a set with
    // multiplicity.
    running.sort_unstable();
    assert_eq!(running, (1..=8).map(|k| 3 * k).collect::<Vec<i64>>());
}

/// The fields of an epoch line that are not logged as scalars: where it stands, and wall time.
const NOT_SCALARS: [&str; 4] = ["epoch", "epochs", "seconds", "samples_per_second"];

/// Every other numeric field of the epoch lines, by (tag, epoch).
fn expected_scalars(lines: &[Value]) -> BTreeMap<(String, i64), f32> {
    let mut map = BTreeMap::new();
    for line in lines {
        let epoch = line["epoch"].as_i64().unwrap();
        for (tag, value) in line.as_object().unwrap() {
            if let (false, Some(value)) = (NOT_SCALARS.contains(&tag.as_str()), value.as_f64()) {
                map.insert((tag.clone(), epoch), value as f32);
            }
        }
    }
    map
}

fn train(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let output = mnist_train()
        .current_dir(dir)
        .args([
            "--data-dir",
            "data",
            "--batch-size",
            "50",
            "--validation-split",
            "0.2",
        ])
        .args([
            "--tensorboard",
            "tb",
            "--tensorboard-every",
            "3",
            "--json",
            "--quiet",
        ])
        .args(["--keep-checkpoints", "5", "-o", "model.bin"])
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

#[test]
fn tensorboard_scalars_equal_the_json_epoch_lines_and_a_resume_leaves_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_synthetic_dataset(&dir.path().join("data"), 500, 50, true);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let first = epoch_lines(&train(
        dir.path(),
        &["--epochs", "3", "--checkpoint-dir", "ck"],
    ));
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let tb = dir.path().join("tb");
    let (scalars, files) = read_scalars(&tb);
    assert_eq!(files, 1);
    assert_eq!(epoch_scalars(&scalars), expected_scalars(&first));
    assert!(scalars
        .iter()
        .all(|s| s.wall_time >= before.floor() && s.wall_time <= after + 1.0));
    assert_running_loss_every_3_of_8_steps(&scalars);

    // Resume after epoch 1 and redo epochs 2 and 3: the first file keeps epoch 1 and steps ≤ 8.
    let resumed = epoch_lines(&train(
        dir.path(),
        &["--epochs", "3", "--resume", "ck/ckpt-e0001-s0000000.ckpt"],
    ));
    assert_eq!(resumed.len(), 2);
    let (scalars, files) = read_scalars(&tb);
    assert_eq!(files, 2);
    let mut expected = expected_scalars(&first[..1]);
    expected.extend(expected_scalars(&resumed));
    assert_eq!(epoch_scalars(&scalars), expected);
    assert_running_loss_every_3_of_8_steps(&scalars);
}

#[test]
fn compare_writes_one_run_folder_per_variant() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_synthetic_dataset(&dir.path().join("data"), 200, 50, true);
    mnist_train()
        .current_dir(dir.path())
        .args([
            "compare",
            "--data-dir",
            "data",
            "--epochs",
            "2",
            "--variants",
            "sgd,adam",
        ])
        .args(["--tensorboard", "tb", "--output-dir", "out", "--quiet"])
        .assert()
        .success();
    for variant in ["sgd", "adam"] {
        let (scalars, files) = read_scalars(&dir.path().join("tb").join(variant));
        assert_eq!(files, 1, "{variant}");
        let tags: Vec<(String, i64)> = epoch_scalars(&scalars).into_keys().collect();
        assert!(
            tags.contains(&("val_accuracy".to_string(), 2)),
            "{variant}: {tags:?}"
        );
    }
}

#[test]
fn a_private_run_logs_its_epsilon_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_synthetic_dataset(&dir.path().join("data"), 300, 50, true);
    let lines = epoch_lines(&train(
        dir.path(),
        &["--epochs", "2", "--dp-noise-multiplier", "1"],
    ));
    assert!(lines.iter().all(|line| line["epsilon"].as_f64().is_some()));
    let (scalars, _) = read_scalars(&dir.path().join("tb"));
    let logged = epoch_scalars(&scalars);
    assert_eq!(logged, expected_scalars(&lines));
    assert!(logged.contains_key(&("epsilon".to_string(), 2)));
}
