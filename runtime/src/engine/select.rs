//! Choosing a backend: `engine::open`, `engine::probe` and `engine::inspect`.
//!
//! `auto` picks per model the backend whose XNNPACK actually accelerates it:
//!
//! * a **float** model: **tflite-c first, then LiteRT**. Both XNNPACKs run float ops; the
//!   device image ships the TF Lite C library, so a development machine that has both
//!   libraries runs what the device runs.
//! * an **integer** model (int8/uint8 activations, full-integer quantisation): **LiteRT
//!   first, then tflite-c**, unless the TF Lite C library's XNNPACK options enable QS8/QU8
//!   (2.21, what the device image ships, does): TF 2.6's XNNPACK delegate takes float ops
//!   only, so there every int8/uint8 op runs on the builtin kernels (the built-in int8 model:
//!   invoke p50 0.49 ms on tflite-c against 0.047 ms on LiteRT); LiteRT's XNNPACK runs them.
//! * an **Edge TPU** present (and `engine.edgetpu` not `off`), or `engine.edgetpu =
//!   required`: tflite-c first (only it drives a Coral).
//!
//! A backend that fails to load falls through to the next; the one info line that
//! [`open`] logs names the choice and the reason.

use std::path::PathBuf;

use super::config::{BackendChoice, EdgeTpuMode, EngineConfig};
use super::locate::{LibraryKind, LibrarySource, locate};
use super::model::ModelSource;
use super::tflite_c::{EdgeTpuProvider, LibEdgeTpu};
use super::{Accelerator, BackendKind, Engine, EngineError, TensorInfo, flatbuf, litert, tflite_c};

/// A backend that opened the model, with what to log about it.
struct Opened {
    engine: Box<dyn Engine>,
    library: String,
    why: String,
}

fn open_backend(
    kind: BackendKind,
    cfg: &EngineConfig,
    model: &ModelSource,
) -> Result<Opened, EngineError> {
    match kind {
        BackendKind::TfliteC => {
            let e = tflite_c::open(cfg, model)?;
            Ok(Opened {
                library: e.library(),
                why: e.selection_reason().to_string(),
                engine: Box::new(e),
            })
        }
        BackendKind::Litert => {
            let e = litert::open(cfg, model)?;
            let mut why = format!(
                "LiteRT's CPU accelerator is XNNPACK (fully accelerated: {})",
                e.fully_accelerated()
            );
            if cfg.edgetpu == EdgeTpuMode::Auto && cfg.backend == BackendChoice::Litert {
                why.push_str("; Edge TPU needs the tflite-c backend");
            }
            Ok(Opened {
                library: e.library(),
                why,
                engine: Box::new(e),
            })
        }
    }
}

/// The backends `cfg` allows, in the order they are tried for a float model (see
/// [`order_for`] for the order a given model gets).
pub fn candidates(cfg: &EngineConfig) -> &'static [BackendKind] {
    match cfg.backend {
        BackendChoice::TfliteC => &[BackendKind::TfliteC],
        BackendChoice::Litert => &[BackendKind::Litert],
        BackendChoice::Auto if cfg.edgetpu == EdgeTpuMode::Required => &[BackendKind::TfliteC],
        BackendChoice::Auto => &[BackendKind::TfliteC, BackendKind::Litert],
    }
}

/// The order `cfg` tries the backends in for `model`, and why (for `auto`; a fixed backend
/// is its own reason). Asked only for an integer model under `auto`: `edgetpu_present`,
/// whether a Coral answers (with `engine.edgetpu = auto`), and `tflite_c_integer`, the TF
/// Lite C library's version when its XNNPACK runs int8/uint8 ops (QS8/QU8 in its options).
pub fn order_for(
    cfg: &EngineConfig,
    model: &ModelSource,
    edgetpu_present: impl FnOnce() -> bool,
    tflite_c_integer: impl FnOnce() -> Option<String>,
) -> (Vec<BackendKind>, String) {
    let fixed = candidates(cfg);
    if cfg.backend != BackendChoice::Auto {
        return (
            fixed.to_vec(),
            format!(
                "engine.backend = {}",
                if cfg.backend == BackendChoice::Litert {
                    "litert"
                } else {
                    "tflite-c"
                }
            ),
        );
    }
    if fixed.len() == 1 {
        return (
            fixed.to_vec(),
            "engine.edgetpu = required: only tflite-c drives an Edge TPU".into(),
        );
    }
    let traits = match model_traits(model) {
        Ok(t) => t,
        // The backends themselves will say what is wrong with the file.
        Err(_) => return (fixed.to_vec(), "engine.backend = auto".into()),
    };
    if !traits.integer_ops {
        return (
            vec![BackendKind::TfliteC, BackendKind::Litert],
            "engine.backend = auto: a float model, which both backends' XNNPACK accelerates; \
             tflite-c first (what the device image ships)"
                .into(),
        );
    }
    if cfg.edgetpu == EdgeTpuMode::Auto && edgetpu_present() {
        return (
            vec![BackendKind::TfliteC, BackendKind::Litert],
            "engine.backend = auto: an integer model and an Edge TPU present, which only \
             tflite-c drives"
                .into(),
        );
    }
    if let Some(version) = tflite_c_integer() {
        return (
            vec![BackendKind::TfliteC, BackendKind::Litert],
            format!(
                "engine.backend = auto: an integer (int8/uint8) model, and TF Lite {version}'s \
                 XNNPACK runs int8/uint8 ops (QS8/QU8 on), so tflite-c first"
            ),
        );
    }
    (
        vec![BackendKind::Litert, BackendKind::TfliteC],
        "engine.backend = auto: an integer (int8/uint8) model; TF 2.6's XNNPACK runs float ops \
         only (its int8/uint8 ops would run on the builtin kernels), LiteRT's XNNPACK runs \
         them, so litert first"
            .into(),
    )
}

/// Whether the model computes on integers, from its flatbuffer (read bounded).
fn model_traits(model: &ModelSource) -> Result<flatbuf::Traits, EngineError> {
    let read;
    let bytes: &[u8] = match model {
        ModelSource::File(path) => {
            read = super::model::read_file(path)?;
            &read
        }
        ModelSource::Bytes(b) => b,
    };
    flatbuf::traits(bytes).map_err(|reason| EngineError::Model {
        model: model.label(),
        reason,
    })
}

/// The TF Lite C library's version when it loads and its XNNPACK delegate, with the options
/// it would be created with, runs int8/uint8 ops (QS8 or QU8 set).
fn tflite_c_integer(cfg: &EngineConfig) -> Option<String> {
    if !cfg.xnnpack {
        return None;
    }
    let api = tflite_c::load_api(cfg).ok()?;
    let threads = i32::try_from(cfg.threads).unwrap_or(1).max(1);
    // SAFETY: the function pointer is this library's own `TfLiteXNNPackDelegateOptionsDefault`
    // and `api.version` its `TfLiteVersion()`.
    let (_, setup) = unsafe {
        tflite_c::xnnpack::build_options(&api.version, api.xnnpack_options_default, threads)
    };
    setup
        .flags
        .is_some_and(|f| f & 0x3 != 0)
        .then(|| api.version.clone())
}

/// Whether libedgetpu loads and lists at least one device.
fn edgetpu_present(cfg: &EngineConfig) -> bool {
    let loc = locate(LibraryKind::EdgeTpu, cfg.edgetpu_library.as_deref());
    LibEdgeTpu::load(&loc).is_ok_and(|lib| !lib.list_devices().is_empty())
}

/// Load `model` with the configured backend (for `auto`: the order of [`order_for`])
/// and log one line saying which backend and accelerator run it, and why.
pub fn open(cfg: &EngineConfig, model: &ModelSource) -> Result<Box<dyn Engine>, EngineError> {
    model.precheck()?;
    let (order, reason) = order_for(
        cfg,
        model,
        || edgetpu_present(cfg),
        || tflite_c_integer(cfg),
    );
    let order = order.as_slice();
    let mut failures: Vec<(BackendKind, EngineError)> = Vec::new();
    for &kind in order {
        match open_backend(kind, cfg, model) {
            Ok(opened) => {
                let mut why = vec![reason.clone()];
                if cfg.backend == BackendChoice::Auto {
                    why.push(format!("tries {}", names(order)));
                    for (k, e) in &failures {
                        why.push(format!("{k} unavailable: {e}"));
                    }
                }
                why.push(opened.why);
                tracing::info!(
                    backend = %kind,
                    accelerator = %opened.engine.accelerator(),
                    model = %model.label(),
                    "inference on {kind} {} with {}: {}",
                    opened.library,
                    opened.engine.accelerator(),
                    why.join("; ")
                );
                return Ok(opened.engine);
            }
            Err(e) => {
                tracing::debug!(backend = %kind, "backend failed: {e}");
                if order.len() == 1 {
                    return Err(e);
                }
                failures.push((kind, e));
            }
        }
    }
    if failures
        .iter()
        .all(|(_, e)| matches!(e, EngineError::Model { .. }))
    {
        if let Some((_, e)) = failures.into_iter().next() {
            return Err(e);
        }
        return Err(EngineError::NoBackend("no backend configured".into()));
    }
    Err(EngineError::NoBackend(
        failures
            .iter()
            .map(|(k, e)| format!("{k}: {e}"))
            .collect::<Vec<_>>()
            .join(" | "),
    ))
}

fn names(order: &[BackendKind]) -> String {
    order
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(" then ")
}

/// What `probe` found for one backend.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    /// The backend.
    pub backend: BackendKind,
    /// Library file (or the bare name handed to the system loader).
    pub library: PathBuf,
    /// Which lookup step chose it.
    pub source: LibrarySource,
    /// The library could be opened.
    pub found: bool,
    /// Version (tflite-c: `TfLiteVersion()`; LiteRT: from the pinned hash).
    pub version: Option<String>,
    /// Found, right version, all symbols present.
    pub usable: bool,
    /// Accelerators this backend can use here (Edge TPU only if a device answers).
    pub accelerators: Vec<Accelerator>,
    /// The error, or notes such as the Edge TPU state.
    pub detail: String,
}

fn status_from_error(
    backend: BackendKind,
    kind: LibraryKind,
    cfg_path: Option<&std::path::Path>,
    e: &EngineError,
) -> BackendStatus {
    let loc = locate(kind, cfg_path);
    BackendStatus {
        backend,
        library: loc.path,
        source: loc.source,
        found: !matches!(e, EngineError::Library { .. }),
        version: None,
        usable: false,
        accelerators: Vec::new(),
        detail: e.to_string(),
    }
}

/// Check each backend's library without loading a model (for `tinylcm inspect-model`).
pub fn probe(cfg: &EngineConfig) -> Vec<BackendStatus> {
    let mut out = Vec::new();
    match tflite_c::load_api(cfg) {
        Ok(api) => {
            let mut accelerators = vec![Accelerator::Cpu, Accelerator::Xnnpack];
            let detail = if cfg.edgetpu == EdgeTpuMode::Off {
                "Edge TPU off".to_string()
            } else {
                let loc = locate(LibraryKind::EdgeTpu, cfg.edgetpu_library.as_deref());
                match LibEdgeTpu::load(&loc) {
                    Ok(lib) => {
                        let devices = lib.list_devices();
                        if !devices.is_empty() {
                            accelerators.insert(0, Accelerator::EdgeTpu);
                        }
                        format!("libedgetpu {}: {} device(s)", lib.describe(), devices.len())
                    }
                    Err(e) => format!("no Edge TPU: {e}"),
                }
            };
            out.push(BackendStatus {
                backend: BackendKind::TfliteC,
                library: api.path.clone(),
                source: api.location.source,
                found: true,
                version: Some(api.version.clone()),
                usable: true,
                accelerators,
                detail,
            });
        }
        Err(e) => out.push(status_from_error(
            BackendKind::TfliteC,
            LibraryKind::TfliteC,
            cfg.tflite_c_library.as_deref(),
            &e,
        )),
    }
    match litert::load_api(cfg) {
        Ok(api) => out.push(BackendStatus {
            backend: BackendKind::Litert,
            library: api.path.clone(),
            source: api.location.source,
            found: true,
            version: Some(api.version()),
            usable: true,
            accelerators: vec![Accelerator::Xnnpack],
            detail: format!("sha256 {}", api.sha256),
        }),
        Err(e) => out.push(status_from_error(
            BackendKind::Litert,
            LibraryKind::Litert,
            cfg.litert_library.as_deref(),
            &e,
        )),
    }
    out
}

/// A model's tensors as the chosen backend sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Backend that loaded it.
    pub backend: BackendKind,
    /// Accelerator it would run on.
    pub accelerator: Accelerator,
    /// Input tensors.
    pub inputs: Vec<TensorInfo>,
    /// Output tensors.
    pub outputs: Vec<TensorInfo>,
}

/// Load `model` as [`open`] would, report its tensors, and release it.
pub fn inspect(cfg: &EngineConfig, model: &ModelSource) -> Result<ModelInfo, EngineError> {
    let engine = open(cfg, model)?;
    Ok(ModelInfo {
        backend: engine.backend(),
        accelerator: engine.accelerator(),
        inputs: engine.inputs().to_vec(),
        outputs: engine.outputs().to_vec(),
    })
}
