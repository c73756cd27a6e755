//! The classic TF Lite interpreter as an [`Engine`], with the accelerator
//! fallback chain Edge TPU → XNNPACK → plain CPU.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use super::delegate::Delegate;
use super::edgetpu::EdgeTpuProvider;
use super::ffi::TfliteCApi;
use super::reporter::{self, ErrorSink};
use super::xnnpack::{self, XnnpackSetup};
use crate::engine::config::{EdgeTpuMode, EngineConfig};
use crate::engine::model::ModelSource;
use crate::engine::{
    Accelerator, BackendKind, ElementType, Engine, EngineError, Quantization, TensorInfo,
    checked_byte_len,
};

/// Most input or output tensors accepted from one model.
const MAX_IO_TENSORS: i32 = 1024;
/// Highest tensor rank accepted.
const MAX_RANK: i32 = 16;

/// What the Edge TPU discovery can offer to [`open_with_edgetpu`].
pub enum EdgeTpuSource<'a> {
    /// `engine.edgetpu = off`: do not look.
    Off,
    /// Discovery could not start (e.g. libedgetpu missing); the error says why.
    Unavailable(EngineError),
    /// A working discovery.
    Provider(&'a dyn EdgeTpuProvider),
}

/// A model loaded in the classic TF Lite interpreter.
pub struct TfliteCEngine {
    interpreter: NonNull<c_void>,
    model: NonNull<c_void>,
    /// Freed after the interpreter (it borrows them).
    delegates: Vec<Delegate>,
    in_ptrs: Vec<*mut c_void>,
    out_ptrs: Vec<*const c_void>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    accelerator: Accelerator,
    why: String,
    /// How the XNNPACK delegate's options were made, when XNNPACK runs the model.
    xnnpack: Option<XnnpackSetup>,
    /// Receives the interpreter's error reports; outlives the interpreter.
    sink: Box<ErrorSink>,
    api: Arc<TfliteCApi>,
    /// The model bytes the TF Lite model points into, when loaded from memory.
    _bytes: Option<Arc<[u8]>>,
}

// SAFETY: the interpreter, model, delegates and tensor pointers are heap
// objects without thread affinity. The engine owns them exclusively and every
// call goes through `&mut self` (or `&self` reads of cached metadata), so they
// are never used from two threads at once.
unsafe impl Send for TfliteCEngine {}

impl TfliteCEngine {
    /// Library version and path, e.g. `2.6.0 (/…/libtensorflowlite_c.so)`.
    pub fn library(&self) -> String {
        format!("{} ({})", self.api.version, self.api.path.display())
    }

    /// Why this accelerator was chosen (the fallbacks taken, if any).
    pub fn selection_reason(&self) -> &str {
        &self.why
    }

    /// The options the XNNPACK delegate was created with (`None` unless the
    /// accelerator is XNNPACK).
    pub fn xnnpack_setup(&self) -> Option<&XnnpackSetup> {
        self.xnnpack.as_ref()
    }
}

struct Interp {
    ptr: NonNull<c_void>,
}

/// Load `model` with the library in `api`, choosing the accelerator per `cfg`
/// and the Edge TPU discovery `edgetpu`.
pub fn open_with_edgetpu(
    api: Arc<TfliteCApi>,
    cfg: &EngineConfig,
    model: &ModelSource,
    edgetpu: EdgeTpuSource<'_>,
) -> Result<TfliteCEngine, EngineError> {
    model.precheck()?;
    let label = model.label();
    let (model_ptr, bytes) = create_model(&api, model, &label)?;
    let mut guard = ModelGuard {
        api: &api,
        ptr: Some(model_ptr),
    };
    let sink = Box::new(ErrorSink::default());
    let threads = i32::try_from(cfg.threads).unwrap_or(1).max(1);
    let mut notes: Vec<String> = Vec::new();

    // 1. Edge TPU.
    let mut chosen: Option<(Interp, Vec<Delegate>, Accelerator)> = None;
    if cfg.edgetpu != EdgeTpuMode::Off {
        if let (EdgeTpuMode::Required, EdgeTpuSource::Unavailable(e)) = (cfg.edgetpu, &edgetpu) {
            return Err(EngineError::NoBackend(format!(
                "engine.edgetpu = required, but {e}"
            )));
        }
        match edgetpu_delegate(&api, edgetpu) {
            Ok((delegate, desc)) => {
                match create_interpreter(&api, model_ptr, threads, Some(&delegate), &sink) {
                    Ok(interp) => {
                        notes.push(format!("Edge TPU found ({desc})"));
                        chosen = Some((interp, vec![delegate], Accelerator::EdgeTpu));
                    }
                    Err(e) => {
                        if cfg.edgetpu == EdgeTpuMode::Required {
                            return Err(e);
                        }
                        notes.push(format!("Edge TPU delegate refused the model ({e})"));
                    }
                }
            }
            Err(reason) => {
                if cfg.edgetpu == EdgeTpuMode::Required {
                    return Err(EngineError::NoBackend(format!(
                        "engine.edgetpu = required, but {reason}"
                    )));
                }
                notes.push(format!("no Edge TPU: {reason}"));
            }
        }
    } else {
        notes.push("Edge TPU off (engine.edgetpu = off)".to_string());
    }

    // 2. XNNPACK.
    let mut xnnpack_setup = None;
    if chosen.is_none() {
        if cfg.xnnpack {
            match xnnpack_delegate_with_setup(&api, threads) {
                (Some(delegate), setup) => {
                    match create_interpreter(&api, model_ptr, threads, Some(&delegate), &sink) {
                        Ok(interp) => {
                            notes.push(format!("XNNPACK options: {setup}"));
                            xnnpack_setup = Some(setup);
                            chosen = Some((interp, vec![delegate], Accelerator::Xnnpack));
                        }
                        Err(e) => notes.push(format!("XNNPACK refused the model ({e})")),
                    }
                }
                (None, setup) => notes.push(format!(
                    "XNNPACK delegate could not be created (options: {setup})"
                )),
            }
        } else {
            notes.push("XNNPACK off (engine.xnnpack = false)".to_string());
        }
    }

    // 3. Plain CPU.
    let (interp, delegates, accelerator) = match chosen {
        Some(c) => c,
        None => (
            create_interpreter(&api, model_ptr, threads, None, &sink)?,
            Vec::new(),
            Accelerator::Cpu,
        ),
    };
    let model_ptr = guard.ptr.take().unwrap_or(model_ptr);
    drop(guard);

    let mut engine = TfliteCEngine {
        interpreter: interp.ptr,
        model: model_ptr,
        delegates,
        in_ptrs: Vec::new(),
        out_ptrs: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        accelerator,
        why: notes.join("; "),
        xnnpack: xnnpack_setup,
        sink,
        api,
        _bytes: bytes,
    };
    engine.read_tensors(&label)?;
    let quantised = engine
        .inputs
        .iter()
        .chain(&engine.outputs)
        .any(|t| matches!(t.dtype, ElementType::I8 | ElementType::U8));
    let quantised_ops_off = engine
        .xnnpack
        .as_ref()
        .is_some_and(|s| s.flags.is_some_and(|f| f & 0x3 == 0));
    if quantised && quantised_ops_off {
        engine.why.push_str(
            "; note: the XNNPACK options leave QS8/QU8 off, int8/uint8 ops run on the builtin kernels",
        );
    }
    Ok(engine)
}

/// Owns the TF Lite model until the engine takes it (frees it on early return).
struct ModelGuard<'a> {
    api: &'a TfliteCApi,
    ptr: Option<NonNull<c_void>>,
}

impl Drop for ModelGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.ptr.take() {
            // SAFETY: a model created by this library and not yet owned by an engine;
            // any interpreter built from it has been deleted on the error path.
            unsafe { (self.api.model_delete)(p.as_ptr()) }
        }
    }
}

/// Model bytes kept alive for a model created from memory.
type KeptBytes = Option<Arc<[u8]>>;

fn create_model(
    api: &TfliteCApi,
    model: &ModelSource,
    label: &str,
) -> Result<(NonNull<c_void>, KeptBytes), EngineError> {
    let (ptr, bytes) = match model {
        ModelSource::File(path) => {
            use std::os::unix::ffi::OsStrExt;
            let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| EngineError::Model {
                model: label.to_string(),
                reason: "path contains a NUL byte".into(),
            })?;
            // SAFETY: a valid C string; the library maps and verifies the file.
            (unsafe { (api.model_create_from_file)(c.as_ptr()) }, None)
        }
        ModelSource::Bytes(b) => {
            // SAFETY: pointer and length of a live buffer; the returned model
            // points into it, so the Arc is kept by the engine until after
            // `TfLiteModelDelete`.
            let p = unsafe { (api.model_create)(b.as_ptr().cast(), b.len()) };
            (p, Some(Arc::clone(b)))
        }
    };
    let ptr = NonNull::new(ptr).ok_or_else(|| EngineError::Model {
        model: label.to_string(),
        reason: "TF Lite rejected the flatbuffer (corrupt, truncated or not a TFLite model)".into(),
    })?;
    Ok((ptr, bytes))
}

fn edgetpu_delegate(
    api: &Arc<TfliteCApi>,
    source: EdgeTpuSource<'_>,
) -> Result<(Delegate, String), String> {
    match source {
        EdgeTpuSource::Off => Err("Edge TPU off".into()),
        EdgeTpuSource::Unavailable(EngineError::Library { what, reason, .. }) => {
            Err(format!("{what} not loadable ({reason})"))
        }
        EdgeTpuSource::Unavailable(e) => Err(e.to_string()),
        EdgeTpuSource::Provider(p) => {
            let devices = p.list_devices();
            let Some(device) = devices.first() else {
                return Err(format!("no Edge TPU device found ({})", p.describe()));
            };
            let d = p.create_delegate(api, device).ok_or_else(|| {
                format!(
                    "could not open Edge TPU {:?} {} ({})",
                    device.kind,
                    device.path,
                    p.describe()
                )
            })?;
            Ok((
                d,
                format!("{:?} {}, {}", device.kind, device.path, p.describe()),
            ))
        }
    }
}

/// An XNNPACK delegate with `threads` threads, or `None` if the library refuses.
pub fn xnnpack_delegate(api: &Arc<TfliteCApi>, threads: i32) -> Option<Delegate> {
    xnnpack_delegate_with_setup(api, threads).0
}

/// [`xnnpack_delegate`], also saying how its options were made (the library's
/// `TfLiteXNNPackDelegateOptionsDefault` when its release is known, else zeroed).
pub fn xnnpack_delegate_with_setup(
    api: &Arc<TfliteCApi>,
    threads: i32,
) -> (Option<Delegate>, XnnpackSetup) {
    // SAFETY: the function pointer is this library's own
    // `TfLiteXNNPackDelegateOptionsDefault` and `api.version` its `TfLiteVersion()`.
    let (opts, setup) =
        unsafe { xnnpack::build_options(&api.version, api.xnnpack_options_default, threads) };
    // SAFETY: `opts` is at least as large and as aligned as this release's
    // options struct (see `xnnpack::XnnpackOptions`); the delegate copies what
    // it needs during the call.
    let ptr = unsafe { (api.xnnpack_create)(&opts) };
    if let (Some(get_flags), false) = (api.xnnpack_get_flags, ptr.is_null()) {
        // SAFETY: a live XNNPACK delegate of this library.
        let live = unsafe { get_flags(ptr) };
        tracing::debug!("XNNPACK delegate reports flags {live:#x}");
    }
    let owner: Arc<dyn std::any::Any + Send + Sync> = api.clone();
    // SAFETY: created by this library's XNNPACK create, freed by its delete;
    // `owner` keeps the library loaded.
    let delegate = unsafe { Delegate::from_raw(ptr, api.xnnpack_delete, owner) };
    (delegate, setup)
}

fn create_interpreter(
    api: &TfliteCApi,
    model: NonNull<c_void>,
    threads: i32,
    delegate: Option<&Delegate>,
    sink: &ErrorSink,
) -> Result<Interp, EngineError> {
    let runtime = |call: &'static str, reason: String| EngineError::Runtime {
        backend: BackendKind::TfliteC,
        call,
        reason,
    };
    // SAFETY: plain constructor.
    let opts = unsafe { (api.options_create)() };
    if opts.is_null() {
        return Err(runtime(
            "TfLiteInterpreterOptionsCreate",
            "returned NULL".into(),
        ));
    }
    // SAFETY: `opts` is a live options object; the sink outlives the
    // interpreter (boxed in the engine, dropped after it); the delegate is
    // kept alive by the caller until after the interpreter is deleted.
    let interp = unsafe {
        (api.options_set_num_threads)(opts, threads);
        if let Some(cb) = reporter::callback() {
            (api.options_set_error_reporter)(
                opts,
                Some(cb),
                sink as *const ErrorSink as *mut c_void,
            );
        }
        if let Some(d) = delegate {
            (api.options_add_delegate)(opts, d.as_ptr());
        }
        let interp = (api.interpreter_create)(model.as_ptr(), opts);
        (api.options_delete)(opts);
        interp
    };
    let Some(interp) = NonNull::new(interp) else {
        return Err(runtime("TfLiteInterpreterCreate", explain(sink.take())));
    };
    // SAFETY: a live interpreter.
    let status = unsafe { (api.interpreter_allocate_tensors)(interp.as_ptr()) };
    if status != 0 {
        // SAFETY: deleting the interpreter we just created, once.
        unsafe { (api.interpreter_delete)(interp.as_ptr()) };
        return Err(runtime(
            "TfLiteInterpreterAllocateTensors",
            explain(sink.take()),
        ));
    }
    Ok(Interp { ptr: interp })
}

fn explain(messages: String) -> String {
    if messages.is_empty() {
        "failed (no message from TF Lite)".into()
    } else {
        messages
    }
}

impl TfliteCEngine {
    fn read_tensors(&mut self, label: &str) -> Result<(), EngineError> {
        let api = Arc::clone(&self.api);
        let interp = self.interpreter.as_ptr();
        // SAFETY: a live interpreter with allocated tensors.
        let (n_in, n_out) = unsafe {
            (
                (api.interpreter_input_count)(interp),
                (api.interpreter_output_count)(interp),
            )
        };
        for (role, n) in [("input", n_in), ("output", n_out)] {
            if !(0..=MAX_IO_TENSORS).contains(&n) {
                return Err(EngineError::Model {
                    model: label.into(),
                    reason: format!("{n} {role} tensors (at most {MAX_IO_TENSORS} supported)"),
                });
            }
        }
        for i in 0..n_in {
            // SAFETY: index in range; the pointer stays valid until the
            // interpreter is deleted (tensors are never resized).
            let t = unsafe { (api.interpreter_input)(interp, i) };
            let info = tensor_info(&api, t, label, "input", i)?;
            self.in_ptrs.push(t);
            self.inputs.push(info);
        }
        for i in 0..n_out {
            // SAFETY: as above.
            let t = unsafe { (api.interpreter_output)(interp, i) };
            let info = tensor_info(&api, t, label, "output", i)?;
            self.out_ptrs.push(t);
            self.outputs.push(info);
        }
        Ok(())
    }
}

fn tensor_info(
    api: &TfliteCApi,
    t: *const c_void,
    label: &str,
    role: &str,
    index: i32,
) -> Result<TensorInfo, EngineError> {
    let bad = |reason: String| EngineError::Model {
        model: label.into(),
        reason: format!("{role} tensor #{index}: {reason}"),
    };
    if t.is_null() {
        return Err(bad("the interpreter returned no tensor".into()));
    }
    // SAFETY: `t` is a live tensor of a live interpreter; these are read-only accessors.
    let (code, rank, byte_size, name, q) = unsafe {
        (
            (api.tensor_type)(t),
            (api.tensor_num_dims)(t),
            (api.tensor_byte_size)(t),
            crate::engine::dylib::c_string((api.tensor_name)(t)),
            (api.tensor_quantization)(t),
        )
    };
    if !(0..=MAX_RANK).contains(&rank) {
        return Err(bad(format!("rank {rank} not supported")));
    }
    let mut shape = Vec::new();
    for d in 0..rank {
        // SAFETY: `d` < rank.
        let dim = unsafe { (api.tensor_dim)(t, d) };
        let dim = usize::try_from(dim).map_err(|_| {
            bad(format!(
                "\"{name}\" has a dynamic dimension ({dim}); export the model with a static shape (batch 1)"
            ))
        })?;
        shape.push(dim);
    }
    let dtype = ElementType::from_tflite_code(code);
    let info = TensorInfo {
        name,
        dtype,
        shape,
        quantization: (q.scale > 0.0 && q.scale.is_finite()).then_some(Quantization {
            scale: q.scale,
            zero_point: q.zero_point,
        }),
    };
    let len = checked_byte_len(&info).map_err(bad)?;
    if len != byte_size {
        return Err(bad(format!(
            "\"{}\" reports {byte_size} bytes but its shape {:?} of {} needs {len}",
            info.name, info.shape, info.dtype
        )));
    }
    Ok(info)
}

impl Engine for TfliteCEngine {
    fn backend(&self) -> BackendKind {
        BackendKind::TfliteC
    }

    fn accelerator(&self) -> Accelerator {
        self.accelerator
    }

    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn set_input(&mut self, index: usize, data: &[u8]) -> Result<(), EngineError> {
        let (t, _) = crate::engine::tensor::checked_slot(
            "input",
            &self.in_ptrs,
            &self.inputs,
            index,
            data.len(),
        )?;
        // SAFETY: `t` is a live input tensor of `want` bytes and `data` has
        // exactly that many.
        let status = unsafe { (self.api.tensor_copy_from)(t, data.as_ptr().cast(), data.len()) };
        if status != 0 {
            return Err(EngineError::Runtime {
                backend: BackendKind::TfliteC,
                call: "TfLiteTensorCopyFromBuffer",
                reason: explain(self.sink.take()),
            });
        }
        Ok(())
    }

    fn invoke(&mut self) -> Result<(), EngineError> {
        // SAFETY: a live interpreter with allocated tensors.
        let status = unsafe { (self.api.interpreter_invoke)(self.interpreter.as_ptr()) };
        if status != 0 {
            return Err(EngineError::Runtime {
                backend: BackendKind::TfliteC,
                call: "TfLiteInterpreterInvoke",
                reason: explain(self.sink.take()),
            });
        }
        Ok(())
    }

    fn output(&mut self, index: usize, out: &mut [u8]) -> Result<(), EngineError> {
        let (t, _) = crate::engine::tensor::checked_slot(
            "output",
            &self.out_ptrs,
            &self.outputs,
            index,
            out.len(),
        )?;
        // SAFETY: `t` is a live output tensor of `want` bytes and `out` has
        // exactly that many.
        let status = unsafe { (self.api.tensor_copy_to)(t, out.as_mut_ptr().cast(), out.len()) };
        if status != 0 {
            return Err(EngineError::Runtime {
                backend: BackendKind::TfliteC,
                call: "TfLiteTensorCopyToBuffer",
                reason: explain(self.sink.take()),
            });
        }
        Ok(())
    }
}

impl Drop for TfliteCEngine {
    fn drop(&mut self) {
        // SAFETY: each object is deleted once, in dependency order: the
        // interpreter first, then the delegates it used, then the model it was
        // built from. The model bytes and the library are released afterwards
        // when the remaining fields drop.
        unsafe { (self.api.interpreter_delete)(self.interpreter.as_ptr()) };
        self.delegates.clear();
        // SAFETY: see above.
        unsafe { (self.api.model_delete)(self.model.as_ptr()) };
    }
}
