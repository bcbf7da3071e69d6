//! A shard of 8-bit images indexed for the first layer's sparse products by bitmaps of their
//! nonzero pixels: one bit per pixel by image (for x·W) and one bit per image by pixel (for xᵀ·g).
//!
//! Building it costs a compare per 16 pixels and a 16 × 16 byte transpose per block of the
//! shard, nothing per nonzero: the lists of (position, value) pairs of [`super::SparseRows`]
//! cost stores per nonzero in each direction. Values come from the copied pixels through a
//! 256-entry table (`pixel as f32 * scale`, the floats a gather would write), so the products see
//! exactly the entries of the float index, in the same order, and give the same bits.

use super::backend;
use super::sparse::Nonzeros;

/// Bits in one bitmap word.
const WORD: usize = 64;

/// Side of the byte blocks the pixels are transposed in.
const BLOCK: usize = 16;

/// A shard's images (up to `capacity` of `cols` pixels) and their nonzero pixels, by row and by
/// column. Buffers are sized up front: indexing allocates nothing.
#[derive(Debug, Clone)]
pub struct PixelIndex {
    cols: usize,
    capacity: usize,
    rows: usize,
    /// The images' pixels, [capacity, cols].
    pixels: Vec<u8>,
    /// The same transposed, [cols, stride]: a pixel's value in every image, in one cache line
    /// for up to 64 images (`stride` is `capacity` rounded up to a whole block).
    pixels_by_col: Vec<u8>,
    stride: usize,
    /// Row r's nonzero pixels: bit k of words `r * row_words..`.
    row_bits: Vec<u64>,
    row_words: usize,
    /// Pixel k's nonzero images: bit r of words `k * col_words..`.
    col_bits: Vec<u64>,
    col_words: usize,
    /// A pixel's value as the products read it.
    values: [f32; 256],
}

impl PixelIndex {
    /// An empty index for up to `capacity` images of `cols` pixels.
    pub fn new(capacity: usize, cols: usize) -> Self {
        let stride = capacity.next_multiple_of(BLOCK).max(BLOCK);
        let (row_words, col_words) = (cols.div_ceil(WORD), stride.div_ceil(WORD));
        PixelIndex {
            cols,
            capacity,
            rows: 0,
            pixels: vec![0; capacity * cols],
            pixels_by_col: vec![0; cols * stride],
            stride,
            row_bits: vec![0; capacity * row_words],
            row_words,
            col_bits: vec![0; cols * col_words],
            col_words,
            values: [0.0; 256],
        }
    }

    /// Nonzero pixels indexed by the last [`PixelIndex::index`].
    pub fn nonzeros(&self) -> usize {
        let words = &self.row_bits[..self.rows * self.row_words];
        words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Indexes `rows` images, image `r` being `image(r)`, as the matrix of their pixels scaled by
    /// `scale` (`pixel as f32 * scale`). The scale is positive and normal, so a pixel's value is
    /// zero exactly when the pixel is.
    pub fn index<'p>(&mut self, rows: usize, image: impl Fn(usize) -> &'p [u8], scale: f32) {
        assert!(
            rows <= self.capacity,
            "PixelIndex::index: {rows} images in an index made for {}",
            self.capacity
        );
        assert!(
            scale.is_normal() && scale > 0.0,
            "PixelIndex::index: scale {scale} is not a positive normal number"
        );
        let (cols, row_words) = (self.cols, self.row_words);
        self.rows = rows;
        for (pixel, value) in self.values.iter_mut().enumerate() {
            *value = pixel as f32 * scale;
        }
        for r in 0..rows {
            let source = image(r);
            assert_eq!(source.len(), cols, "PixelIndex::index: image size");
            self.pixels[r * cols..(r + 1) * cols].copy_from_slice(source);
            nonzero_bits(
                source,
                &mut self.row_bits[r * row_words..(r + 1) * row_words],
            );
        }
        self.col_bits.fill(0);
        for first_row in (0..rows).step_by(BLOCK) {
            self.transpose_rows(first_row);
        }
    }

    /// Transposes the block of images from `first_row` into `pixels_by_col` and sets their bits
    /// in `col_bits`. Rows past the last image read as zeros.
    fn transpose_rows(&mut self, first_row: usize) {
        let wide_cols = match backend() {
            // SAFETY: `backend()` only returns a backend the CPU supports.
            #[cfg(target_arch = "x86_64")]
            super::Backend::Avx512 => unsafe { self.transpose_wide_avx512(first_row) },
            #[cfg(target_arch = "x86_64")]
            super::Backend::Avx2 => unsafe { self.transpose_wide_avx2(first_row) },
            _ => 0,
        };
        let (cols, stride, col_words) = (self.cols, self.stride, self.col_words);
        let (word, shift) = (first_row / WORD, first_row % WORD);
        let images = first_row..(first_row + BLOCK).min(self.rows);
        let row = |r: usize| &self.pixels[r * cols..(r + 1) * cols];
        let mut block = [[0u8; BLOCK]; BLOCK];
        for first_col in (wide_cols..cols).step_by(BLOCK) {
            let width = BLOCK.min(cols - first_col);
            let mut rows_in = [[0u8; BLOCK]; BLOCK];
            for (into, r) in rows_in.iter_mut().zip(images.clone()) {
                let pixels = &row(r)[first_col..first_col + width];
                match <&[u8; BLOCK]>::try_from(pixels) {
                    Ok(whole) => *into = *whole,
                    Err(_) => into[..width].copy_from_slice(pixels),
                }
            }
            transpose_block(&rows_in, &mut block);
            for (c, column) in block.iter().enumerate().take(width) {
                let k = first_col + c;
                let start = k * stride + first_row;
                self.pixels_by_col[start..start + BLOCK].copy_from_slice(column);
                self.col_bits[k * col_words + word] |= nonzero_mask(column) << shift;
            }
        }
    }
}

/// [`PixelIndex::transpose_rows`] of the first columns, several blocks side by side in one wide
/// vector (its 128-bit lanes interleave independently); returns how many columns it did.
macro_rules! transpose_wide {
    ($name:ident, $features:literal, $vector:ty, $load:ident, $zero:ident, $low:ident, $high:ident,
     $nonzero:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(&mut self, first_row: usize) -> usize {
            use std::arch::x86_64::*;
            const WIDTH: usize = std::mem::size_of::<$vector>();
            let (cols, stride, col_words) = (self.cols, self.stride, self.col_words);
            let (word, shift) = (first_row / WORD, first_row % WORD);
            let images = first_row..(first_row + BLOCK).min(self.rows);
            let mut first_col = 0;
            while first_col + WIDTH <= cols {
                let mut a: [$vector; BLOCK] = [$zero(); BLOCK];
                for (v, r) in a.iter_mut().zip(images.clone()) {
                    let pixels = &self.pixels[r * cols + first_col..][..WIDTH];
                    // SAFETY: the load reads the WIDTH bytes of `pixels`.
                    *v = unsafe { $load(pixels.as_ptr().cast()) };
                }
                for _ in 0..4 {
                    let b = a;
                    for i in 0..BLOCK / 2 {
                        a[2 * i] = $low(b[i], b[i + BLOCK / 2]);
                        a[2 * i + 1] = $high(b[i], b[i + BLOCK / 2]);
                    }
                }
                for (j, &v) in a.iter().enumerate() {
                    let nonzero: u64 = $nonzero(v);
                    // SAFETY: a vector is its bytes, lane by lane.
                    let lanes: [[u8; BLOCK]; WIDTH / BLOCK] = unsafe { std::mem::transmute(v) };
                    for (l, lane) in lanes.iter().enumerate() {
                        let k = first_col + BLOCK * l + j;
                        let start = k * stride + first_row;
                        self.pixels_by_col[start..start + BLOCK].copy_from_slice(lane);
                        let bits = (nonzero >> (BLOCK * l)) & 0xffff;
                        self.col_bits[k * col_words + word] |= bits << shift;
                    }
                }
                first_col += WIDTH;
            }
            first_col
        }
    };
}

impl PixelIndex {
    transpose_wide!(
        transpose_wide_avx512,
        "avx512f,avx512bw,avx2",
        __m512i,
        _mm512_loadu_si512,
        _mm512_setzero_si512,
        _mm512_unpacklo_epi8,
        _mm512_unpackhi_epi8,
        |v| _mm512_test_epi8_mask(v, v)
    );
    transpose_wide!(
        transpose_wide_avx2,
        "avx2",
        __m256i,
        _mm256_loadu_si256,
        _mm256_setzero_si256,
        _mm256_unpacklo_epi8,
        _mm256_unpackhi_epi8,
        |v| u64::from(!(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256())) as u32))
    );
}

/// `out[c][r] = rows[r][c]` for a 16 × 16 block of bytes.
#[inline(always)]
fn transpose_block(rows: &[[u8; BLOCK]; BLOCK], out: &mut [[u8; BLOCK]; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    {
        transpose_block_sse2(rows, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (r, row) in rows.iter().enumerate() {
        for (c, &pixel) in row.iter().enumerate() {
            out[c][r] = pixel;
        }
    }
}

/// [`transpose_block`] in four rounds of byte interleaving (SSE2, every x86-64 CPU has it): each
/// round rotates the 8-bit (row, column) address of every byte left by one, so four rounds swap
/// row and column.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose_block_sse2(rows: &[[u8; BLOCK]; BLOCK], out: &mut [[u8; BLOCK]; BLOCK]) {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86-64; every load and store covers one 16-byte array.
    unsafe {
        let mut a: [__m128i; BLOCK] =
            std::array::from_fn(|r| _mm_loadu_si128(rows[r].as_ptr().cast()));
        for _ in 0..4 {
            let b = a;
            for i in 0..BLOCK / 2 {
                a[2 * i] = _mm_unpacklo_epi8(b[i], b[i + BLOCK / 2]);
                a[2 * i + 1] = _mm_unpackhi_epi8(b[i], b[i + BLOCK / 2]);
            }
        }
        for (column, v) in out.iter_mut().zip(a) {
            _mm_storeu_si128(column.as_mut_ptr().cast(), v);
        }
    }
}

/// Sets bit `k % 64` of `words[k / 64]` for every nonzero `pixels[k]`, clears the others.
fn nonzero_bits(pixels: &[u8], words: &mut [u64]) {
    for (word, chunk) in words.iter_mut().zip(pixels.chunks(WORD)) {
        *word = chunk
            .chunks(BLOCK)
            .enumerate()
            .fold(0, |bits, (part, sixteen)| {
                let mask = match <&[u8; BLOCK]>::try_from(sixteen) {
                    Ok(whole) => nonzero_mask(whole),
                    Err(_) => nonzero_mask_scalar(sixteen),
                };
                bits | mask << (BLOCK * part)
            });
    }
}

/// Bit i set for every nonzero `pixels[i]`.
#[inline(always)]
fn nonzero_mask(pixels: &[u8; BLOCK]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; the load reads the 16 bytes of `pixels`.
        let zero = unsafe {
            let v = _mm_loadu_si128(pixels.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128()))
        };
        u64::from(!zero as u16)
    }
    #[cfg(not(target_arch = "x86_64"))]
    nonzero_mask_scalar(pixels)
}

/// Bit i set for every nonzero `pixels[i]` (up to 64 pixels), one pixel at a time.
fn nonzero_mask_scalar(pixels: &[u8]) -> u64 {
    pixels
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &p)| mask | (u64::from(p != 0) << i))
}

/// Calls `visit(base + i)` for each set bit i of `bits`, in increasing order.
#[inline(always)]
fn each_set_bit(mut bits: u64, base: usize, mut visit: impl FnMut(usize)) {
    while bits != 0 {
        visit(base + bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
}

impl Nonzeros for PixelIndex {
    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    fn each_in_row(&self, r: usize, mut visit: impl FnMut(u32, f32)) {
        let words = &self.row_bits[r * self.row_words..(r + 1) * self.row_words];
        let pixels = &self.pixels[r * self.cols..(r + 1) * self.cols];
        for (w, &bits) in words.iter().enumerate() {
            each_set_bit(bits, w * WORD, |k| {
                visit(k as u32, self.values[pixels[k] as usize])
            });
        }
    }

    #[inline(always)]
    fn each_in_col(&self, k: usize, mut visit: impl FnMut(u32, f32)) {
        let pixels = &self.pixels_by_col[k * self.stride..(k + 1) * self.stride];
        let mut visit_row = |r: usize| visit(r as u32, self.values[pixels[r] as usize]);
        if self.col_words == 1 {
            each_set_bit(self.col_bits[k], 0, visit_row);
        } else {
            let words = &self.col_bits[k * self.col_words..(k + 1) * self.col_words];
            for (w, &bits) in words.iter().enumerate() {
                each_set_bit(bits, w * WORD, &mut visit_row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::kernels::{
        sparse_matmul, sparse_transposed_matmul, with_backend, Backend, SparseRows,
    };
    use crate::rng::{stream, Stream};

    /// Every nonzero of a row or column as (position, value bits), in the order visited.
    fn entries(each: impl FnOnce(&mut dyn FnMut(u32, f32))) -> Vec<(u32, u32)> {
        let mut list = Vec::new();
        each(&mut |position, value| list.push((position, value.to_bits())));
        list
    }

    fn random_pixels(count: usize, seed: u64) -> Vec<u8> {
        let mut rng = stream(seed, Stream::Init, 0, 0);
        (0..count)
            .map(|_| match rng.next_f32() {
                u if u < 0.7 => 0,
                _ => (rng.next_f32() * 255.0) as u8 + 1,
            })
            .collect()
    }

    #[test]
    fn the_pixel_index_visits_the_entries_of_the_float_index_of_the_scaled_pixels() {
        // Column counts with partial blocks after the 64- and 32-wide paths (45, 150, 784),
        // row counts filling part of a block, two blocks, and two words of image bits (70).
        // The smallest normal scale gives the smallest values.
        for (rows, cols, capacity) in [(13, 45, 16), (20, 784, 24), (70, 150, 96), (1, 784, 1)] {
            let pixels = random_pixels(capacity * cols, rows as u64);
            for scale in [1.0 / 255.0, 1.0, f32::MIN_POSITIVE] {
                let floats = Array2::from_shape_fn((rows, cols), |(r, k)| {
                    pixels[r * cols + k] as f32 * scale
                });
                for backend in Backend::supported() {
                    let mut expected = SparseRows::new(rows, cols);
                    let mut index = PixelIndex::new(capacity, cols);
                    with_backend(backend, || {
                        let floats = floats.as_slice().expect("row-major");
                        expected.index(floats, rows);
                        // A full batch of other images first: nothing of it may remain.
                        let others = random_pixels(capacity * cols, 99);
                        index.index(capacity, |r| &others[r * cols..(r + 1) * cols], scale);
                        index.index(rows, |r| &pixels[r * cols..(r + 1) * cols], scale);
                    });
                    let case = format!("{backend:?} {rows}x{cols} scale {scale}");
                    assert!(expected.nonzeros() > 0, "{case}");
                    assert_eq!(index.rows(), rows, "{case}");
                    assert_eq!(index.nonzeros(), expected.nonzeros(), "{case}");
                    for r in 0..rows {
                        assert_eq!(
                            entries(|visit| index.each_in_row(r, visit)),
                            entries(|visit| expected.each_in_row(r, visit)),
                            "{case} row {r}"
                        );
                    }
                    for k in 0..cols {
                        assert_eq!(
                            entries(|visit| index.each_in_col(k, visit)),
                            entries(|visit| expected.each_in_col(k, visit)),
                            "{case} column {k}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn products_over_the_pixel_index_give_the_bits_of_those_over_the_float_index() {
        let (rows, cols, n) = (16, 784, 64);
        let pixels = random_pixels(rows * cols, 5);
        let floats: Vec<f32> = pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect();
        let b = Array2::from_shape_fn((cols, n), |(i, j)| ((i * 31 + j) % 97) as f32 * 1e-3 - 0.04);
        let g = Array2::from_shape_fn((rows, n), |(i, j)| ((i * 7 + j) % 13) as f32 * 1e-3 - 0.006);
        for backend in Backend::supported() {
            with_backend(backend, || {
                let mut by_floats = SparseRows::new(rows, cols);
                by_floats.index(&floats, rows);
                let mut by_pixels = PixelIndex::new(rows, cols);
                by_pixels.index(rows, |r| &pixels[r * cols..(r + 1) * cols], 1.0 / 255.0);
                let (mut c_floats, mut c_pixels) =
                    (Array2::zeros((rows, n)), Array2::zeros((rows, n)));
                sparse_matmul(&by_floats, b.view(), &mut c_floats.view_mut(), 0.0);
                sparse_matmul(&by_pixels, b.view(), &mut c_pixels.view_mut(), 0.0);
                let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c_floats), bits(&c_pixels), "{backend:?} x·b");
                let (mut t_floats, mut t_pixels) =
                    (Array2::zeros((cols, n)), Array2::zeros((cols, n)));
                sparse_transposed_matmul(
                    &[(&by_floats, g.view())],
                    &mut t_floats.view_mut(),
                    0.0,
                    None,
                );
                sparse_transposed_matmul(
                    &[(&by_pixels, g.view())],
                    &mut t_pixels.view_mut(),
                    0.0,
                    None,
                );
                assert_eq!(bits(&t_floats), bits(&t_pixels), "{backend:?} xᵀ·g");
            });
        }
    }
}
