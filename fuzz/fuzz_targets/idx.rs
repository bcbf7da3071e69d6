//! The IDX reader on arbitrary bytes, raw or gzip (detected by content, as for files): it must
//! return an error or a self-consistent array, never panic, hang or allocate by the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_train::data::idx::read_idx_bytes;

fuzz_target!(|data: &[u8]| {
    for ndims in 1..=3 {
        if let Ok(array) = read_idx_bytes(data, ndims) {
            assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
        }
    }
});
