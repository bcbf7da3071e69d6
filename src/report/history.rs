//! `--history PATH.csv`: per-epoch metrics written as the run goes, one flushed line per epoch, so
//! a killed run keeps every finished epoch. An existing history with the same header is reused:
//! a resumed run continues it without a second header, a fresh run replaces its lines (as Keras'
//! CSVLogger does); anything else at that path is refused rather than overwritten.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Setting};
use crate::train::{Callback, Control, EpochRecord, Trainer};

/// Larger history files are never rewound (see [`CsvHistory::append`]).
const MAX_REWIND_LEN: u64 = 16 << 20;

/// The CSV header; the column order is part of the documented format.
pub const HISTORY_HEADER: &str =
    "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,samples_per_second";

/// Appends one CSV line per finished epoch to a history file.
#[derive(Debug)]
pub struct CsvHistory {
    path: PathBuf,
    file: File,
    /// Whether a record has been appended by this run yet.
    started: bool,
}

impl CsvHistory {
    /// Opens `path` for appending if it is a history file with our header (or empty), or creates
    /// it with the header. A file with other contents is refused, never overwritten.
    pub fn open(path: &Path) -> Result<CsvHistory> {
        if path.is_dir() {
            return Err(Error::setting(
                Setting::History,
                format!(
                    "{} is a directory, expected a CSV file path",
                    path.display()
                ),
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|error| Error::io(path, error))?;
        let length = file
            .metadata()
            .map_err(|error| Error::io(path, error))?
            .len();
        let mut prefix = String::new();
        if length == 0 {
            prefix.push_str(HISTORY_HEADER);
            prefix.push('\n');
        } else {
            // Only the header line is read, never the whole (possibly huge, possibly binary) file.
            let mut start = vec![0u8; HISTORY_HEADER.len() + 1];
            let read = read_up_to(&mut file, &mut start).map_err(|error| Error::io(path, error))?;
            let first_line = start[..read].split(|&b| b == b'\n').next().unwrap_or(&[]);
            let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
            if first_line != HISTORY_HEADER.as_bytes() {
                return Err(Error::setting(
                    Setting::History,
                    format!(
                        "{} exists but is not a training history (its first line is not \"{HISTORY_HEADER}\"); \
                         choose another path or remove it",
                        path.display()
                    ),
                ));
            }
            // A run killed in the middle of a write could leave a partial last line: end it.
            file.seek(SeekFrom::Start(length - 1))
                .map_err(|error| Error::io(path, error))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last)
                .map_err(|error| Error::io(path, error))?;
            if last[0] != b'\n' {
                prefix.push('\n');
            }
        }
        let mut history = CsvHistory {
            path: path.to_path_buf(),
            file,
            started: false,
        };
        history.write(&prefix)?;
        Ok(history)
    }

    /// Appends one epoch's line and flushes it to the file.
    ///
    /// Before a run's first record, lines for that epoch or later are cut off, so every epoch
    /// appears once: a resumed run replaces what the killed run logged after its checkpoint, and a
    /// fresh run (starting at epoch 1) replaces an old run's history.
    pub fn append(&mut self, record: &EpochRecord) -> Result<()> {
        if !self.started {
            self.drop_epochs_from(record.epoch)?;
        }
        self.started = true;
        let line = format_history_line(record);
        self.write(&line)
    }

    /// Truncates the trailing lines whose epoch is `epoch` or later.
    fn drop_epochs_from(&mut self, epoch: usize) -> Result<()> {
        let error = |e| Error::io(&self.path, e);
        let length = self.file.metadata().map_err(error)?.len();
        // Histories are a few hundred bytes per epoch; a huge file is left alone.
        if length > MAX_REWIND_LEN {
            return Ok(());
        }
        let mut text = Vec::new();
        self.file.seek(SeekFrom::Start(0)).map_err(error)?;
        self.file.read_to_end(&mut text).map_err(error)?;
        let mut keep = text.len();
        // Walk back over complete lines (the file ends with a newline once opened).
        while keep > 0 {
            let line_end = keep - 1;
            let line_start = text[..line_end]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |position| position + 1);
            let line = &text[line_start..line_end];
            let line_epoch = line
                .split(|&b| b == b',')
                .next()
                .and_then(|field| std::str::from_utf8(field).ok())
                .and_then(|field| field.parse::<usize>().ok());
            match line_epoch {
                Some(line_epoch) if line_epoch >= epoch => keep = line_start,
                _ => break,
            }
        }
        if keep < text.len() {
            self.file.set_len(keep as u64).map_err(error)?;
        }
        Ok(())
    }

    fn write(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        // One write call per line: a kill lands between lines, not inside one.
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|error| Error::io(&self.path, error))
    }
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// One CSV line (with its newline) for `record`; missing validation metrics are empty fields.
pub fn format_history_line(record: &EpochRecord) -> String {
    let optional = |value: Option<f64>| value.map_or(String::new(), |v| v.to_string());
    format!(
        "{},{},{},{},{},{},{},{}\n",
        record.epoch,
        record.loss,
        record.accuracy,
        optional(record.val_loss),
        optional(record.val_accuracy),
        record.learning_rate,
        record.seconds,
        record.samples_per_second
    )
}

impl Callback for CsvHistory {
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        false
    }

    fn on_epoch_end(&mut self, _trainer: &Trainer, record: &EpochRecord) -> Result<Control> {
        self.append(record)?;
        Ok(Control::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 0.5 / epoch as f64,
            accuracy: 0.9,
            val_loss: None,
            val_accuracy: Some(0.8),
            learning_rate: 0.001,
            seconds: 1.5,
            epsilon: None,
            samples_per_second: 40000.0,
        }
    }

    #[test]
    fn second_open_appends_without_a_second_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        let mut first = CsvHistory::open(&path).unwrap();
        first.append(&record(1)).unwrap();
        first.append(&record(2)).unwrap();
        drop(first);
        let mut resumed = CsvHistory::open(&path).unwrap();
        resumed.append(&record(3)).unwrap();
        drop(resumed);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], HISTORY_HEADER);
        assert_eq!(text.matches("epoch,").count(), 1);
        assert_eq!(lines[1], "1,0.5,0.9,,0.8,0.001,1.5,40000");
        assert!(lines[3].starts_with("3,"));
    }

    #[test]
    fn resumed_run_replaces_epochs_written_after_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        // A run wrote epochs 1-3, but its last checkpoint was after epoch 2: the resumed run
        // starts again at epoch 3.
        let mut killed = CsvHistory::open(&path).unwrap();
        for epoch in 1..=3 {
            killed.append(&record(epoch)).unwrap();
        }
        drop(killed);
        let mut resumed = CsvHistory::open(&path).unwrap();
        let mut redone = record(3);
        redone.loss = 0.125;
        resumed.append(&redone).unwrap();
        resumed.append(&record(4)).unwrap();
        drop(resumed);
        let text = std::fs::read_to_string(&path).unwrap();
        let epochs: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(epochs, ["1", "2", "3", "4"], "{text}");
        assert!(
            text.contains("3,0.125,"),
            "the resumed run's epoch 3 is kept: {text}"
        );
        // A fresh run (starting at epoch 1) replaces the old run's lines under the same header.
        let mut fresh = CsvHistory::open(&path).unwrap();
        fresh.append(&record(1)).unwrap();
        drop(fresh);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>()[0], HISTORY_HEADER);
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn partial_last_line_is_terminated_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        std::fs::write(&path, format!("{HISTORY_HEADER}\n1,0.5,0.9")).unwrap();
        let mut history = CsvHistory::open(&path).unwrap();
        history.append(&record(2)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().nth(2).unwrap().starts_with("2,"));
    }

    #[test]
    fn empty_file_gets_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        std::fs::write(&path, "").unwrap();
        CsvHistory::open(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{HISTORY_HEADER}\n")
        );
    }

    #[test]
    fn foreign_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.csv");
        std::fs::write(&path, "name,value\na,1\n").unwrap();
        let error = CsvHistory::open(&path).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Setting {
                    setting: Setting::History,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("notes.csv"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "name,value\na,1\n");
    }
}
