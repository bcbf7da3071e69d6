//! Max-pooling over non-overlapping `size × size` windows (stride = size), channels-last.
//!
//! A leftover row or column that does not fill a window is dropped (as Keras and PyTorch do).
//! Ties go to the first maximum in window order (row by row, left to right): backward finds it
//! again from the forward input and output and routes the whole gradient to it, so the gradient
//! is the exact derivative wherever the maximum is unique and a fixed, documented choice where it
//! is not. (Nothing is stored per output: forward is a plain vectorized max.)

/// One pooling layer's shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPool {
    pub in_height: usize,
    pub in_width: usize,
    pub channels: usize,
    pub size: usize,
}

impl MaxPool {
    pub fn out_height(&self) -> usize {
        self.in_height / self.size
    }

    pub fn out_width(&self) -> usize {
        self.in_width / self.size
    }

    pub fn in_len(&self) -> usize {
        self.in_height * self.in_width * self.channels
    }

    pub fn out_len(&self) -> usize {
        self.out_height() * self.out_width() * self.channels
    }

    /// Start of each input pixel's channel vector in window (oy, ox), in window order.
    fn window(&self, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
        let (c, size) = (self.channels, self.size);
        (0..size).flat_map(move |dy| {
            (0..size).map(move |dx| ((oy * size + dy) * self.in_width + ox * size + dx) * c)
        })
    }

    /// The maximum of each of the channels `first..first + best.len()` over window (oy, ox).
    fn window_max(&self, image: &[f32], (oy, ox): (usize, usize), first: usize, best: &mut [f32]) {
        let width = best.len();
        best.fill(f32::NEG_INFINITY);
        for start in self.window(oy, ox) {
            let start = start + first;
            // A select, not a branch, so the loop over channels vectorizes.
            for (b, &value) in best.iter_mut().zip(&image[start..start + width]) {
                *b = if value > *b { value } else { *b };
            }
        }
    }

    /// x: [rows, in_h, in_w, c] -> y: [rows, in_h / size, in_w / size, c]
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let (c, out_len) = (self.channels, self.out_len());
        for (image, y) in x[..rows * self.in_len()]
            .chunks_exact(self.in_len())
            .zip(y[..rows * out_len].chunks_exact_mut(out_len))
        {
            for oy in 0..self.out_height() {
                for ox in 0..self.out_width() {
                    let out = (oy * self.out_width() + ox) * c;
                    self.window_max(image, (oy, ox), 0, &mut y[out..out + c]);
                }
            }
        }
    }

    /// grad_y: [rows, out_h, out_w, c] -> grad_x: [rows, in_h, in_w, c], each gradient sent to
    /// the first input of its window (in window order) that equals the window's maximum;
    /// every other input gets 0. `x` is the forward pass's input (the maxima are recomputed
    /// from it, so a layer working in place on the output cannot disturb them).
    pub fn backward(&self, x: &[f32], grad_y: &[f32], rows: usize, grad_x: &mut [f32]) {
        let (c, in_len, out_len) = (self.channels, self.in_len(), self.out_len());
        let grad_x = &mut grad_x[..rows * in_len];
        grad_x.fill(0.0);
        // Channels are handled in blocks of CHANNEL_BLOCK, so the scratch lives on the stack
        // (a training step allocates nothing).
        let mut best = [0.0f32; CHANNEL_BLOCK];
        // Per channel: 1 while the window's gradient is still unclaimed, then 0.
        let mut unclaimed = [0.0f32; CHANNEL_BLOCK];
        for ((image, grad_x), grad_y) in x[..rows * in_len]
            .chunks_exact(in_len)
            .zip(grad_x.chunks_exact_mut(in_len))
            .zip(grad_y[..rows * out_len].chunks_exact(out_len))
        {
            for oy in 0..self.out_height() {
                for ox in 0..self.out_width() {
                    let out = (oy * self.out_width() + ox) * c;
                    for first in (0..c).step_by(CHANNEL_BLOCK) {
                        let width = (c - first).min(CHANNEL_BLOCK);
                        let (best, unclaimed) = (&mut best[..width], &mut unclaimed[..width]);
                        self.window_max(image, (oy, ox), first, best);
                        unclaimed.fill(1.0);
                        let grad_y = &grad_y[out + first..out + first + width];
                        for start in self.window(oy, ox) {
                            let start = start + first;
                            for ((((target, &value), &best), &g), flag) in grad_x
                                [start..start + width]
                                .iter_mut()
                                .zip(&image[start..start + width])
                                .zip(best.iter())
                                .zip(grad_y)
                                .zip(unclaimed.iter_mut())
                            {
                                // 1 for the first input equal to the maximum, else 0 (no
                                // branches, so the loop vectorizes).
                                let wins = if value == best { *flag } else { 0.0 };
                                *target = g * wins;
                                *flag -= wins;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Channels [`MaxPool::backward`] handles at a time.
const CHANNEL_BLOCK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_window_maximum_per_channel_and_drops_leftovers() {
        // 3×3 image, 2 channels; channel 1 is channel 0 negated. Pool 2 keeps the top-left 2×2.
        let channel0 = [1.0, 5.0, 9.0, 3.0, 2.0, 9.0, 9.0, 9.0, 9.0];
        let x: Vec<f32> = channel0.iter().flat_map(|&v| [v, -v]).collect();
        let pool = MaxPool {
            in_height: 3,
            in_width: 3,
            channels: 2,
            size: 2,
        };
        let mut y = [0.0; 2];
        pool.forward(&x, 1, &mut y);
        assert_eq!(y, [5.0, -1.0]);
        let mut grad_x = [9.0; 18];
        pool.backward(&x, &[1.0, 2.0], 1, &mut grad_x);
        // Input index = (row * 3 + col) * 2 + channel: 5 is at (0, 1), -1 at (0, 0).
        let mut expected = [0.0; 18];
        expected[2] = 1.0;
        expected[1] = 2.0;
        assert_eq!(grad_x, expected);
    }

    #[test]
    fn ties_go_to_the_first_maximum_in_window_order() {
        let pool = MaxPool {
            in_height: 2,
            in_width: 2,
            channels: 1,
            size: 2,
        };
        let x = [0.5, 2.0, 2.0, 2.0];
        let mut y = [0.0];
        pool.forward(&x, 1, &mut y);
        assert_eq!(y[0], 2.0);
        let mut grad_x = [9.0; 4];
        pool.backward(&x, &[3.0], 1, &mut grad_x);
        assert_eq!(grad_x, [0.0, 3.0, 0.0, 0.0]);
    }
}
