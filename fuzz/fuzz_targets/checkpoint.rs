//! The checkpoint decoder on arbitrary bytes, plain and sealed (see sealed.rs).
#![no_main]

mod sealed;

use libfuzzer_sys::fuzz_target;
use mnist_train::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let _ = Checkpoint::decode(data);
    if let Ok(checkpoint) = Checkpoint::decode(&sealed::sealed(data)) {
        let architecture = &checkpoint.spec.training.architecture;
        assert_eq!(checkpoint.params.len(), architecture.parameter_count());
    }
});
