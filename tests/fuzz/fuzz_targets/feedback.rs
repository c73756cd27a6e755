//! The device's parsers of the feedback sphere-lite sends: a feedback page (JSON) turned into
//! an inbox file by the sync client (`FeedbackFile::from_items`), and the inbox file parser
//! (`FeedbackFile::parse`, TOML) on the raw input too; both are the protocol crate's
//! (`tinylcm_protocol::feedback_file`), which the runtime uses unchanged. An inbox file the
//! sync client would write must read back as the same verdicts (else the device acknowledges
//! feedback its inbox then refuses).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::api::FeedbackPage;
use tinylcm_protocol::feedback_file::FeedbackFile;

fuzz_target!(|data: &[u8]| {
    let inbox = Path::new("inbox/feedback.toml");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = FeedbackFile::parse(inbox, text);
    }
    let Ok(page) = serde_json::from_slice::<FeedbackPage>(data) else {
        return;
    };
    let (file, _configs) = FeedbackFile::from_items(&page.items);
    if file.validate(inbox).is_err() {
        return; // refused and acknowledged as refused: nothing is written
    }
    // What the runtime's `Submit::submit` writes.
    let Ok(text) = toml::to_string(&file) else {
        return; // submit reports this as invalid on this device, as above
    };
    let back = FeedbackFile::parse(inbox, &text).expect("the inbox reads what sync wrote");
    assert_eq!(back, file);
});
