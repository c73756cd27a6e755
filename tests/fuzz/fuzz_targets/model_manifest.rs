//! The runtime's model manifest (`<model>.toml`: labels, input spec, output roles, goldens),
//! which arrives inside a signed release: `tinylcm::model::ModelManifest::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tinylcm::model::ModelManifest::parse(text, std::path::Path::new("model.toml"));
    }
});
