//! Ctrl-C (SIGINT) and SIGTERM during training: the first one asks the loop to stop at the next
//! batch boundary (so a checkpoint can be written); a second one exits at once with code 130.
//! Exiting mid-write is safe because every file is written atomically (temp file + rename).
//!
//! Uses `signal-hook`: its handlers only set an atomic flag or call `_exit`, which is what is
//! async-signal-safe, and it needs no extra thread (unlike `ctrlc`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{exit_code, Error, Result};
use crate::train::{Callback, Control, Trainer};

/// Signal handlers for the duration of training. Once dropped, the next SIGINT/SIGTERM exits at
/// once with code 130 (the process-wide handlers cannot be uninstalled, only made to exit).
pub struct InterruptGuard {
    requested: Arc<AtomicBool>,
    exit_on_next: Arc<AtomicBool>,
}

impl InterruptGuard {
    pub fn install() -> Result<Self> {
        let requested = Arc::new(AtomicBool::new(false));
        let exit_on_next = Arc::new(AtomicBool::new(false));
        let register_error = |e| Error::io("signal handler", e);
        for signal in [SIGINT, SIGTERM] {
            // Actions run in registration order: the shutdown check sees `exit_on_next` as it was
            // *before* this signal, so the first signal only sets the flags and the second exits.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                exit_code::INTERRUPTED,
                Arc::clone(&exit_on_next),
            )
            .map_err(register_error)?;
            signal_hook::flag::register(signal, Arc::clone(&requested)).map_err(register_error)?;
            signal_hook::flag::register(signal, Arc::clone(&exit_on_next))
                .map_err(register_error)?;
        }
        Ok(InterruptGuard {
            requested,
            exit_on_next,
        })
    }

    /// Whether a SIGINT or SIGTERM arrived.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        // Nothing will check `requested` any more: behave like the default handler again.
        self.exit_on_next.store(true, Ordering::SeqCst);
    }
}

impl Callback for InterruptGuard {
    fn reads_state_after_step(&self, _trainer: &Trainer) -> bool {
        false
    }

    fn on_step_end(&mut self, _trainer: &Trainer) -> Result<Control> {
        Ok(if self.requested() {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}
