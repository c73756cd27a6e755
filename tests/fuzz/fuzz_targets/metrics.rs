//! The server's parser of a device's metrics (a package's `metrics` member, JSON, flattened
//! into bounded, validated points), run as package processing runs it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::package::FileKind;

fuzz_target!(|data: &[u8]| {
    let package = tinylcm_fuzz::package(vec![("metrics.json", FileKind::Metrics, data.to_vec())]);
    let parsed = tinylcm_protocol::device_json::parse(&package, 1_700_000_000_000);
    assert!(parsed.metric_points <= 256);
});
