//! Data loading: IDX files into u8 datasets, and batches gathered from them.

pub mod batches;
pub mod idx;
pub mod mnist;
pub mod split;

pub use batches::{
    epoch_permutation, gather_normalized, index_batch, prefetch_images, PIXEL_SCALE,
};
pub use mnist::{load_split, load_train_and_test, Dataset, DatasetKind, Split};
