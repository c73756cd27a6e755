//! Shared helpers for the engine tests: model paths, library checks and the
//! golden input of `runtime/models/test/README.md`.
//!
//! Libraries are located exactly as the runtime does (config → env → the
//! `./scripts/fetch-libs` cache → system loader). A test that needs a library
//! that cannot be loaded FAILS with the runtime's hint (run ./scripts/fetch-libs).
#![allow(dead_code)]

use std::path::PathBuf;

use tinylcm::engine::{
    BackendChoice, EdgeTpuMode, ElementType, Engine, EngineConfig, TensorInfo, decode_output,
    litert, tflite_c,
};

/// `runtime/models/test/<name>`; panics if the file is missing.
pub fn test_model(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/test")
        .join(name);
    assert!(p.is_file(), "test model {} is missing", p.display());
    p
}

/// The four committed test models.
pub const TEST_MODELS: &[&str] = &[
    "tiny_f32.tflite",
    "tiny_int8.tflite",
    "tiny_uint8.tflite",
    "tiny_dynbatch_uint8.tflite",
    "mobilenetv2_int8.tflite",
];

/// Config for the classic C API, one thread, no Edge TPU.
pub fn cfg_tflite(xnnpack: bool) -> EngineConfig {
    EngineConfig {
        backend: BackendChoice::TfliteC,
        threads: 1,
        xnnpack,
        edgetpu: EdgeTpuMode::Off,
        ..EngineConfig::default()
    }
}

/// Config for LiteRT.
pub fn cfg_litert() -> EngineConfig {
    EngineConfig {
        backend: BackendChoice::Litert,
        threads: 1,
        edgetpu: EdgeTpuMode::Off,
        ..EngineConfig::default()
    }
}

/// Whether tflite-c tests can run here. On aarch64 no TF Lite C library exists
/// in any registry (platform notes §1.2): print why and return false. On other
/// arches the library must load, else the test fails with the runtime's hint.
pub fn tflite_c_available() -> bool {
    if cfg!(target_arch = "aarch64") {
        eprintln!(
            "skipped: no aarch64 libtensorflowlite_c.so exists in any registry; \
             tflite-c tests run on x86_64 only"
        );
        return false;
    }
    if let Err(e) = tflite_c::load_api(&cfg_tflite(true)) {
        panic!("TF Lite C library unavailable: {e}");
    }
    true
}

/// LiteRT must load (both arches), else fail with the runtime's hint.
pub fn require_litert() {
    if let Err(e) = litert::load_api(&cfg_litert()) {
        panic!("LiteRT library unavailable: {e}");
    }
}

/// `x[k] = (k*7919 % 255) / 255`, quantised per the input tensor.
pub fn golden_input(info: &TensorInfo) -> Vec<u8> {
    let n = info.element_count();
    let real: Vec<f32> = (0..n).map(|k| ((k * 7919) % 255) as f32 / 255.0).collect();
    let mut bytes = vec![0u8; info.byte_len().unwrap()];
    tinylcm::engine::encode_input(info, &real, &mut bytes).unwrap();
    bytes
}

/// Set input 0, invoke, return every output's raw bytes.
pub fn run(engine: &mut dyn Engine, input: &[u8]) -> Vec<Vec<u8>> {
    engine.set_input(0, input).unwrap();
    engine.invoke().unwrap();
    let outputs = engine.outputs().to_vec();
    outputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut buf = vec![0u8; t.byte_len().unwrap()];
            engine.output(i, &mut buf).unwrap();
            buf
        })
        .collect()
}

/// Dequantised values of one output.
pub fn real(info: &TensorInfo, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; info.element_count()];
    decode_output(info, bytes, &mut out).unwrap();
    out
}

/// Largest absolute difference between two outputs, in real units.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest difference between two quantised outputs in quantisation steps.
pub fn max_steps(info: &TensorInfo, a: &[u8], b: &[u8]) -> i32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match info.dtype {
            ElementType::I8 => (i32::from(x as i8) - i32::from(y as i8)).abs(),
            _ => (i32::from(x) - i32::from(y)).abs(),
        })
        .max()
        .unwrap_or(0)
}
