//! The `.tflite` flatbuffer walker that guards LiteRT (`tinylcm_protocol::tflite`): no panic,
//! the two entry points agree, and a model it accepts is loaded by LiteRT in a child process
//! (`tinylcm_fuzz::litert`), where a crash is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::tflite::{traits, verify_tflite};

fuzz_target!(|data: &[u8]| {
    let verdict = verify_tflite(data);
    // Backend selection reads the traits of the same bytes: it must accept exactly what the
    // walk accepts (it re-walks first, then follows offsets the walk proved in bounds).
    assert_eq!(verdict.is_ok(), traits(data).is_ok(), "{verdict:?}");
    if verdict.is_ok() {
        tinylcm_fuzz::litert::offer(data);
    }
});
