//! Remote configuration fragments (TOML) as both sides check them: the allow-list check and
//! merge (`tinylcm_protocol::remote_config::{parse_fragment, effective}`), which the server
//! runs before it queues a fragment and the device again before it applies one
//! (`Config::load_with_remote` refuses what `parse_fragment` refuses, then extracts the whole
//! config; that part is the runtime's own schema, tested over every allowed key at its
//! bounds in `runtime/src/config.rs`). What the server sends (the effective fragment) must
//! pass the same allow-list again and be its own canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::remote_config::{effective, parse_fragment};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_fragment(text);
    match effective([text]) {
        Ok(sent) => {
            assert!(parsed.is_ok(), "a fragment that merges passes the allow-list");
            parse_fragment(&sent.toml)
                .expect("the fragment the server sends passes the allow-list");
            let again = effective([sent.toml.as_str()]).expect("the sent fragment merges again");
            assert_eq!(again, sent, "the sent fragment is its own canonical form");
        }
        Err(_) => assert!(parsed.is_err(), "a fragment that passes the allow-list merges"),
    }
});
