//! Flush-to-zero: denormal floats (below ~1e-38) are slow on many CPUs and carry no useful
//! information for training, so training threads treat them as zero (MXCSR FTZ and DAZ bits).
//! Every thread that computes part of a step sets the same mode, so results stay identical
//! whichever thread computes what.

/// MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: stmxcsr only stores the SSE control register (always present on x86_64) to memory
    // we own.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
    }
    value
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(value: u32) {
    // SAFETY: ldmxcsr loads a control word we derived from the current one, changing only the
    // FTZ/DAZ rounding-mode bits, which affect results but not memory safety.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, readonly, preserves_flags));
    }
}

/// Turns flush-to-zero on or off for the calling thread; returns whether it was on.
pub fn flush_denormals(on: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let current = read_mxcsr();
        let was_on = current & FTZ_DAZ == FTZ_DAZ;
        let wanted = if on {
            current | FTZ_DAZ
        } else {
            current & !FTZ_DAZ
        };
        if wanted != current {
            write_mxcsr(wanted);
        }
        was_on
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = on;
        false
    }
}

/// Flush-to-zero for the calling thread while the guard lives; the previous mode comes back on
/// drop (so a library caller's thread is left as it was).
pub struct DenormalGuard {
    was_on: bool,
}

impl DenormalGuard {
    pub fn new() -> Self {
        DenormalGuard {
            was_on: flush_denormals(true),
        }
    }
}

impl Default for DenormalGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DenormalGuard {
    fn drop(&mut self) {
        flush_denormals(self.was_on);
    }
}
