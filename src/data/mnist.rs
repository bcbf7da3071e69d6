//! The MNIST-style dataset: u8 images and labels, plus class names.

use std::path::{Path, PathBuf};

use crate::data::idx::{read_idx_file, read_idx_file_checked, read_idx_file_header};
use crate::error::{Error, Result};
use crate::kernels::bytes_with_huge_pages;

/// Images are kept as raw u8 pixels (47 MB for MNIST's training set instead of 188 MB as f32);
/// batches are normalized while they are gathered.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `len * rows * cols` pixels, row-major, one image after another.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub class_names: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The pixels of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let size = self.pixels_per_image();
        &self.images[index * size..(index + 1) * size]
    }

    /// Keeps only the first `count` examples (for quick runs with `--limit`).
    pub fn truncate(&mut self, count: usize) {
        if count < self.len() {
            self.labels.truncate(count);
            self.images.truncate(count * self.pixels_per_image());
        }
    }

    /// A new dataset holding the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = bytes_with_huge_pages(indices.len() * self.pixels_per_image());
        for &index in indices {
            images.extend_from_slice(self.image(index));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
            class_names: self.class_names.clone(),
        }
    }
}

/// Which dataset a folder holds; decides the class names. Model files and checkpoints store it
/// by [`DatasetKind::name`]; a name this version does not know is refused when they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetKind {
    Mnist,
    Fashion,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 2] = [DatasetKind::Mnist, DatasetKind::Fashion];

    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::Fashion => "fashion",
        }
    }

    pub fn class_names(self) -> Vec<String> {
        let names: &[&str] = match self {
            DatasetKind::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::Fashion => &[
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Where the dataset lives when `--data-dir` is not given.
    pub fn default_dir(self) -> PathBuf {
        match self {
            // `data/` of the working directory, else the copy committed beside the sources.
            DatasetKind::Mnist => {
                let local = PathBuf::from("data");
                if local.join("train-labels-idx1-ubyte.gz").exists()
                    || local.join("train-labels-idx1-ubyte").exists()
                {
                    local
                } else {
                    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
                }
            }
            DatasetKind::Fashion => PathBuf::from("/usr/share/datasets/fashion-mnist"),
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;

    /// The stored name (`mnist`, `fashion`); anything else is an error naming the known ones.
    fn from_str(name: &str) -> std::result::Result<Self, String> {
        DatasetKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = DatasetKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown dataset {name:?} (this version knows {})",
                    known.join(" and ")
                )
            })
    }
}

impl TryFrom<String> for DatasetKind {
    type Error = String;
    fn try_from(name: String) -> std::result::Result<Self, String> {
        name.parse()
    }
}

impl From<DatasetKind> for String {
    fn from(kind: DatasetKind) -> String {
        kind.name().to_string()
    }
}

/// Which half of the dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn file_stem(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Finds `name` or `name.gz` in `dir`. The content, not the suffix, later decides how it is read.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if !dir.exists() {
        return Err(Error::data(dir, "data directory does not exist"));
    }
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            "is not a directory (expected the MNIST folder)",
        ));
    }
    for candidate in [dir.join(format!("{name}.gz")), dir.join(name)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(Error::data(
        dir.join(name),
        format!("missing (looked for {name} and {name}.gz)"),
    ))
}

/// Loads the training and the test split of `dir`, decompressing both at once (the test split on
/// a second thread): the training images dominate, so the test set comes almost for free.
pub fn load_train_and_test(dir: &Path, kind: DatasetKind) -> Result<(Dataset, Dataset)> {
    std::thread::scope(|scope| {
        let test = scope.spawn(|| load_split(dir, Split::Test, kind));
        let train = load_split(dir, Split::Train, kind);
        let test = test
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((train?, test?))
    })
}

/// Loads one split (train or test) of an MNIST-format dataset from `dir`.
pub fn load_split(dir: &Path, split: Split, kind: DatasetKind) -> Result<Dataset> {
    let images_path = find_file(dir, &format!("{}-images-idx3-ubyte", split.file_stem()))?;
    let labels_path = find_file(dir, &format!("{}-labels-idx1-ubyte", split.file_stem()))?;
    // Both headers first: shapes and counts are cross-checked before either body is read, so
    // one file's lying header (say, a gzip bomb claiming billions of labels) cannot make us
    // read or allocate what the other file contradicts.
    let label_count = read_idx_file_header(&labels_path, 1)?[0];
    let check_images = |dims: &[usize]| -> std::result::Result<(), String> {
        let (count, rows, cols) = (dims[0], dims[1], dims[2]);
        if rows != 28 || cols != 28 {
            return Err(format!("images are {rows}x{cols}, expected 28x28"));
        }
        if count == 0 {
            return Err("holds no images".to_string());
        }
        if count != label_count {
            return Err(format!(
                "has {count} images but {} has {label_count} labels",
                labels_path.display()
            ));
        }
        Ok(())
    };
    let images_dims = read_idx_file_header(&images_path, 3)?;
    check_images(&images_dims).map_err(|message| Error::data(&images_path, message))?;
    let labels = read_idx_file(&labels_path, 1)?;
    let class_names = kind.class_names();
    if let Some(position) = labels
        .data
        .iter()
        .position(|&label| label as usize >= class_names.len())
    {
        return Err(Error::data(
            &labels_path,
            format!(
                "label {} at index {position} is out of range 0-{}",
                labels.data[position],
                class_names.len() - 1
            ),
        ));
    }
    let images = read_idx_file_checked(&images_path, 3, &check_images)?;
    let (rows, cols) = (images.dims[1], images.dims[2]);
    Ok(Dataset {
        images: images.data,
        labels: labels.data,
        rows,
        cols,
        class_names,
    })
}
