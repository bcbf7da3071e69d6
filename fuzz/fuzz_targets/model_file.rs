//! The model file decoder on arbitrary bytes, plain and sealed (see sealed.rs).
#![no_main]

mod sealed;

use libfuzzer_sys::fuzz_target;
use mnist_train::model_file::Model;

fuzz_target!(|data: &[u8]| {
    let _ = Model::decode(data);
    if let Ok(model) = Model::decode(&sealed::sealed(data)) {
        assert_eq!(model.parameters.len(), model.architecture.parameter_count());
    }
});
