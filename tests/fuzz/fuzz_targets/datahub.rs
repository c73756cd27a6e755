//! The server's parsers of a device's Data Hub parts: prediction samples
//! (`predictions.json`, with the images they name; `tinylcm_protocol::device_json::parse`, as
//! package processing runs it) and log files (JSON lines, each read as the log viewer shows it:
//! `device_json::logs::view_line`). Input: predictions JSON, `tinylcm_fuzz::SPLIT`, log lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::datahub::{
    MAX_LOG_LINE_BYTES, MAX_PREDICTIONS_PER_PACKAGE, PREDICTIONS_FILE,
};
use tinylcm_protocol::device_json::logs::view_line;
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
    let parsed = tinylcm_protocol::device_json::parse(&package, 1_700_000_000_000);
    assert!(parsed.predictions <= MAX_PREDICTIONS_PER_PACKAGE);
    // The log viewer reads a stored log file line by line, as sphere-lite's log page does.
    let text = String::from_utf8_lossy(parts[1]);
    for (number, raw) in text.split('\n').enumerate() {
        let raw = raw.trim_end_matches('\r');
        let line = view_line("fuzz-1", "logs/tinylcm.jsonl", number as u64 + 1, raw);
        assert!(line.message.len() <= MAX_LOG_LINE_BYTES);
    }
});
