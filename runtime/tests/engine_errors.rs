//! Bad inputs and missing pieces give clear `EngineError`s, never panics:
//! missing libraries, files that are not models, truncated models, wrong
//! tensor sizes and indices, an unpinned LiteRT, and the Edge TPU fallbacks
//! (with XNNPACK standing in for a Coral delegate).

mod engine_support;

use std::path::PathBuf;
use std::sync::Arc;

use engine_support::*;
use tinylcm::engine::tflite_c::{
    Delegate, EdgeTpuDevice, EdgeTpuKind, EdgeTpuProvider, EdgeTpuSource, TfliteCApi,
};
use tinylcm::engine::{
    self, Accelerator, BackendChoice, EdgeTpuMode, Engine, EngineConfig, EngineError, ModelSource,
    litert, tflite_c,
};
use tinylcm_protocol::test_support::missing;

/// A fresh temporary folder (removed when the returned guard drops) and `name` in it.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn backends() -> Vec<EngineConfig> {
    let mut v = vec![cfg_litert()];
    if tflite_c_available() {
        v.push(cfg_tflite(true));
    }
    v
}

#[test]
fn missing_library_paths() {
    let cfg = EngineConfig {
        backend: BackendChoice::Litert,
        litert_library: Some("/nonexistent/libLiteRt.so".into()),
        ..EngineConfig::default()
    };
    let src = ModelSource::File(test_model("tiny_f32.tflite"));
    match engine::open(&cfg, &src) {
        Err(EngineError::Library { what, hint, .. }) => {
            assert_eq!(what, "libLiteRt.so");
            assert!(
                hint.contains("./scripts/fetch-libs") && hint.contains("TINYLCM_LITERT_LIB"),
                "{hint}"
            );
        }
        other => panic!(
            "expected a library error, got {:?}",
            other.map(|e| e.backend())
        ),
    }
    let cfg = EngineConfig {
        backend: BackendChoice::TfliteC,
        tflite_c_library: Some("/nonexistent/libtensorflowlite_c.so".into()),
        ..EngineConfig::default()
    };
    let e = engine::open(&cfg, &src).err().expect("must fail");
    assert!(matches!(e, EngineError::Library { .. }), "{e}");
    assert!(e.to_string().contains("engine.tflite-c-library"), "{e}");
    // auto with both missing: one error naming both backends.
    let cfg = EngineConfig {
        tflite_c_library: Some("/nonexistent/a.so".into()),
        litert_library: Some("/nonexistent/b.so".into()),
        ..EngineConfig::default()
    };
    let e = engine::open(&cfg, &src).err().expect("must fail");
    let msg = e.to_string();
    assert!(
        matches!(e, EngineError::NoBackend(_))
            && msg.contains("tflite-c")
            && msg.contains("litert"),
        "{msg}"
    );
    // probe reports, never fails.
    let status = engine::probe(&cfg);
    assert!(status.iter().all(|s| !s.found && !s.usable), "{status:?}");
}

#[test]
fn not_a_model() {
    let (_dir, path) = scratch("not_a_model.tflite");
    std::fs::write(&path, b"this is a text file, not a flatbuffer at all").unwrap();
    for cfg in backends() {
        for src in [
            ModelSource::File(path.clone()),
            ModelSource::Bytes(Arc::from(&b"PK\x03\x04 zip, not a model"[..])),
            ModelSource::File("/nonexistent/model.tflite".into()),
            ModelSource::Bytes(Arc::from(&b""[..])),
        ] {
            let e = engine::open(&cfg, &src).err().expect("must fail");
            assert!(matches!(e, EngineError::Model { .. }), "{e}");
        }
    }
}

/// Truncations: every backend refuses them cleanly.
#[test]
fn truncated_models() {
    let full = std::fs::read(test_model("tiny_int8.tflite")).unwrap();
    for cfg in backends() {
        // LiteRT 2.3.0 itself does not verify flatbuffers (truncated files
        // crash it); the engine's own check must catch all of these.
        let lens = vec![0, 7, 8, 64, full.len() / 2, full.len() - 16, full.len() - 1];
        for len in lens {
            let src = ModelSource::Bytes(Arc::from(&full[..len]));
            let e = engine::open(&cfg, &src)
                .err()
                .expect("truncated model must fail");
            assert!(matches!(e, EngineError::Model { .. }), "{len}: {e}");
            let (_dir, path) = scratch(&format!("trunc_{len}.tflite"));
            std::fs::write(&path, &full[..len]).unwrap();
            let e = engine::open(&cfg, &ModelSource::File(path))
                .err()
                .expect("must fail");
            assert!(matches!(e, EngineError::Model { .. }), "{len}: {e}");
        }
    }
}

/// Corrupted offsets: refused with a model error, no crash.
#[test]
fn corrupted_models() {
    let full = std::fs::read(test_model("tiny_f32.tflite")).unwrap();
    for cfg in backends() {
        // Root offset pointing past the end, and a smashed vtable offset.
        for (at, val) in [(0usize, 0xffu8), (1, 0x7f)] {
            let mut m = full.clone();
            m[at] = val;
            let e = engine::open(&cfg, &ModelSource::Bytes(m.into()))
                .err()
                .expect("must fail");
            assert!(matches!(e, EngineError::Model { .. }), "{e}");
        }
    }
}

#[test]
fn wrong_input_length_and_output_index() {
    for cfg in backends() {
        let mut e =
            engine::open(&cfg, &ModelSource::File(test_model("tiny_uint8.tflite"))).unwrap();
        let n = e.inputs()[0].byte_len().unwrap();
        let err = e.set_input(0, &vec![0u8; n - 1]).unwrap_err();
        assert!(
            matches!(&err, EngineError::Tensor { tensor, .. } if tensor.contains("input")),
            "{err}"
        );
        assert!(err.to_string().contains(&n.to_string()), "{err}");
        let err = e.set_input(1, &vec![0u8; n]).unwrap_err();
        assert!(matches!(err, EngineError::Tensor { .. }), "{err}");
        e.set_input(0, &vec![0u8; n]).unwrap();
        e.invoke().unwrap();
        let err = e.output(2, &mut [0u8; 5]).unwrap_err();
        assert!(err.to_string().contains("output #2"), "{err}");
        let err = e.output(1, &mut [0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("scores"), "{err}");
        e.output(1, &mut [0u8; 5]).unwrap();
    }
}

#[test]
fn unknown_litert_hash_is_refused() {
    require_litert();
    if std::env::var_os("TINYLCM_LITERT_UNPINNED").is_some() {
        missing(
            "an environment without TINYLCM_LITERT_UNPINNED (it lets any LiteRT build load)",
            "unset TINYLCM_LITERT_UNPINNED where the tests run",
        );
        return;
    }
    let api = litert::load_api(&cfg_litert()).unwrap();
    let (_dir, copy) = scratch("libLiteRt.so");
    let mut bytes = std::fs::read(&api.path).unwrap();
    bytes.extend_from_slice(b"not the pinned build");
    std::fs::write(&copy, bytes).unwrap();
    let cfg = EngineConfig {
        litert_library: Some(copy.clone()),
        ..cfg_litert()
    };
    let e = litert::open(&cfg, &ModelSource::File(test_model("tiny_f32.tflite")))
        .err()
        .expect("unpinned library must be refused");
    match &e {
        EngineError::Version {
            path,
            found,
            supported,
            ..
        } => {
            assert_eq!(path, &copy);
            assert!(found.starts_with("SHA-256 "), "{found}");
            assert!(
                supported.contains("2.3.0") && supported.contains("TINYLCM_LITERT_UNPINNED"),
                "{supported}"
            );
        }
        other => panic!("expected a version error, got {other}"),
    }
}

/// A stand-in for libedgetpu: its "device" is served by an XNNPACK delegate.
struct FakeTpu {
    devices: Vec<EdgeTpuDevice>,
    delegate: bool,
}

impl EdgeTpuProvider for FakeTpu {
    fn describe(&self) -> String {
        "fake edgetpu".into()
    }
    fn list_devices(&self) -> Vec<EdgeTpuDevice> {
        self.devices.clone()
    }
    fn create_delegate(&self, api: &Arc<TfliteCApi>, _: &EdgeTpuDevice) -> Option<Delegate> {
        if self.delegate {
            tflite_c::xnnpack_delegate(api, 1)
        } else {
            None
        }
    }
}

fn usb() -> Vec<EdgeTpuDevice> {
    vec![EdgeTpuDevice {
        kind: EdgeTpuKind::Usb,
        path: "/sys/bus/usb/devices/fake".into(),
    }]
}

fn tpu_cfg(mode: EdgeTpuMode) -> EngineConfig {
    EngineConfig {
        edgetpu: mode,
        ..cfg_tflite(true)
    }
}

#[test]
fn edgetpu_present_runs_on_the_delegate() {
    if !tflite_c_available() {
        return;
    }
    let api = tflite_c::load_api(&cfg_tflite(true)).unwrap();
    let src = ModelSource::File(test_model("tiny_f32.tflite"));
    let tpu = FakeTpu {
        devices: usb(),
        delegate: true,
    };
    for mode in [EdgeTpuMode::Auto, EdgeTpuMode::Required] {
        let mut e = tflite_c::open_with_edgetpu(
            api.clone(),
            &tpu_cfg(mode),
            &src,
            EdgeTpuSource::Provider(&tpu),
        )
        .unwrap();
        assert_eq!(e.accelerator(), Accelerator::EdgeTpu);
        assert!(
            e.selection_reason().contains("fake"),
            "{}",
            e.selection_reason()
        );
        let mut x = tflite_c::open(&cfg_tflite(true), &src).unwrap();
        let input = golden_input(&e.inputs()[0]);
        assert_eq!(run(&mut e, &input), run(&mut x, &input));
    }
}

#[test]
fn edgetpu_absent_falls_back_or_fails_when_required() {
    if !tflite_c_available() {
        return;
    }
    let api = tflite_c::load_api(&cfg_tflite(true)).unwrap();
    let src = ModelSource::File(test_model("tiny_int8.tflite"));
    let none = FakeTpu {
        devices: vec![],
        delegate: true,
    };
    let broken = FakeTpu {
        devices: usb(),
        delegate: false,
    };
    for tpu in [&none, &broken] {
        let e = tflite_c::open_with_edgetpu(
            api.clone(),
            &tpu_cfg(EdgeTpuMode::Auto),
            &src,
            EdgeTpuSource::Provider(tpu),
        )
        .unwrap();
        assert_eq!(e.accelerator(), Accelerator::Xnnpack);
        let e = tflite_c::open_with_edgetpu(
            api.clone(),
            &tpu_cfg(EdgeTpuMode::Auto).tap_xnnpack(false),
            &src,
            EdgeTpuSource::Provider(tpu),
        )
        .unwrap();
        assert_eq!(e.accelerator(), Accelerator::Cpu);
        let err = tflite_c::open_with_edgetpu(
            api.clone(),
            &tpu_cfg(EdgeTpuMode::Required),
            &src,
            EdgeTpuSource::Provider(tpu),
        )
        .err()
        .expect("required without a device must fail");
        assert!(err.to_string().contains("required"), "{err}");
    }
    // Library absent: the real loader with a path that does not exist.
    let missing = EngineConfig {
        edgetpu_library: Some("/nonexistent/libedgetpu.so.1".into()),
        ..tpu_cfg(EdgeTpuMode::Auto)
    };
    let e = tflite_c::open(&missing, &src).unwrap();
    assert_eq!(e.accelerator(), Accelerator::Xnnpack);
    assert!(
        e.selection_reason().contains("libedgetpu"),
        "{}",
        e.selection_reason()
    );
    let required = EngineConfig {
        edgetpu: EdgeTpuMode::Required,
        ..missing
    };
    let err = tflite_c::open(&required, &src).err().expect("must fail");
    assert!(
        err.to_string().contains("libedgetpu.so.1") && err.to_string().contains("required"),
        "{err}"
    );
}

trait TapXnnpack {
    fn tap_xnnpack(self, on: bool) -> Self;
}

impl TapXnnpack for EngineConfig {
    fn tap_xnnpack(mut self, on: bool) -> Self {
        self.xnnpack = on;
        self
    }
}

#[test]
fn engines_are_send() {
    fn is_send<T: Send>() {}
    is_send::<Box<dyn Engine>>();
    is_send::<tflite_c::TfliteCEngine>();
    is_send::<litert::LitertEngine>();
}
