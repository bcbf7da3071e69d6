//! Fixtures shared by the integration tests: tiny synthetic MNIST-format datasets built in code.
#![allow(dead_code)]

pub mod protobuf;

use std::io::Write;
use std::path::Path;

use mnist_train::data::idx::encode_idx;

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("in-memory write");
    encoder.finish().expect("in-memory write")
}

/// Writes a learnable synthetic dataset (class k lights up the k-th horizontal band of the image)
/// with `train_count` training and `test_count` test images into `dir`, gzip-compressed or raw.
pub fn write_synthetic_dataset(
    dir: &Path,
    train_count: usize,
    test_count: usize,
    compressed: bool,
) {
    for (stem, count) in [("train", train_count), ("t10k", test_count)] {
        let mut images = Vec::with_capacity(count * 784);
        let mut labels = Vec::with_capacity(count);
        for index in 0..count {
            let label = (index * 7 + 3) % 10;
            labels.push(label as u8);
            for row in 0..28 {
                for col in 0..28 {
                    let band = row * 10 / 28;
                    let noise = ((index * 31 + row * 17 + col * 13) % 40) as u8;
                    images.push(if band == label { 200 + noise } else { noise });
                }
            }
        }
        let image_bytes = encode_idx(&[count, 28, 28], &images);
        let label_bytes = encode_idx(&[count], &labels);
        write_idx(
            dir,
            &format!("{stem}-images-idx3-ubyte"),
            &image_bytes,
            compressed,
        );
        write_idx(
            dir,
            &format!("{stem}-labels-idx1-ubyte"),
            &label_bytes,
            compressed,
        );
    }
}

pub fn write_idx(dir: &Path, name: &str, bytes: &[u8], compressed: bool) {
    if compressed {
        std::fs::write(dir.join(format!("{name}.gz")), gzip(bytes)).expect("write fixture");
    } else {
        std::fs::write(dir.join(name), bytes).expect("write fixture");
    }
}

/// Runs the binary, expecting failure with `code` and a single stderr line containing every `needle`.
pub fn assert_one_line_error(command: &mut assert_cmd::Command, code: i32, needles: &[&str]) {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}
