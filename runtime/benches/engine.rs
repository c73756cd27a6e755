//! Invoke latency per backend and accelerator on the default model (and the
//! MobileNetV2-style test extractor), for every backend this machine can load.
//!
//! Backends whose library is missing are reported and skipped: run
//! `./scripts/fetch-libs` first. Inputs are the golden input of the test README.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use tinylcm::engine::{
    BackendChoice, EdgeTpuMode, Engine, EngineConfig, ModelSource, encode_input, litert, tflite_c,
};

fn models() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("default"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "tflite"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.push(root.join("test/mobilenetv2_int8.tflite"));
    out.retain(|p| p.is_file());
    out
}

fn configs() -> Vec<(&'static str, EngineConfig)> {
    let base = EngineConfig {
        threads: 1,
        edgetpu: EdgeTpuMode::Off,
        ..EngineConfig::default()
    };
    vec![
        (
            "litert-xnnpack",
            EngineConfig {
                backend: BackendChoice::Litert,
                ..base.clone()
            },
        ),
        (
            "tflite-c-xnnpack",
            EngineConfig {
                backend: BackendChoice::TfliteC,
                ..base.clone()
            },
        ),
        (
            "tflite-c-cpu",
            EngineConfig {
                backend: BackendChoice::TfliteC,
                xnnpack: false,
                ..base
            },
        ),
    ]
}

fn open(cfg: &EngineConfig, model: &ModelSource) -> Result<Box<dyn Engine>, String> {
    let r: Result<Box<dyn Engine>, _> = match cfg.backend {
        BackendChoice::Litert => litert::open(cfg, model).map(|e| Box::new(e) as Box<dyn Engine>),
        _ => tflite_c::open(cfg, model).map(|e| Box::new(e) as Box<dyn Engine>),
    };
    r.map_err(|e| e.to_string())
}

fn invoke(c: &mut Criterion) {
    let mut group = c.benchmark_group("invoke");
    group.sample_size(30);
    for path in models() {
        let model = ModelSource::File(path.clone());
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (name, cfg) in configs() {
            let mut engine = match open(&cfg, &model) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("skipping {name} on {stem}: {e}");
                    continue;
                }
            };
            let info = engine.inputs()[0].clone();
            let n = info.element_count();
            let real: Vec<f32> = (0..n).map(|k| ((k * 7919) % 255) as f32 / 255.0).collect();
            let mut bytes = vec![0u8; info.byte_len().unwrap_or(0)];
            if encode_input(&info, &real, &mut bytes).is_err()
                || engine.set_input(0, &bytes).is_err()
            {
                eprintln!("skipping {name} on {stem}: cannot feed input {info:?}");
                continue;
            }
            group.bench_function(format!("{stem}/{name}"), |b| {
                b.iter(|| black_box(engine.invoke()).expect("invoke"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, invoke);
criterion_main!(benches);
