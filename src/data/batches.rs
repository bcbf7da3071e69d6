//! Turning a dataset into mini-batches: a seeded permutation per epoch, and a gather that
//! normalizes u8 pixels into a reused f32 buffer.

use rand::seq::SliceRandom;

use crate::data::Dataset;
use crate::kernels::{normalize_pixels, prefetch, prefetch_to_l2, PixelIndex};
use crate::rng::{stream, Stream};

/// The order in which epoch `epoch` visits the training examples. It depends only on the seed and
/// the epoch number, so a resumed run replays exactly the same order.
pub fn epoch_permutation(example_count: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..example_count as u32).collect();
    let mut rng = stream(seed, Stream::Shuffle, epoch as u64, 0);
    order.shuffle(&mut rng);
    order
}

/// Starts loading the images at `indices` into this core's cache (not the first level: the step
/// running meanwhile needs that), so that a gather of them a step later does not wait for memory.
pub fn prefetch_images(dataset: &Dataset, indices: &[u32]) {
    for &index in indices {
        prefetch_to_l2(dataset.image(index as usize));
    }
}

/// What a pixel (0..=255) is multiplied by to scale it to [0, 1].
pub const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// Indexes the nonzero pixels of the images at `indices` (scaled by [`PIXEL_SCALE`], as
/// [`gather_normalized`] would write them) into `nonzeros`, and copies their labels into
/// `labels`: a gather for a step whose first layer reads only the nonzeros.
pub fn index_batch(
    dataset: &Dataset,
    indices: &[u32],
    nonzeros: &mut PixelIndex,
    labels: &mut [u8],
) {
    let image = |row: usize| dataset.image(indices[row] as usize);
    nonzeros.index(indices.len(), image, PIXEL_SCALE);
    for (label, &index) in labels.iter_mut().zip(indices) {
        *label = dataset.labels[index as usize];
    }
}

/// Copies the images at `indices` into `inputs` (`[indices.len(), pixels]`, row-major),
/// scaled from 0..=255 to [0, 1], and their labels into `labels`. The rows are scattered over the
/// dataset, so each image is prefetched a few rows ahead to hide the memory latency.
pub fn gather_normalized(
    dataset: &Dataset,
    indices: &[u32],
    inputs: &mut [f32],
    labels: &mut [u8],
) {
    let pixels = dataset.pixels_per_image();
    debug_assert_eq!(inputs.len(), indices.len() * pixels);
    const PREFETCH_AHEAD: usize = 3;
    for &index in indices.iter().take(PREFETCH_AHEAD) {
        prefetch(dataset.image(index as usize));
    }
    for (position, ((row, &index), label)) in inputs
        .chunks_exact_mut(pixels)
        .zip(indices)
        .zip(labels.iter_mut())
        .enumerate()
    {
        if let Some(&ahead) = indices.get(position + PREFETCH_AHEAD) {
            prefetch(dataset.image(ahead as usize));
        }
        let index = index as usize;
        normalize_pixels(dataset.image(index), row, PIXEL_SCALE);
        *label = dataset.labels[index];
    }
}
