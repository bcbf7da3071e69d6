//! One run at a time per output: a run takes an exclusive advisory lock (`flock`) on a lock file
//! beside what it writes (its checkpoint folder, its model file), so a second run aimed at the
//! same place is refused instead of silently mixing files. The operating system releases the
//! lock when the process ends however it ends, SIGKILL included: a stale lock file never blocks.
//! The holder writes its process id into the file so the refusal can name it.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a locked folder.
pub const FOLDER_LOCK_NAME: &str = ".mnist-train.lock";

/// An exclusive lock held until dropped (or the process ends). Dropping it removes the lock file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// Keeps the lock: closing the file releases it.
    file: Option<File>,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock; `holder` is its pid when it had written it.
    Held {
        lock_file: PathBuf,
        holder: Option<u32>,
    },
    /// The lock file could not be created, read or written.
    Io {
        lock_file: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held {
                holder: Some(pid), ..
            } => write!(f, "in use by another mnist-train run (pid {pid})"),
            LockError::Held { holder: None, .. } => {
                write!(f, "in use by another mnist-train run")
            }
            LockError::Io { lock_file, source } => {
                write!(f, "cannot use lock file {}: {source}", lock_file.display())
            }
        }
    }
}

impl RunLock {
    /// Locks the folder `dir` (which must exist) for this run.
    pub fn folder(dir: &Path) -> Result<RunLock, LockError> {
        RunLock::acquire(&dir.join(FOLDER_LOCK_NAME))
    }

    /// Locks the file `path` (which need not exist yet) for this run: the lock file is
    /// `.NAME.lock` beside it, since the file itself is replaced by renaming when written.
    pub fn file(path: &Path) -> Result<RunLock, LockError> {
        let name = path.file_name().map_or_else(
            || "output".into(),
            |name| name.to_string_lossy().into_owned(),
        );
        RunLock::acquire(&path.with_file_name(format!(".{name}.lock")))
    }

    /// Takes the lock on `lock_file` without waiting, creating the file if needed.
    pub fn acquire(lock_file: &Path) -> Result<RunLock, LockError> {
        let io_error = |source| LockError::Io {
            lock_file: lock_file.to_path_buf(),
            source,
        };
        // A holder removes the file when it finishes: if it did so between our open and our
        // lock, we hold a lock on a file nobody else will see; open again (a bounded retry).
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(lock_file)
                .map_err(io_error)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut contents = String::new();
                    let _ = file.read_to_string(&mut contents);
                    return Err(LockError::Held {
                        lock_file: lock_file.to_path_buf(),
                        holder: contents.trim().parse().ok(),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(io_error(source)),
            }
            if !same_file(&file, lock_file) {
                continue;
            }
            file.set_len(0).map_err(io_error)?;
            writeln!(file, "{}", std::process::id()).map_err(io_error)?;
            return Ok(RunLock {
                path: lock_file.to_path_buf(),
                file: Some(file),
            });
        }
        Err(io_error(std::io::Error::other(
            "the lock file keeps being replaced",
        )))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove while still holding the lock, then release: a process that opened the old file
        // meanwhile notices the swap in `acquire` and opens the path again.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// Whether `path` still names the file `file` has open.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_folder_lock_refuses_a_second_taker_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::folder(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        match RunLock::folder(dir.path()) {
            Err(LockError::Held { holder, lock_file }) => {
                assert_eq!(holder, Some(std::process::id()));
                assert_eq!(lock_file, dir.path().join(FOLDER_LOCK_NAME));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(
            !dir.path().join(FOLDER_LOCK_NAME).exists(),
            "removed on drop"
        );
        assert!(
            RunLock::folder(dir.path()).is_ok(),
            "free again once dropped"
        );
    }

    #[test]
    fn a_leftover_lock_file_of_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        // What a SIGKILLed run leaves: the file with its pid, but no lock (the OS released it).
        std::fs::write(dir.path().join(FOLDER_LOCK_NAME), "999999999\n").unwrap();
        let lock = RunLock::folder(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }

    #[test]
    fn file_locks_live_beside_the_file_and_differ_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("weights.bin");
        let lock = RunLock::file(&model).unwrap();
        assert_eq!(lock.path(), dir.path().join(".weights.bin.lock"));
        assert!(matches!(RunLock::file(&model), Err(LockError::Held { .. })));
        assert!(RunLock::file(&dir.path().join("other.bin")).is_ok());
        assert!(!model.exists(), "locking does not create the file itself");
    }

    #[test]
    fn an_unwritable_place_is_an_io_error_naming_the_lock_file() {
        let missing = Path::new("/nonexistent-folder-for-mnist-train-tests");
        let error = RunLock::folder(missing).unwrap_err();
        assert!(matches!(error, LockError::Io { .. }));
        assert!(error.to_string().contains(FOLDER_LOCK_NAME), "{error}");
    }
}
