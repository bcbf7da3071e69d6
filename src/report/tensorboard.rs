//! `--tensorboard DIR`: per-epoch metrics and a running loss as TensorBoard event files.
//!
//! An event file (`events.out.tfevents.<unix seconds>.<host>.<pid>.<n>`) is a TFRecord stream:
//! each record is `u64 length (LE) · u32 masked CRC-32C of the length · data · u32 masked CRC-32C
//! of the data`, where masking is `((crc >> 15) | (crc << 17)) + 0xa282ead8`. The data is an
//! `Event` protobuf: the first says `file_version: "brain.Event:2"`, the others carry a `Summary`
//! with one `simple_value` scalar.
//!
//! Steps: the epoch metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`, `learning_rate`,
//! `epsilon` when the run is private) are logged at step = epoch (1-based, as in the `--json`
//! epoch lines); `running_loss` (the epoch's mean training loss so far) every N optimization
//! steps at step = optimizer steps taken. A resumed run writes a new file in the same folder and
//! first removes from the older files whatever lies at or after the point it resumes from, so
//! every step appears once (a fresh run starting at step 0 thus replaces an old run's curves).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result, Setting};
use crate::model_file::write_atomic;
use crate::train::{Callback, Control, EpochRecord, Trainer};

/// The per-epoch scalars, by their `EpochRecord`/`--json` names; absent fields are skipped.
pub const EPOCH_TAGS: [&str; 6] = [
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "epsilon",
];
/// The scalar logged every N optimization steps.
pub const RUNNING_LOSS_TAG: &str = "running_loss";
/// What the first event of every file says.
pub const FILE_VERSION: &str = "brain.Event:2";
/// Event files larger than this are not rewritten on resume (ours are a few KB per epoch).
const MAX_REWRITE_LEN: u64 = 64 << 20;

/// The messages of TensorFlow's event.proto and summary.proto that the writer uses.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Seconds since the Unix epoch.
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        #[prost(int64, tag = "2")]
        pub step: i64,
        #[prost(string, optional, tag = "3")]
        pub file_version: Option<String>,
        #[prost(message, optional, tag = "5")]
        pub summary: Option<Summary>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<SummaryValue>,
    }

    /// `Summary.Value` with only the `simple_value` member of its oneof.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryValue {
        #[prost(string, tag = "1")]
        pub tag: String,
        #[prost(float, optional, tag = "2")]
        pub simple_value: Option<f32>,
    }
}

use proto::{Event, Summary, SummaryValue};

/// TFRecord's masked CRC-32C (a CRC of data that holds CRCs is masked so it stays informative).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn encode_record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    record
}

/// Splits TFRecord bytes into the records' data, checking both CRCs of each. A torn last record
/// (a run killed mid-write) ends the list; any other damage is an error.
pub fn decode_records(bytes: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 12) else {
            break;
        };
        let (length_bytes, length_crc) = header.split_at(8);
        if masked_crc32c(length_bytes).to_le_bytes() != length_crc {
            return Err(format!("record at byte {at}: length checksum mismatch"));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().unwrap_or_default());
        let remaining = (bytes.len() - at - 12) as u64;
        if length.saturating_add(4) > remaining {
            break;
        }
        let data = &bytes[at + 12..at + 12 + length as usize];
        let crc = &bytes[at + 12 + length as usize..at + 16 + length as usize];
        if masked_crc32c(data).to_le_bytes() != crc {
            return Err(format!("record at byte {at}: data checksum mismatch"));
        }
        records.push(data);
        at += 16 + length as usize;
    }
    Ok(records)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

fn scalar_event(tag: &str, value: f32, step: i64, wall_time: f64) -> Event {
    Event {
        wall_time,
        step,
        file_version: None,
        summary: Some(Summary {
            value: vec![SummaryValue {
                tag: tag.to_string(),
                simple_value: Some(value),
            }],
        }),
    }
}

/// Appends events to one new event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Creates a new event file in `dir` (created if missing) and writes its version event.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|error| Error::io(dir, error))?;
        let wall_time = now();
        let mut path;
        let mut counter = 0;
        loop {
            path = dir.join(format!(
                "events.out.tfevents.{:010}.mnist-train.{}.{counter}",
                wall_time as u64,
                std::process::id()
            ));
            if !path.exists() {
                break;
            }
            counter += 1;
        }
        let file = File::create(&path).map_err(|error| Error::io(&path, error))?;
        let mut writer = EventWriter { path, file };
        writer.write(&Event {
            wall_time,
            step: 0,
            file_version: Some(FILE_VERSION.to_string()),
            summary: None,
        })?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event as a record (unbuffered: a killed run keeps every event written).
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let record = encode_record(&prost::Message::encode_to_vec(event));
        self.file
            .write_all(&record)
            .map_err(|error| Error::io(&self.path, error))
    }

    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        self.write(&scalar_event(tag, value as f32, step, now()))
    }
}

/// Where a run starts: events at these steps or later belong to this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// The first epoch this run completes (1 for a fresh run).
    pub first_epoch: i64,
    /// The first optimizer step this run takes (1 for a fresh run).
    pub first_step: i64,
}

impl ResumePoint {
    /// Whether an event from an earlier run stays: it lies before this run's start.
    fn keeps(&self, tag: &str, step: i64) -> bool {
        if tag == RUNNING_LOSS_TAG {
            step < self.first_step
        } else {
            step < self.first_epoch
        }
    }
}

/// Removes from the event files already in `dir` the scalars at or after `start`; files left
/// with no scalar are deleted. Unreadable or damaged files are left as they are.
pub fn drop_events_from(dir: &Path, start: ResumePoint) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_event_file = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.contains("tfevents"));
        let small_file = entry
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() <= MAX_REWRITE_LEN);
        if !is_event_file || !small_file {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(records) = decode_records(&bytes) else {
            continue;
        };
        let mut kept = Vec::new();
        let mut scalars_kept = 0;
        let mut dropped = false;
        for data in &records {
            let keep = match prost::Message::decode(*data) {
                Ok(Event {
                    summary: Some(summary),
                    step,
                    ..
                }) => {
                    let keep = summary.value.iter().all(|v| start.keeps(&v.tag, step));
                    scalars_kept += usize::from(keep);
                    keep
                }
                // The version event and anything we do not know stay.
                _ => true,
            };
            if keep {
                kept.extend_from_slice(&encode_record(data));
            } else {
                dropped = true;
            }
        }
        let torn_tail = kept.len() < bytes.len() && !dropped;
        if scalars_kept == 0 && (dropped || records.len() <= 1) {
            std::fs::remove_file(&path).map_err(|error| Error::io(&path, error))?;
        } else if dropped || torn_tail {
            write_atomic(&path, &kept)?;
        }
    }
    Ok(())
}

/// Where event files go and how often the running loss is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorBoardSettings {
    pub dir: PathBuf,
    pub every_steps: u64,
}

/// The `--tensorboard` callback. The event file is opened at the first step, when the point the
/// run starts from (fresh or resumed) is known.
#[derive(Debug)]
pub struct TensorBoard {
    dir: PathBuf,
    /// Log `running_loss` every this many optimizer steps.
    every_steps: u64,
    writer: Option<EventWriter>,
}

impl TensorBoard {
    /// Checks that `dir` can be created before any work is done.
    pub fn open(settings: &TensorBoardSettings) -> Result<TensorBoard> {
        let (dir, every_steps) = (settings.dir.as_path(), settings.every_steps);
        if dir.is_file() {
            return Err(Error::setting(
                Setting::TensorBoard,
                format!("{} is a file, expected a folder", dir.display()),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|error| Error::io(dir, error))?;
        Ok(TensorBoard {
            dir: dir.to_path_buf(),
            every_steps: every_steps.max(1),
            writer: None,
        })
    }

    /// The event file this run writes, once it is open.
    pub fn path(&self) -> Option<&Path> {
        self.writer.as_ref().map(EventWriter::path)
    }

    /// Opens the file on first use, first removing older events at or after `start`.
    fn writer(&mut self, start: ResumePoint) -> Result<&mut EventWriter> {
        if self.writer.is_none() {
            drop_events_from(&self.dir, start)?;
            self.writer = Some(EventWriter::create(&self.dir)?);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| Error::model(&self.dir, "event file not open"))
    }
}

impl Callback for TensorBoard {
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        false
    }

    fn on_step_end(&mut self, trainer: &Trainer) -> Result<Control> {
        // This step is the first of the run when the file is not open yet.
        let step = trainer.optimizer.steps;
        let every = self.every_steps;
        let writer = self.writer(ResumePoint {
            first_epoch: trainer.epoch as i64 + 1,
            first_step: step as i64,
        })?;
        if step.is_multiple_of(every) && trainer.running.seen > 0 {
            let running_loss = trainer.running.loss_sum / trainer.running.seen as f64;
            writer.add_scalar(RUNNING_LOSS_TAG, running_loss, step as i64)?;
        }
        Ok(Control::Continue)
    }

    fn on_epoch_end(&mut self, trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        let writer = self.writer(ResumePoint {
            first_epoch: record.epoch as i64,
            first_step: trainer.optimizer.steps as i64 + 1,
        })?;
        let fields = serde_json::to_value(record).unwrap_or_default();
        for tag in EPOCH_TAGS {
            if let Some(value) = fields.get(tag).and_then(serde_json::Value::as_f64) {
                writer.add_scalar(tag, value, record.epoch as i64)?;
            }
        }
        writer
            .file
            .sync_data()
            .map_err(|error| Error::io(&writer.path, error))?;
        Ok(Control::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        // The CRC-32C (Castagnoli) check value from the CRC catalogue.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // Masking 0 leaves only the constant.
        assert_eq!(0u32.rotate_right(15).wrapping_add(0xa282_ead8), 0xa282_ead8);
    }

    #[test]
    fn a_record_matches_bytes_computed_independently() {
        // Computed with a bitwise CRC-32C written separately in Python (polynomial 0x82F63B78).
        let expected: [u8; 21] = [
            5, 0, 0, 0, 0, 0, 0, 0, 234, 178, 4, 62, 104, 101, 108, 108, 111, 187, 31, 28, 25,
        ];
        assert_eq!(encode_record(b"hello"), expected);
        assert_eq!(decode_records(&expected).unwrap(), [b"hello".as_slice()]);
    }

    #[test]
    fn a_scalar_event_encodes_as_the_protobuf_wire_format_says() {
        let bytes = prost::Message::encode_to_vec(&scalar_event("loss", 0.25, 3, 1.5));
        // Hand-encoded: wall_time (1, fixed64 1.5), step (2, varint 3), summary (5, bytes) →
        // value (1, bytes) → tag (1, "loss"), simple_value (2, fixed32 0.25).
        let mut expected = vec![0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 0x03, 0x2A, 13];
        expected.extend_from_slice(&[0x0A, 11, 0x0A, 4, b'l', b'o', b's', b's']);
        expected.extend_from_slice(&[0x15, 0x00, 0x00, 0x80, 0x3E]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn damaged_records_are_refused_and_a_torn_tail_is_ignored() {
        let mut bytes = encode_record(b"first");
        bytes.extend(encode_record(b"second"));
        let whole = bytes.clone();
        bytes.truncate(bytes.len() - 3);
        assert_eq!(decode_records(&bytes).unwrap(), [b"first".as_slice()]);
        let mut flipped = whole.clone();
        flipped[14] ^= 1;
        assert!(decode_records(&flipped)
            .unwrap_err()
            .contains("data checksum"));
        let mut flipped = whole;
        flipped[2] ^= 1;
        assert!(decode_records(&flipped)
            .unwrap_err()
            .contains("length checksum"));
    }

    #[test]
    fn resuming_drops_the_later_steps_of_earlier_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        for epoch in 1..=3 {
            writer.add_scalar("loss", epoch as f64, epoch).unwrap();
            writer
                .add_scalar(RUNNING_LOSS_TAG, epoch as f64, epoch * 10)
                .unwrap();
        }
        let path = writer.path().to_path_buf();
        drop(writer);
        drop_events_from(
            dir.path(),
            ResumePoint {
                first_epoch: 2,
                first_step: 15,
            },
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let steps: Vec<(String, i64)> = decode_records(&bytes)
            .unwrap()
            .iter()
            .filter_map(|data| {
                let event: Event = prost::Message::decode(*data).unwrap();
                event.summary.map(|s| (s.value[0].tag.clone(), event.step))
            })
            .collect();
        assert_eq!(
            steps,
            [("loss".to_string(), 1), (RUNNING_LOSS_TAG.to_string(), 10)]
        );
        // A fresh run (from step 1) leaves nothing of it.
        drop_events_from(
            dir.path(),
            ResumePoint {
                first_epoch: 1,
                first_step: 1,
            },
        )
        .unwrap();
        assert!(!path.exists());
    }
}
