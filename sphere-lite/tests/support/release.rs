//! Signed model releases for the tests that publish them.

use tinylcm_protocol::package::sha256_hex;
use tinylcm_protocol::release::{FORMAT, ReleaseManifest, SigningKey};

/// A model file whose bytes depend on `version`: a real TFLite model (publishing runs the
/// flatbuffer walk) with `version`'s first byte repeated after it, which the walk ignores.
pub fn model_bytes(version: &str) -> Vec<u8> {
    let mut m = include_bytes!("../../../runtime/models/test/tiny_f32.tflite").to_vec();
    m.extend(std::iter::repeat_n(version.as_bytes()[0], 5000));
    m
}

/// `key`'s signed release JSON for `model` as `name`/`version`.
pub fn signed(key: &SigningKey, name: &str, version: &str, model: &[u8]) -> Vec<u8> {
    let manifest = ReleaseManifest {
        format: FORMAT,
        name: name.into(),
        version: version.into(),
        size: model.len() as u64,
        sha256: sha256_hex(model),
        model_manifest: "labels = [\"box\", \"ball\"]\n".into(),
        created_unix_ms: 1,
        notes: Some("test".into()),
        epoch: 0,
        compatible: None,
    };
    serde_json::to_vec(&key.sign(&manifest).unwrap()).unwrap()
}
