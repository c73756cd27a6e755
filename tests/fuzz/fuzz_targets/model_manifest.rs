//! The model manifest (`<model>.toml`: labels, input spec, output roles, goldens), which
//! arrives inside a signed release: `tinylcm_protocol::model_manifest::ModelManifest::parse`,
//! the parser the runtime uses. What it accepts must keep its bounds and survive a round
//! trip through TOML (`tinylcm model sign` writes manifests back).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::model_manifest::{MAX_GOLDENS, ModelManifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = ModelManifest::parse(text, Path::new("model.toml")) else {
        return;
    };
    assert!(manifest.golden.len() <= MAX_GOLDENS);
    let written = toml::to_string(&manifest).expect("an accepted manifest serialises");
    let back = ModelManifest::parse(&written, Path::new("model.toml"))
        .expect("an accepted manifest, written back, is accepted again");
    assert_eq!(back, manifest);
});
