//! Max-pooling over non-overlapping `size × size` windows (stride = size), channels-last.
//!
//! A leftover row or column that does not fill a window is dropped (as Keras and PyTorch do).
//! Ties go to the first maximum in window order (row by row, left to right): forward records
//! that position and backward routes the whole gradient to it, so the gradient is the exact
//! derivative wherever the maximum is unique and a fixed, documented choice where it is not.

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

    /// x: [rows, in_h, in_w, c] -> y: [rows, in_h / size, in_w / size, c]; `argmax` receives,
    /// per output value, the index within its example of the input it came from.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32], argmax: &mut [u32]) {
        let (c, size) = (self.channels, self.size);
        let (out_h, out_w) = (self.out_height(), self.out_width());
        let out_len = self.out_len();
        for ((image, y), argmax) in x[..rows * self.in_len()]
            .chunks_exact(self.in_len())
            .zip(y[..rows * out_len].chunks_exact_mut(out_len))
            .zip(argmax[..rows * out_len].chunks_exact_mut(out_len))
        {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let out = (oy * out_w + ox) * c;
                    let best = &mut y[out..out + c];
                    let best_at = &mut argmax[out..out + c];
                    let first = (oy * size * self.in_width + ox * size) * c;
                    best.copy_from_slice(&image[first..first + c]);
                    for (slot, at) in best_at.iter_mut().enumerate() {
                        *at = (first + slot) as u32;
                    }
                    for dy in 0..size {
                        for dx in 0..size {
                            let start = ((oy * size + dy) * self.in_width + ox * size + dx) * c;
                            for (slot, &value) in image[start..start + c].iter().enumerate() {
                                // Strictly greater: a later equal value does not take over.
                                if value > best[slot] {
                                    best[slot] = value;
                                    best_at[slot] = (start + slot) as u32;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// grad_y: [rows, out_h, out_w, c] -> grad_x: [rows, in_h, in_w, c], each gradient sent to
    /// the input that won its window (all other inputs get 0).
    pub fn backward(&self, grad_y: &[f32], argmax: &[u32], rows: usize, grad_x: &mut [f32]) {
        let out_len = self.out_len();
        let grad_x = &mut grad_x[..rows * self.in_len()];
        grad_x.fill(0.0);
        for ((grad_x, grad_y), argmax) in grad_x
            .chunks_exact_mut(self.in_len())
            .zip(grad_y[..rows * out_len].chunks_exact(out_len))
            .zip(argmax[..rows * out_len].chunks_exact(out_len))
        {
            for (&g, &at) in grad_y.iter().zip(argmax) {
                grad_x[at as usize] += g;
            }
        }
    }
}

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
        let mut argmax = [0u32; 2];
        pool.forward(&x, 1, &mut y, &mut argmax);
        assert_eq!(y, [5.0, -1.0]);
        // Input index = (row * 3 + col) * 2 + channel.
        assert_eq!(argmax, [(1 * 2) as u32, 1]);
    }

    #[test]
    fn ties_go_to_the_first_maximum_in_window_order() {
        let pool = MaxPool {
            in_height: 2,
            in_width: 2,
            channels: 1,
            size: 2,
        };
        let mut y = [0.0];
        let mut argmax = [0u32];
        pool.forward(&[0.5, 2.0, 2.0, 2.0], 1, &mut y, &mut argmax);
        assert_eq!((y[0], argmax[0]), (2.0, 1));
        let mut grad_x = [9.0; 4];
        pool.backward(&[3.0], &argmax, 1, &mut grad_x);
        assert_eq!(grad_x, [0.0, 3.0, 0.0, 0.0]);
    }
}
