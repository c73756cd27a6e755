//! The server's parsers of a device's Data Hub parts: prediction samples
//! (`predictions.json`, with the images they name) and log files (JSON lines). Input:
//! predictions JSON, `tinylcm_fuzz::SPLIT`, log lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::datahub::{MAX_PREDICTIONS_PER_PACKAGE, PREDICTIONS_FILE};
use tinylcm_protocol::package::FileKind;

fuzz_target!(|data: &[u8]| {
    let parts = tinylcm_fuzz::parts(data, 2);
    let package = tinylcm_fuzz::package(vec![
        (
            "predictions/box-1.jpg",
            FileKind::Prediction,
            vec![0xff, 0xd8],
        ),
        (PREDICTIONS_FILE, FileKind::Prediction, parts[0].to_vec()),
        ("logs/tinylcm.jsonl", FileKind::Logs, parts[1].to_vec()),
    ]);
    let parsed = sphere_lite::domain::device_json::parse(&package, 1_700_000_000_000);
    assert!(parsed.predictions <= MAX_PREDICTIONS_PER_PACKAGE);
});
