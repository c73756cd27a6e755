//! The server's parser of a device's metrics (a package's `metrics` member, JSON, flattened
//! into bounded, validated points), run as package processing runs it, and its reading of the
//! release the device refused from the same file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::device_json::refusal::{RefusalReport, refusal_report_of};
use tinylcm_protocol::package::FileKind;

fuzz_target!(|data: &[u8]| {
    let package = tinylcm_fuzz::package(vec![("metrics.json", FileKind::Metrics, data.to_vec())]);
    let parsed = tinylcm_protocol::device_json::parse(&package, 1_700_000_000_000);
    assert!(parsed.metric_points <= 256);
    if let RefusalReport::Refused(r) = refusal_report_of(&package) {
        assert!(r.is_valid(), "an invalid refusal was read: {r:?}");
    }
});
