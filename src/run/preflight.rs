//! Checks done before any work: can we write where we will have to write? A five-minute run
//! must not fail at the very end because the output folder is missing or read-only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{list_checkpoints, parse_checkpoint_file_name};
use crate::error::{Error, Result, Setting};
use crate::model_file::MAGIC;
use crate::run::spec::RunSpec;
use crate::run_lock::{LockError, RunLock};

/// The folder a file path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` (the value of `setting`) can be written later: its folder exists and accepts new
/// files, it is not a folder, and it is not some other file we would destroy.
pub fn check_output_file(path: &Path, setting: Setting) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::setting(
            setting,
            format!("{} is not a file path", path.display()),
        ));
    }
    if path.is_dir() {
        return Err(Error::setting(
            setting,
            format!("{} is a directory, expected a file path", path.display()),
        ));
    }
    if let Ok(mut file) = File::open(path) {
        let mut magic = [0u8; 8];
        let mut read = 0;
        while read < magic.len() {
            match std::io::Read::read(&mut file, &mut magic[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        if read > 0 && (read < magic.len() || &magic != MAGIC) {
            return Err(Error::setting(
                setting,
                format!(
                    "{} exists and is not an mnist-train file; refusing to overwrite it",
                    path.display()
                ),
            ));
        }
    }
    let dir = parent_dir(path);
    check_writable_dir(&dir).map_err(|e| Error::io(path, e))?;
    remove_stale_temp_files(&dir, |name| {
        path.file_name()
            .and_then(|own| own.to_str())
            .is_some_and(|own| name == own)
    });
    Ok(())
}

/// The locks a run holds on what it writes (see [`RunLock`]): a second run aimed at the same
/// model file or folder is refused naming the holder. Each place is locked once however it is
/// spelled (`ck`, `./ck`), since a second lock would collide with the first. Released when
/// dropped.
#[derive(Debug, Default)]
pub struct OutputLocks {
    held: Vec<(PathBuf, RunLock)>,
}

impl OutputLocks {
    /// Locks the model file `path` (the value of `setting`); its folder must exist.
    pub fn file(&mut self, path: &Path, setting: Setting) -> Result<()> {
        let name = path.file_name().unwrap_or_default();
        let key = absolute(&parent_dir(path)).join(name);
        self.take(key, || RunLock::file(path), path, setting, "file")
    }

    /// Locks the folder `dir` (the value of `setting`), which must exist.
    pub fn folder(&mut self, dir: &Path, setting: Setting) -> Result<()> {
        let key = absolute(dir);
        self.take(key, || RunLock::folder(dir), dir, setting, "folder")
    }

    fn take(
        &mut self,
        key: PathBuf,
        lock: impl FnOnce() -> std::result::Result<RunLock, LockError>,
        path: &Path,
        setting: Setting,
        what: &str,
    ) -> Result<()> {
        if self.held.iter().any(|(held, _)| *held == key) {
            return Ok(());
        }
        let lock = lock().map_err(|error| match error {
            LockError::Held { .. } => Error::setting(
                setting,
                format!(
                    "{} is {error}; wait for that run to finish or choose another {what}",
                    path.display()
                ),
            ),
            LockError::Io { lock_file, source } => Error::io(lock_file, source),
        })?;
        self.held.push((key, lock));
        Ok(())
    }
}

/// `path` resolved (symbolic links, `.`, `..`) when it exists, else as given.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Creates `dir` if needed and checks that files can be created in it.
pub fn check_output_dir(dir: &Path, setting: Setting) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::setting(
            setting,
            format!("{} exists and is not a directory", dir.display()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            dir,
            std::io::Error::new(e.kind(), format!("cannot create folder: {e}")),
        )
    })?;
    check_writable_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Creates, writes and removes a small probe file in `dir`.
fn check_writable_dir(dir: &Path) -> std::io::Result<()> {
    let describe = |e: std::io::Error| {
        let what = if !dir.exists() {
            "does not exist".to_string()
        } else {
            format!("does not accept new files: {e}")
        };
        std::io::Error::new(e.kind(), format!("folder {} {what}", dir.display()))
    };
    if !dir.is_dir() {
        return Err(describe(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a directory",
        )));
    }
    let probe = dir.join(format!(".mnist-train-probe-{}", std::process::id()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut file| file.write_all(b"probe"));
    let _ = std::fs::remove_file(&probe);
    result.map_err(describe)
}

/// Removes temporary files (`.NAME.tmp-PID`, see [`crate::model_file::write_atomic`]) that a
/// killed run left behind, when `is_ours(NAME)` and process PID no longer exists. Only on
/// systems with `/proc` (elsewhere the leftovers are harmless and stay).
pub fn remove_stale_temp_files(dir: &Path, is_ours: impl Fn(&str) -> bool) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some((target, pid)) = name
            .strip_prefix('.')
            .and_then(|rest| rest.rsplit_once(".tmp-"))
        else {
            continue;
        };
        let pid_is_number = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
        if pid_is_number && is_ours(target) && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Before any data is loaded: every place the run will write to accepts files and is locked
/// for this run (into `locks`), and a fresh run does not mix its checkpoints into another run's
/// folder.
pub fn check_run_outputs(spec: &RunSpec, resuming: bool, locks: &mut OutputLocks) -> Result<()> {
    if let Some(output) = &spec.output {
        check_output_file(output, Setting::Output)?;
        locks.file(output, Setting::Output)?;
    }
    if let Some(dir) = &spec.checkpoints.dir {
        check_output_dir(dir, Setting::CheckpointDir)?;
        // Before looking at its contents: while another run writes them, say so.
        locks.folder(dir, Setting::CheckpointDir)?;
        remove_stale_temp_files(dir, |name| parse_checkpoint_file_name(name).is_some());
        if !resuming && !list_checkpoints(dir)?.is_empty() {
            return Err(Error::CheckpointFolderInUse { dir: dir.clone() });
        }
    }
    Ok(())
}
