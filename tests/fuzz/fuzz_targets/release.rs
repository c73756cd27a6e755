//! Signed model releases as a device reads them from the server's model assignment, with the
//! protocol crate's `release_policy` (the runtime's model store maps its refusals into its
//! own errors): the signed release (JSON, `parse_signed`), its verification under a policy
//! (`verify_release`: signature, revoked keys, size, epoch floor, compatible) and the model
//! manifest inside (`model_manifest`: parsed, checked, naming the release's SHA-256). First
//! byte 0: the input is the signed release as sent; otherwise the rest is a release manifest
//! that the target signs with a trusted key first, so the checks after the signature are
//! reached.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::release::{PublicKey, ReleaseManifest, SignedRelease, SigningKey};
use tinylcm_protocol::release_policy::{Policy, model_manifest, parse_signed, verify_release};

/// A fixed key (the fuzzer must reproduce a run), made from a constant seed.
fn key() -> &'static (SigningKey, PublicKey) {
    static KEY: OnceLock<(SigningKey, PublicKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        use base64::Engine as _;
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let key = SigningKey::from_text(&format!("tinylcm-release-secret:{seed}"))
            .expect("a 32-byte seed is a signing key");
        let public = key.public();
        (key, public)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (key, public) = key();
    let signed: SignedRelease = if mode == 0 {
        match parse_signed(rest, "the assignment's release") {
            Ok(s) => s,
            Err(_) => return,
        }
    } else {
        let Ok(manifest) = serde_json::from_slice::<ReleaseManifest>(rest) else {
            return;
        };
        match key.sign(&manifest) {
            Ok(s) => s,
            Err(_) => return, // the signer refuses an invalid manifest
        }
    };
    let policy = Policy {
        trusted: std::slice::from_ref(public),
        revoked: &[],
        max_bytes: 64 * 1024 * 1024,
        compatible: None,
        epoch_floor: 0,
    };
    if let Ok(release) = verify_release(&signed, &policy, "the assignment's release") {
        release.validate().expect("a verified release is valid");
        if let Ok(manifest) = model_manifest(&release) {
            assert_eq!(manifest.sha256.to_ascii_lowercase(), release.sha256);
        }
    }
});
