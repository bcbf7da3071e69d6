//! Data loading: IDX files into u8 datasets, and batches gathered from them.

pub mod batches;
pub mod idx;
pub mod mnist;
pub mod split;

pub use batches::{epoch_permutation, gather_normalized, prefetch_images};
pub use mnist::{load_split, load_train_and_test, Dataset, DatasetKind, Split};
