//! Remote configuration fragments (TOML) as both sides parse them: the server's allow-list
//! check and merge (`tinylcm_protocol::remote_config::{parse_fragment, effective}`) and the
//! device's application over its defaults (`tinylcm::config::Config::load_with_remote`, what
//! `RemoteConfig::apply` runs before it keeps a fragment). What the server sends (the
//! effective fragment) must pass the same allow-list again and be its own canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::remote_config::{effective, parse_fragment};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_fragment(text);
    if let Ok(sent) = effective([text]) {
        parse_fragment(&sent.toml).expect("the fragment the server sends passes the allow-list");
        let again = effective([sent.toml.as_str()]).expect("the sent fragment merges again");
        assert_eq!(again, sent, "the sent fragment is its own canonical form");
    }
    let applied = tinylcm::config::Config::load_with_remote(None, Some(text));
    // The device refuses every fragment the allow-list refuses.
    if parsed.is_err() {
        assert!(applied.is_err());
    }
});
