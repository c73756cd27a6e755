//! Real inference through both backends on the committed test models:
//! tflite-c with and without XNNPACK against LiteRT, golden values, tensor
//! metadata, loading from bytes vs. file, and `engine::open`'s auto choice.

mod engine_support;

use std::sync::Arc;

use engine_support::*;
use tinylcm::engine::{
    self, Accelerator, BackendKind, ElementType, Engine, EngineConfig, ModelSource, Quantization,
    ResolveTensor, TensorRef, litert, tflite_c,
};

const TINY_F32_EMBEDDING: [f32; 6] = [-0.389024, -0.552921, -0.700941, 0.112692, 1.061555, 0.90611];
const TINY_F32_SCORES: [f32; 5] = [0.119176, 0.174643, 0.638758, 0.047648, 0.019775];
const TINY_Q_EMBEDDING: [f32; 6] = [
    -0.408689, -0.557303, -0.705918, 0.111461, 1.077453, 0.910262,
];
const TINY_Q_SCORES: [f32; 5] = [0.117188, 0.171875, 0.644531, 0.046875, 0.019531];

fn file(name: &str) -> ModelSource {
    ModelSource::File(test_model(name))
}

fn check_tiny_metadata(e: &dyn Engine, dtype: ElementType) {
    let ins = e.inputs();
    let outs = e.outputs();
    assert_eq!(ins.len(), 1);
    assert_eq!(outs.len(), 2);
    assert_eq!(ins[0].name, "input");
    assert_eq!(ins[0].shape, vec![1, 64, 64, 3]);
    assert_eq!(ins[0].dtype, dtype);
    assert_eq!(outs[0].name, "embedding");
    assert_eq!(outs[0].shape, vec![1, 16]);
    assert_eq!(outs[1].name, "scores");
    assert_eq!(outs[1].shape, vec![1, 5]);
    assert!(outs.iter().all(|t| t.dtype == dtype));
    let q = |scale: f32, zero_point: i32| Some(Quantization { scale, zero_point });
    match dtype {
        ElementType::F32 => assert!(ins.iter().chain(outs).all(|t| t.quantization.is_none())),
        ElementType::I8 => {
            assert_eq!(ins[0].quantization, q(0.003921569, -128));
            assert_eq!(outs[0].quantization, q(0.018576778, -11));
            assert_eq!(outs[1].quantization, q(0.00390625, -128));
        }
        ElementType::U8 => {
            assert_eq!(ins[0].quantization, q(0.003921569, 0));
            assert_eq!(outs[0].quantization, q(0.018576778, 117));
            assert_eq!(outs[1].quantization, q(0.00390625, 0));
        }
        other => panic!("unexpected {other}"),
    }
}

fn check_golden(e: &dyn Engine, outs: &[Vec<u8>], emb: &[f32], scores: &[f32], tol: f32) {
    let got_emb = real(&e.outputs()[0], &outs[0]);
    let got_scores = real(&e.outputs()[1], &outs[1]);
    assert!(
        max_diff(&got_emb[..6], emb) <= tol,
        "{got_emb:?} vs {emb:?}"
    );
    assert!(
        max_diff(&got_scores, scores) <= tol,
        "{got_scores:?} vs {scores:?}"
    );
}

/// The three tiny models through every backend/accelerator, agreeing with the
/// goldens and with each other.
#[test]
fn tiny_models_agree_across_backends_and_goldens() {
    require_litert();
    let tflite = tflite_c_available();
    for (name, dtype, emb, scores) in [
        (
            "tiny_f32.tflite",
            ElementType::F32,
            &TINY_F32_EMBEDDING[..],
            &TINY_F32_SCORES[..],
        ),
        (
            "tiny_int8.tflite",
            ElementType::I8,
            &TINY_Q_EMBEDDING[..],
            &TINY_Q_SCORES[..],
        ),
        (
            "tiny_uint8.tflite",
            ElementType::U8,
            &TINY_Q_EMBEDDING[..],
            &TINY_Q_SCORES[..],
        ),
        (
            "tiny_dynbatch_uint8.tflite",
            ElementType::U8,
            &TINY_Q_EMBEDDING[..],
            &TINY_Q_SCORES[..],
        ),
    ] {
        let mut engines: Vec<Box<dyn Engine>> =
            vec![Box::new(litert::open(&cfg_litert(), &file(name)).unwrap())];
        if tflite {
            for x in [true, false] {
                engines.push(Box::new(
                    tflite_c::open(&cfg_tflite(x), &file(name)).unwrap(),
                ));
            }
        }
        let input = golden_input(&engines[0].inputs()[0]);
        let mut results = Vec::new();
        for e in &mut engines {
            check_tiny_metadata(e.as_ref(), dtype);
            let outs = run(e.as_mut(), &input);
            // Float: 1e-4 absolute; quantised: goldens are exact dequantised values.
            let tol = if dtype == ElementType::F32 {
                1e-4
            } else {
                1e-5
            };
            check_golden(e.as_ref(), &outs, emb, scores, tol);
            results.push(outs);
        }
        let reference = &results[0];
        for (e, outs) in engines.iter().zip(&results).skip(1) {
            for (i, info) in e.outputs().iter().enumerate() {
                if dtype == ElementType::F32 {
                    let d = max_diff(&real(info, &outs[i]), &real(info, &reference[i]));
                    assert!(
                        d < 1e-4,
                        "{name} {}/{} output {i}: {d}",
                        e.backend(),
                        e.accelerator()
                    );
                } else {
                    let steps = max_steps(info, &outs[i], &reference[i]);
                    assert!(
                        steps <= 1,
                        "{name} {}/{} output {i}: {steps} steps",
                        e.backend(),
                        e.accelerator()
                    );
                }
            }
        }
    }
}

#[test]
fn accelerators_are_reported() {
    require_litert();
    let e = litert::open(&cfg_litert(), &file("tiny_f32.tflite")).unwrap();
    assert_eq!(
        (e.backend(), e.accelerator()),
        (BackendKind::Litert, Accelerator::Xnnpack)
    );
    assert!(e.fully_accelerated());
    if tflite_c_available() {
        let e = tflite_c::open(&cfg_tflite(true), &file("tiny_f32.tflite")).unwrap();
        assert_eq!(
            (e.backend(), e.accelerator()),
            (BackendKind::TfliteC, Accelerator::Xnnpack)
        );
        assert!(e.library().starts_with("2.6.0"), "{}", e.library());
        // The options come from the library's own TfLiteXNNPackDelegateOptionsDefault
        // through the register convention of 2.6, whose defaults are all zero
        // (`xor eax,eax`): a wrong convention, a fallback or garbage flags fail here.
        assert_eq!(
            e.xnnpack_setup(),
            Some(&tflite_c::XnnpackSetup {
                source: tflite_c::OptionsSource::LibraryDefault(tflite_c::OptionsAbi::InRegister),
                flags: Some(0),
                num_threads: 1,
            }),
            "{}",
            e.selection_reason()
        );
        assert!(
            e.selection_reason()
                .contains("XNNPACK options: TfLiteXNNPackDelegateOptionsDefault"),
            "{}",
            e.selection_reason()
        );
        let e = tflite_c::open(&cfg_tflite(false), &file("tiny_f32.tflite")).unwrap();
        assert_eq!(e.accelerator(), Accelerator::Cpu);
        assert_eq!(e.xnnpack_setup(), None);
    }
}

/// MobileNetV2-style int8 extractor: metadata, and outputs per backend close
/// to the golden within the cross-kernel spread documented in the README.
#[test]
fn mobilenet_int8_runs_everywhere() {
    require_litert();
    let mut engines: Vec<Box<dyn Engine>> = vec![Box::new(
        litert::open(&cfg_litert(), &file("mobilenetv2_int8.tflite")).unwrap(),
    )];
    if tflite_c_available() {
        for x in [true, false] {
            engines.push(Box::new(
                tflite_c::open(&cfg_tflite(x), &file("mobilenetv2_int8.tflite")).unwrap(),
            ));
        }
    }
    let golden_first = [0.3745f32, 0.430675, 1.0486, 0.3745, 1.292025, 0.692825];
    let golden_sum = 1265.5477f32;
    for e in &mut engines {
        let (i, o) = (e.inputs()[0].clone(), e.outputs()[0].clone());
        assert_eq!(
            (i.dtype, i.shape.clone()),
            (ElementType::U8, vec![1, 96, 96, 3])
        );
        assert_eq!((o.dtype, o.shape.clone()), (ElementType::U8, vec![1, 1280]));
        assert_eq!(o.name, "embedding");
        let q = o.quantization.unwrap();
        assert!((q.scale - 0.018725).abs() < 1e-6 && q.zero_point == 0);
        let input = golden_input(&i);
        let outs = run(e.as_mut(), &input);
        let v = real(&o, &outs[0]);
        let sum: f32 = v.iter().sum();
        // README: kernel sets differ by up to ~1.1 per feature on this random-init net.
        assert!(
            max_diff(&v[..6], &golden_first) <= 1.2,
            "{} {:?}",
            e.accelerator(),
            &v[..6]
        );
        assert!(
            (sum - golden_sum).abs() / golden_sum < 0.05,
            "{} sum {sum}",
            e.accelerator()
        );
    }
}

/// A model exported with a dynamic batch (input shape signature `[-1, 64, 64, 3]`) runs on
/// both backends with batch 1 and the golden values of its static twin (`tiny_uint8`: same
/// weights), byte for byte the same outputs on each.
///
/// Fails before this change: LiteRT reported the `-1` of the shape signature and the engine
/// refused the model ("dynamic dimension (-1) in [-1, 64, 64, 3]").
#[test]
fn dynamic_batch_runs_on_both_backends() {
    require_litert();
    assert!(
        tflite_c_available() || cfg!(target_arch = "aarch64"),
        "the TF Lite C library is missing: run ./scripts/fetch-libs"
    );
    let name = "tiny_dynbatch_uint8.tflite";
    let mut engines: Vec<Box<dyn Engine>> =
        vec![Box::new(litert::open(&cfg_litert(), &file(name)).unwrap())];
    if tflite_c_available() {
        engines.push(Box::new(
            tflite_c::open(&cfg_tflite(true), &file(name)).unwrap(),
        ));
    }
    let mut twin = litert::open(&cfg_litert(), &file("tiny_uint8.tflite")).unwrap();
    let input = golden_input(&twin.inputs()[0]);
    let expected = run(&mut twin, &input);
    for e in &mut engines {
        assert_eq!(e.inputs()[0].shape, vec![1, 64, 64, 3], "{}", e.backend());
        assert_eq!(e.outputs()[0].shape, vec![1, 16], "{}", e.backend());
        assert_eq!(e.outputs()[1].shape, vec![1, 5], "{}", e.backend());
        // Twice: the resized buffers are reused from one invoke to the next.
        for _ in 0..2 {
            let outs = run(e.as_mut(), &input);
            check_golden(e.as_ref(), &outs, &TINY_Q_EMBEDDING, &TINY_Q_SCORES, 1e-5);
            assert_eq!(outs, expected, "{}", e.backend());
        }
    }
    // auto opens it too (an integer model: LiteRT first).
    let e = engine::open(&EngineConfig::default(), &file(name)).unwrap();
    assert_eq!(e.backend(), BackendKind::Litert);
    assert_eq!(e.inputs()[0].shape, vec![1, 64, 64, 3]);
}

/// Loading from bytes gives the same tensors and outputs as loading the file,
/// through `engine::open` (auto) and each backend.
#[test]
fn bytes_equal_file() {
    require_litert();
    let tflite = tflite_c_available();
    for name in TEST_MODELS {
        let bytes: Arc<[u8]> = std::fs::read(test_model(name)).unwrap().into();
        let mut cfgs = vec![cfg_litert()];
        if tflite {
            cfgs.push(cfg_tflite(true));
        }
        for cfg in cfgs {
            let mut a = engine::open(&cfg, &file(name)).unwrap();
            let mut b = engine::open(&cfg, &ModelSource::Bytes(Arc::clone(&bytes))).unwrap();
            assert_eq!(a.inputs(), b.inputs());
            assert_eq!(a.outputs(), b.outputs());
            let input = golden_input(&a.inputs()[0]);
            assert_eq!(
                run(a.as_mut(), &input),
                run(b.as_mut(), &input),
                "{name} {:?}",
                cfg.backend
            );
        }
    }
}

/// The buffer handed over as bytes may be dropped by the caller right away:
/// the engine keeps its own reference.
#[test]
fn bytes_outlive_caller() {
    require_litert();
    let mut cfgs = vec![cfg_litert()];
    if tflite_c_available() {
        cfgs.push(cfg_tflite(false));
    }
    for cfg in cfgs {
        let bytes: Arc<[u8]> = std::fs::read(test_model("tiny_f32.tflite")).unwrap().into();
        let mut e = engine::open(&cfg, &ModelSource::Bytes(bytes)).unwrap();
        let input = golden_input(&e.inputs()[0]);
        let outs = run(e.as_mut(), &input);
        check_golden(
            e.as_ref(),
            &outs,
            &TINY_F32_EMBEDDING,
            &TINY_F32_SCORES,
            1e-4,
        );
    }
}

/// `auto` on a float model keeps tflite-c first where it exists (both XNNPACKs accelerate
/// float ops; it is what the device image ships).
#[test]
fn auto_prefers_tflite_c_for_a_float_model() {
    require_litert();
    let cfg = EngineConfig {
        threads: 1,
        ..EngineConfig::default()
    };
    let e = engine::open(&cfg, &file("tiny_f32.tflite")).unwrap();
    if cfg!(target_arch = "aarch64") {
        // No classic library for aarch64: auto must fall through to LiteRT
        // (unless someone installed one system-wide).
        if tflite_c::load_api(&cfg).is_err() {
            assert_eq!(e.backend(), BackendKind::Litert);
        }
    } else {
        assert!(tflite_c_available());
        assert_eq!(e.backend(), BackendKind::TfliteC);
        // No Coral here: Edge TPU auto falls back to XNNPACK.
        assert_eq!(e.accelerator(), Accelerator::Xnnpack);
    }
    let (order, why) = engine::order_for(&cfg, &file("tiny_f32.tflite"), || false, || None);
    assert_eq!(order, [BackendKind::TfliteC, BackendKind::Litert]);
    assert!(why.contains("float"), "{why}");
}

/// `auto` on an integer model the project makes picks LiteRT, whose XNNPACK runs int8/uint8
/// ops (TF 2.6's runs float ops only), and says so.
///
/// Fails before this change: auto tried tflite-c first for every model, so these opened on
/// tflite-c, where their int8/uint8 ops run on the builtin kernels.
#[test]
fn auto_picks_litert_for_an_integer_model() {
    require_litert();
    let cfg = EngineConfig {
        threads: 1,
        ..EngineConfig::default()
    };
    for name in [
        "tiny_uint8.tflite",
        "tiny_int8.tflite",
        "mobilenetv2_int8.tflite",
    ] {
        let e = engine::open(&cfg, &file(name)).unwrap();
        assert_eq!(e.backend(), BackendKind::Litert, "{name}");
        assert_eq!(e.accelerator(), Accelerator::Xnnpack, "{name}");
        let (order, why) = engine::order_for(&cfg, &file(name), || false, || None);
        assert_eq!(order, [BackendKind::Litert, BackendKind::TfliteC], "{name}");
        assert!(why.contains("integer") && why.contains("XNNPACK"), "{why}");
    }
    // The built-in default int8 model too (from bytes).
    let builtin = tinylcm::model::builtin(tinylcm::config::BuiltinVariant::Int8).unwrap();
    let e = engine::open(&cfg, &builtin.source()).unwrap();
    assert_eq!(e.backend(), BackendKind::Litert);
    // With a Coral present, tflite-c (the only backend that drives one) stays first.
    let (order, why) = engine::order_for(&cfg, &file("tiny_uint8.tflite"), || true, || None);
    assert_eq!(order, [BackendKind::TfliteC, BackendKind::Litert]);
    assert!(why.contains("Edge TPU"), "{why}");
    // A TF Lite C library whose XNNPACK runs QS8/QU8 (2.21, the device image's) stays first.
    let (order, why) = engine::order_for(
        &cfg,
        &file("tiny_uint8.tflite"),
        || false,
        || Some("2.21.0".into()),
    );
    assert_eq!(order, [BackendKind::TfliteC, BackendKind::Litert]);
    assert!(why.contains("2.21.0") && why.contains("QS8"), "{why}");
    // A fixed backend is kept whatever the model.
    let (order, _) = engine::order_for(
        &cfg_tflite(true),
        &file("tiny_uint8.tflite"),
        || false,
        || None,
    );
    assert_eq!(order, [BackendKind::TfliteC]);
}

#[test]
fn output_selection_by_name_and_index() {
    require_litert();
    let e = litert::open(&cfg_litert(), &file("tiny_uint8.tflite")).unwrap();
    assert_eq!(
        TensorRef::Name("scores".into())
            .resolve(e.outputs())
            .unwrap(),
        1
    );
    assert_eq!(
        TensorRef::Name("embedding".into())
            .resolve(e.outputs())
            .unwrap(),
        0
    );
    assert_eq!(TensorRef::Index(1).resolve(e.outputs()).unwrap(), 1);
    assert!(TensorRef::Index(2).resolve(e.outputs()).is_err());
}

#[test]
fn inspect_and_probe() {
    require_litert();
    let info = engine::inspect(&cfg_litert(), &file("tiny_int8.tflite")).unwrap();
    assert_eq!(info.backend, BackendKind::Litert);
    assert_eq!(info.outputs.len(), 2);
    let status = engine::probe(&EngineConfig::default());
    let lit = status
        .iter()
        .find(|s| s.backend == BackendKind::Litert)
        .unwrap();
    assert!(lit.usable && lit.found, "{lit:?}");
    assert_eq!(lit.version.as_deref(), Some("2.3.0"));
    let tfl = status
        .iter()
        .find(|s| s.backend == BackendKind::TfliteC)
        .unwrap();
    if tflite_c_available() {
        assert!(tfl.usable, "{tfl:?}");
        assert_eq!(tfl.version.as_deref(), Some("2.6.0"));
        assert!(tfl.accelerators.contains(&Accelerator::Xnnpack));
        assert!(!tfl.accelerators.contains(&Accelerator::EdgeTpu));
    }
}

/// The project's default model, once it is committed under `runtime/models/default/`.
#[test]
fn default_model_if_present() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let models: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "tflite"))
                .collect()
        })
        .unwrap_or_default();
    if models.is_empty() {
        tinylcm_protocol::test_support::missing(
            &format!("the default model (*.tflite in {})", dir.display()),
            "restore runtime/models/default from git \
             (./scripts/train-default-model rebuilds it)",
        );
        return;
    }
    require_litert();
    let tflite = tflite_c_available();
    for path in models {
        let src = ModelSource::File(path.clone());
        let mut a = litert::open(&cfg_litert(), &src).unwrap();
        assert_eq!(a.outputs().len(), 2, "{}", path.display());
        let input = golden_input(&a.inputs()[0]);
        let ra = run(&mut a, &input);
        let bytes: Arc<[u8]> = std::fs::read(&path).unwrap().into();
        let mut c = litert::open(&cfg_litert(), &ModelSource::Bytes(bytes)).unwrap();
        assert_eq!(run(&mut c, &input), ra, "{}: bytes vs file", path.display());
        if tflite {
            let mut b = tflite_c::open(&cfg_tflite(true), &src).unwrap();
            assert_eq!(a.inputs(), b.inputs());
            assert_eq!(a.outputs(), b.outputs());
            let rb = run(&mut b, &input);
            for (i, info) in a.outputs().iter().enumerate() {
                let (x, y) = (real(info, &ra[i]), real(info, &rb[i]));
                if info.dtype == ElementType::F32 {
                    let d = max_diff(&x, &y);
                    assert!(d < 1e-3, "{} output {i}: {d}", path.display());
                } else {
                    // Quantised: LiteRT runs int8 on XNNPACK, TF 2.6 on its
                    // builtin kernels; rounding may differ by a few steps.
                    let (sx, sy): (f32, f32) = (x.iter().sum(), y.iter().sum());
                    let steps = max_steps(info, &ra[i], &rb[i]);
                    assert!(
                        steps <= 3 || (sx - sy).abs() <= 0.05 * sx.abs().max(sy.abs()).max(1.0),
                        "{} output {i}: {steps} steps, sums {sx} vs {sy}",
                        path.display()
                    );
                }
            }
        }
    }
}
