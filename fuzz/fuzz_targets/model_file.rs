//! The model file decoder on arbitrary bytes. The checksum rejects almost every input, so each
//! input is also tried resealed (valid magic, version and CRC-32) to reach the header parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_train::model_file::{Model, FORMAT_VERSION, MAGIC};

fuzz_target!(|data: &[u8]| {
    let _ = Model::decode(data);
    let mut sealed = MAGIC.to_vec();
    sealed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    sealed.extend_from_slice(data);
    let crc = crc32fast::hash(&sealed);
    sealed.extend_from_slice(&crc.to_le_bytes());
    if let Ok(model) = Model::decode(&sealed) {
        assert_eq!(model.parameters.len(), model.architecture.parameter_count());
    }
});
