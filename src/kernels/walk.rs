//! Index → offset maps for reading a matrix in place, including a convolution's im2col matrix
//! straight from channels-last images.
//!
//! A [`Walk`] splits an index into runs of `run` consecutive indices `step` apart, and groups of
//! `runs_per_group` runs: index = (group · runs_per_group + run_in_group) · run + t maps to
//! group · group_stride + run_in_group · run_stride + t · step. A plain row or column stride is
//! one endless run. For stride-1 convolution over `[images, in_h, in_w, c]`:
//! - an output pixel (image, oy, ox) starts its patch at image · in_len + oy · in_w·c + ox · c:
//!   runs of `out_w` pixels `c` apart, `out_h` runs per image;
//! - patch entry (ky, kx, ci) sits at ky · in_w·c + kx·c + ci from there: runs of `k·c`
//!   consecutive values, one per kernel row.

/// Offsets (in elements) of the indices along one axis of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Consecutive indices per run.
    pub run: usize,
    /// Offset between neighbours within a run.
    pub step: isize,
    pub runs_per_group: usize,
    /// Offset between the starts of neighbouring runs in a group.
    pub run_stride: isize,
    /// Offset between the starts of neighbouring groups.
    pub group_stride: isize,
}

impl Walk {
    /// A plain stride: index · stride.
    pub fn strided(stride: isize) -> Walk {
        Walk {
            run: usize::MAX,
            step: stride,
            runs_per_group: 1,
            run_stride: 0,
            group_stride: 0,
        }
    }

    /// The output pixels of a stride-1 `kernel`-wide convolution over `[_, in_h, in_w, c]`
    /// images: each pixel's patch start.
    pub fn conv_pixels(in_height: usize, in_width: usize, channels: usize, kernel: usize) -> Walk {
        let (out_h, out_w) = (in_height + 1 - kernel, in_width + 1 - kernel);
        Walk {
            run: out_w,
            step: channels as isize,
            runs_per_group: out_h,
            run_stride: (in_width * channels) as isize,
            group_stride: (in_height * in_width * channels) as isize,
        }
    }

    /// The entries of a `kernel × kernel × c` patch, relative to its start.
    pub fn conv_patch(in_width: usize, channels: usize, kernel: usize) -> Walk {
        Walk {
            run: kernel * channels,
            step: 1,
            runs_per_group: kernel,
            run_stride: (in_width * channels) as isize,
            group_stride: 0,
        }
    }

    /// Whether this is a plain stride (index · step).
    #[inline(always)]
    pub fn is_plain(&self) -> bool {
        self.run == usize::MAX
    }

    /// The offset of index `i`.
    #[inline(always)]
    pub fn offset(&self, i: usize) -> isize {
        let (run, t) = (i / self.run, i % self.run);
        let (group, run_in_group) = (run / self.runs_per_group, run % self.runs_per_group);
        group as isize * self.group_stride
            + run_in_group as isize * self.run_stride
            + t as isize * self.step
    }

    /// The offsets of indices `start, start + 1, …` in turn, without a division per index.
    pub fn cursor(&self, start: usize) -> Cursor {
        let (run, t) = (start / self.run, start % self.run);
        let run_in_group = run % self.runs_per_group;
        Cursor {
            walk: *self,
            t,
            run_in_group,
            run_start: self.offset(start) - t as isize * self.step,
        }
    }

    /// The largest offset of indices `0..len` (all strides here are non-negative), for bounds
    /// checks; `None` for an empty axis.
    pub fn max_offset(&self, len: usize) -> Option<isize> {
        let last = len.checked_sub(1)?;
        let runs = last / self.run;
        let groups = runs / self.runs_per_group;
        let in_run = last.min(self.run - 1);
        let runs_in_group = runs.min(self.runs_per_group - 1);
        Some(
            groups as isize * self.group_stride.max(0)
                + runs_in_group as isize * self.run_stride.max(0)
                + in_run as isize * self.step.max(0),
        )
    }
}

/// Successive offsets along a [`Walk`] (see [`Walk::cursor`]).
pub struct Cursor {
    walk: Walk,
    /// Position in the current run.
    t: usize,
    run_in_group: usize,
    /// Offset of the current run's first index.
    run_start: isize,
}

impl Cursor {
    /// The current index's offset; moves to the next index.
    #[inline(always)]
    pub fn next_offset(&mut self) -> isize {
        let offset = self.run_start + self.t as isize * self.walk.step;
        self.t += 1;
        if self.t == self.walk.run {
            self.t = 0;
            self.run_in_group += 1;
            self.run_start += self.walk.run_stride;
            if self.run_in_group == self.walk.runs_per_group {
                self.run_in_group = 0;
                self.run_start += self.walk.group_stride
                    - self.walk.runs_per_group as isize * self.walk.run_stride;
            }
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_walks_address_what_im2col_copies() {
        // 2 images of 5×4 pixels, 3 channels, 3×3 kernel: patch (p, e) of im2col is
        // x[pixel start + entry offset].
        let (h, w, c, k) = (5, 4, 3, 3);
        let (out_h, out_w) = (h + 1 - k, w + 1 - k);
        let pixels = Walk::conv_pixels(h, w, c, k);
        let patch = Walk::conv_patch(w, c, k);
        for p in 0..2 * out_h * out_w {
            let (image, q) = (p / (out_h * out_w), p % (out_h * out_w));
            let (oy, ox) = (q / out_w, q % out_w);
            for e in 0..k * k * c {
                let (ky, kx, ci) = (e / (k * c), (e / c) % k, e % c);
                let want = ((image * h + oy + ky) * w + ox + kx) * c + ci;
                assert_eq!(pixels.offset(p) + patch.offset(e), want as isize, "{p} {e}");
            }
        }
        let last =
            pixels.max_offset(2 * out_h * out_w).unwrap() + patch.max_offset(k * k * c).unwrap();
        assert_eq!(last, (2 * h * w * c - 1) as isize);
        assert_eq!(Walk::strided(7).offset(5), 35);
        assert_eq!(Walk::strided(7).max_offset(6), Some(35));
        assert_eq!(Walk::strided(7).max_offset(0), None);
        for walk in [pixels, patch, Walk::strided(3)] {
            for start in [0, 1, 5, 9] {
                let mut cursor = walk.cursor(start);
                for i in start..start + 30 {
                    assert_eq!(
                        cursor.next_offset(),
                        walk.offset(i),
                        "{walk:?} from {start}: {i}"
                    );
                }
            }
        }
    }
}
