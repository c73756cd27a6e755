//! The server's parser of a device's drift events (a package's `drift-events` member, JSON),
//! run as package processing runs it (`tinylcm_protocol::device_json::parse`), with two
//! `sample` members for the events to name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::package::FileKind;

fuzz_target!(|data: &[u8]| {
    let package = tinylcm_fuzz::package(vec![
        (
            "samples/00000000000000000007.jpg",
            FileKind::Sample,
            vec![0xff, 0xd8],
        ),
        ("samples/a.jpg", FileKind::Sample, vec![0xff, 0xd8]),
        ("drift-events.json", FileKind::DriftEvents, data.to_vec()),
    ]);
    let parsed = tinylcm_protocol::device_json::parse(&package, 1_700_000_000_000);
    assert!(parsed.embeddings <= parsed.drift_events);
});
