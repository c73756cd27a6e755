//! `TINYLCM_LITERT_UNPINNED=1` lets a LiteRT build with an unknown hash load
//! (with a warning). Its own test binary: it sets a process environment
//! variable, which must not race with other tests reading the environment.

mod engine_support;

use engine_support::*;
use tinylcm::engine::{Engine, EngineConfig, ModelSource, litert};

#[test]
fn unpinned_litert_loads_when_allowed() {
    require_litert();
    let api = litert::load_api(&cfg_litert()).unwrap();
    let dir = std::env::temp_dir().join(format!("tinylcm-unpinned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("libLiteRt.so");
    let mut bytes = std::fs::read(&api.path).unwrap();
    bytes.extend_from_slice(b"local build");
    std::fs::write(&copy, bytes).unwrap();
    // SAFETY: the only test in this binary; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("TINYLCM_LITERT_UNPINNED", "1") };
    let cfg = EngineConfig {
        litert_library: Some(copy),
        ..cfg_litert()
    };
    let mut e = litert::open(&cfg, &ModelSource::File(test_model("tiny_f32.tflite"))).unwrap();
    assert!(e.library().contains("unpinned"), "{}", e.library());
    let input = golden_input(&e.inputs()[0]);
    let out = run(&mut e, &input);
    assert_eq!(out.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}
