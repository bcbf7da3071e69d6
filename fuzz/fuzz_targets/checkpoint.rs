//! The checkpoint decoder on arbitrary bytes, plain and resealed (see model_file.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_train::checkpoint::Checkpoint;
use mnist_train::model_file::{FORMAT_VERSION, MAGIC};

fuzz_target!(|data: &[u8]| {
    let _ = Checkpoint::decode(data);
    let mut sealed = MAGIC.to_vec();
    sealed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    sealed.extend_from_slice(data);
    let crc = crc32fast::hash(&sealed);
    sealed.extend_from_slice(&crc.to_le_bytes());
    if let Ok(checkpoint) = Checkpoint::decode(&sealed) {
        assert_eq!(
            checkpoint.params.len(),
            checkpoint.config.architecture.parameter_count()
        );
    }
});
