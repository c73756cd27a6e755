//! A LiteRT compiled model as an [`Engine`]: signature 0, CPU accelerator,
//! one managed tensor buffer per input and output.

use std::ffi::c_void;
use std::sync::Arc;

use super::ffi::{self, Handle, LitertApi, RankedTensorType, Status};
use crate::engine::config::EngineConfig;
use crate::engine::model::{AlignedBytes, ModelSource};
use crate::engine::{
    Accelerator, BackendKind, ElementType, Engine, EngineError, Quantization, TensorInfo,
    checked_byte_len,
};

/// Most input or output tensors accepted from one model.
const MAX_IO_TENSORS: usize = 1024;

/// A model compiled by LiteRT for the CPU (XNNPACK).
pub struct LitertEngine {
    env: Handle,
    options: Handle,
    model: Handle,
    compiled: Handle,
    /// Buffers in signature order, as `LiteRtRunCompiledModel` wants them.
    sig_in_bufs: Vec<Handle>,
    sig_out_bufs: Vec<Handle>,
    /// Engine (subgraph) index → signature index.
    in_map: Vec<usize>,
    out_map: Vec<usize>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    fully_accelerated: bool,
    api: Arc<LitertApi>,
    /// The aligned model bytes LiteRT points into (freed after the model).
    _bytes: Option<AlignedBytes>,
}

// SAFETY: all handles are heap objects without thread affinity, owned
// exclusively by this engine and only used through `&mut self` (or `&self`
// reads of cached metadata), so never from two threads at once.
unsafe impl Send for LitertEngine {}

impl LitertEngine {
    /// Library version and path.
    pub fn library(&self) -> String {
        format!("{} ({})", self.api.version(), self.api.path.display())
    }

    /// Whether LiteRT reports every op on the selected accelerator
    /// (int8 models report false but run correctly).
    pub fn fully_accelerated(&self) -> bool {
        self.fully_accelerated
    }
}

fn call(call: &'static str, status: Status) -> Result<(), EngineError> {
    if status == 0 {
        Ok(())
    } else {
        Err(EngineError::Runtime {
            backend: BackendKind::Litert,
            call,
            reason: format!("status {status} ({})", ffi::status_name(status)),
        })
    }
}

/// Load `model` with the LiteRT library in `api`.
pub fn open_with_api(
    api: Arc<LitertApi>,
    cfg: &EngineConfig,
    model: &ModelSource,
) -> Result<LitertEngine, EngineError> {
    model.precheck()?;
    let label = model.label();
    if !cfg.xnnpack {
        tracing::debug!("engine.xnnpack = false has no effect on LiteRT: its CPU path is XNNPACK");
    }
    let mut e = LitertEngine {
        env: std::ptr::null_mut(),
        options: std::ptr::null_mut(),
        model: std::ptr::null_mut(),
        compiled: std::ptr::null_mut(),
        sig_in_bufs: Vec::new(),
        sig_out_bufs: Vec::new(),
        in_map: Vec::new(),
        out_map: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        fully_accelerated: false,
        api: Arc::clone(&api),
        _bytes: None,
    };
    let model_err = |reason: String| EngineError::Model {
        model: label.clone(),
        reason,
    };

    // SAFETY: (the whole block) every call below is a LiteRT 2.3.0 C function
    // called with its documented arguments; out-pointers point to locals;
    // handles are stored in `e` as soon as they exist so that `Drop` frees
    // them on any early return, in the right order.
    unsafe {
        call(
            "LiteRtCreateEnvironment",
            (api.create_environment)(0, std::ptr::null(), &mut e.env),
        )?;
        // LiteRT does not verify flatbuffers (a truncated model crashes it), so
        // the bytes are verified here, copied to an aligned buffer and loaded
        // from memory.
        let read;
        let bytes: &[u8] = match model {
            ModelSource::File(path) => {
                read = crate::engine::model::read_file(path)?;
                &read
            }
            ModelSource::Bytes(b) => b,
        };
        crate::engine::flatbuf::verify_tflite(bytes)
            .map_err(|r| model_err(format!("malformed TFLite flatbuffer: {r}")))?;
        // The model points into the buffer: the engine keeps it alive.
        let aligned = e._bytes.insert(AlignedBytes::copy_from(bytes, &label)?);
        let aligned = aligned.as_slice();
        let status = (api.create_model_from_buffer)(
            e.env,
            aligned.as_ptr().cast(),
            aligned.len(),
            &mut e.model,
        );
        if status != 0 || e.model.is_null() {
            return Err(model_err(format!(
                "LiteRT rejected it: status {status} ({}); corrupt, truncated or not a TFLite model",
                ffi::status_name(status)
            )));
        }

        let mut n_sig = 0usize;
        call(
            "LiteRtGetNumModelSignatures",
            (api.num_signatures)(e.model, &mut n_sig),
        )?;
        if n_sig == 0 {
            return Err(model_err("the model has no signature".into()));
        }
        let mut sig: Handle = std::ptr::null_mut();
        call(
            "LiteRtGetModelSignature",
            (api.get_signature)(e.model, 0, &mut sig),
        )?;

        let sig_in = tensors(&api, sig, true, &label)?;
        let sig_out = tensors(&api, sig, false, &label)?;
        let mut subgraph: Handle = std::ptr::null_mut();
        let sub = if (api.signature_subgraph)(sig, &mut subgraph) == 0 && !subgraph.is_null() {
            Some((
                subgraph_tensors(&api, subgraph, true),
                subgraph_tensors(&api, subgraph, false),
            ))
        } else {
            None
        };
        let (sub_in, sub_out) = sub.unwrap_or((None, None));
        e.in_map = order(&sig_in, sub_in.as_deref());
        e.out_map = order(&sig_out, sub_out.as_deref());

        let mut sig_in_types = sig_in
            .iter()
            .map(|&t| tensor_info(&api, t, &label))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sig_out_types = sig_out
            .iter()
            .map(|&t| tensor_info(&api, t, &label))
            .collect::<Result<Vec<_>, _>>()?;

        call("LiteRtCreateOptions", (api.create_options)(&mut e.options))?;
        call(
            "LiteRtSetOptionsHardwareAccelerators",
            (api.set_hw_accelerators)(e.options, ffi::HW_ACCELERATOR_CPU),
        )?;
        let status = (api.create_compiled_model)(e.env, e.model, e.options, &mut e.compiled);
        if status != 0 || e.compiled.is_null() {
            e.compiled = std::ptr::null_mut();
            call(
                "LiteRtCreateCompiledModel",
                if status == 0 { 3 } else { status },
            )?;
        }
        resolve_dynamic_batch(
            &api,
            e.compiled,
            &mut sig_in_types,
            &mut sig_out_types,
            &label,
        )?;
        let finish = |types: &[(Pending, RankedTensorType)]| {
            types
                .iter()
                .map(|(p, rtt)| Ok((p.info(&label)?, *rtt)))
                .collect::<Result<Vec<_>, EngineError>>()
        };
        let sig_in_types = finish(&sig_in_types)?;
        let sig_out_types = finish(&sig_out_types)?;
        e.inputs = e
            .in_map
            .iter()
            .map(|&s| sig_in_types[s].0.clone())
            .collect();
        e.outputs = e
            .out_map
            .iter()
            .map(|&s| sig_out_types[s].0.clone())
            .collect();
        let mut full = false;
        if (api.fully_accelerated)(e.compiled, &mut full) == 0 {
            e.fully_accelerated = full;
        }

        for (i, (info, rtt)) in sig_in_types.iter().enumerate() {
            let mut req: Handle = std::ptr::null_mut();
            call(
                "LiteRtGetCompiledModelInputBufferRequirements",
                (api.input_requirements)(e.compiled, 0, i, &mut req),
            )?;
            let buf = new_buffer(&api, e.env, rtt, req, info)?;
            e.sig_in_bufs.push(buf);
        }
        for (i, (info, rtt)) in sig_out_types.iter().enumerate() {
            let mut req: Handle = std::ptr::null_mut();
            call(
                "LiteRtGetCompiledModelOutputBufferRequirements",
                (api.output_requirements)(e.compiled, 0, i, &mut req),
            )?;
            let buf = new_buffer(&api, e.env, rtt, req, info)?;
            e.sig_out_bufs.push(buf);
        }
    }
    Ok(e)
}

/// # Safety
/// `env` is live; `req` belongs to a live compiled model.
unsafe fn new_buffer(
    api: &LitertApi,
    env: Handle,
    rtt: &RankedTensorType,
    req: Handle,
    info: &TensorInfo,
) -> Result<Handle, EngineError> {
    let mut buf: Handle = std::ptr::null_mut();
    // SAFETY: per the function contract; `rtt` is a valid 72-byte struct.
    unsafe {
        call(
            "LiteRtCreateManagedTensorBufferFromRequirements",
            (api.create_managed_buffer)(env, rtt, req, &mut buf),
        )?;
        let mut size = 0usize;
        let status = (api.buffer_size)(buf, &mut size);
        let want = info.byte_len().unwrap_or(usize::MAX);
        if status != 0 || size < want {
            (api.destroy_buffer)(buf);
            return Err(EngineError::Runtime {
                backend: BackendKind::Litert,
                call: "LiteRtGetTensorBufferSize",
                reason: format!(
                    "buffer for \"{}\" is {size} bytes (status {status}), tensor needs {want}",
                    info.name
                ),
            });
        }
    }
    Ok(buf)
}

/// Signature input or output tensor handles, in signature order.
///
/// # Safety
/// `sig` is a live signature.
unsafe fn tensors(
    api: &LitertApi,
    sig: Handle,
    inputs: bool,
    label: &str,
) -> Result<Vec<Handle>, EngineError> {
    let mut n = 0usize;
    // SAFETY: per the function contract.
    unsafe {
        if inputs {
            call(
                "LiteRtGetNumSignatureInputs",
                (api.num_signature_inputs)(sig, &mut n),
            )?;
        } else {
            call(
                "LiteRtGetNumSignatureOutputs",
                (api.num_signature_outputs)(sig, &mut n),
            )?;
        }
        if n > MAX_IO_TENSORS {
            return Err(EngineError::Model {
                model: label.into(),
                reason: format!("{n} signature tensors (at most {MAX_IO_TENSORS} supported)"),
            });
        }
        let mut out = Vec::new();
        for i in 0..n {
            let mut t: Handle = std::ptr::null_mut();
            if inputs {
                call(
                    "LiteRtGetSignatureInputTensorByIndex",
                    (api.signature_input)(sig, i, &mut t),
                )?;
            } else {
                call(
                    "LiteRtGetSignatureOutputTensorByIndex",
                    (api.signature_output)(sig, i, &mut t),
                )?;
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// Subgraph input or output handles in subgraph order, or `None` if unavailable.
///
/// # Safety
/// `subgraph` is a live subgraph.
unsafe fn subgraph_tensors(api: &LitertApi, subgraph: Handle, inputs: bool) -> Option<Vec<Handle>> {
    let mut n = 0usize;
    // SAFETY: per the function contract.
    unsafe {
        let st = if inputs {
            (api.num_subgraph_inputs)(subgraph, &mut n)
        } else {
            (api.num_subgraph_outputs)(subgraph, &mut n)
        };
        if st != 0 || n > MAX_IO_TENSORS {
            return None;
        }
        let mut out = Vec::new();
        for i in 0..n {
            let mut t: Handle = std::ptr::null_mut();
            let st = if inputs {
                (api.subgraph_input)(subgraph, i, &mut t)
            } else {
                (api.subgraph_output)(subgraph, i, &mut t)
            };
            if st != 0 {
                return None;
            }
            out.push(t);
        }
        Some(out)
    }
}

/// Map model (subgraph) order to signature order, so tensor indices mean the
/// same in both backends. The signature may list tensors in another order
/// (e.g. sorted by name). Falls back to signature order if the two sets differ.
fn order(sig: &[Handle], sub: Option<&[Handle]>) -> Vec<usize> {
    let identity: Vec<usize> = (0..sig.len()).collect();
    let Some(sub) = sub else { return identity };
    if sub.len() != sig.len() {
        return identity;
    }
    let mapped: Option<Vec<usize>> = sub
        .iter()
        .map(|t| sig.iter().position(|s| s == t))
        .collect();
    match mapped {
        Some(m) => {
            let mut seen = m.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() == m.len() { m } else { identity }
        }
        None => identity,
    }
}

/// A tensor as the model file declares it, before dynamic dimensions are resolved.
struct Pending {
    name: String,
    dtype: ElementType,
    /// Dimensions as declared: -1 marks a dynamic one.
    dims: Vec<i32>,
    quantization: Option<Quantization>,
}

impl Pending {
    /// The tensor's final description; every dimension must be known by now.
    fn info(&self, label: &str) -> Result<TensorInfo, EngineError> {
        let bad = |reason: String| EngineError::Model {
            model: label.into(),
            reason: format!("tensor \"{}\": {reason}", self.name),
        };
        let shape = self
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                bad(format!(
                    "dynamic dimension in {:?}; only a dynamic batch (the first dimension of an \
                     input) is resized to 1: export the model with static sizes otherwise",
                    self.dims
                ))
            })?;
        let info = TensorInfo {
            name: self.name.clone(),
            dtype: self.dtype,
            shape,
            quantization: self.quantization,
        };
        checked_byte_len(&info).map_err(bad)?;
        Ok(info)
    }
}

/// Give a dynamic batch (`-1` as an input's first dimension, as batched-serving exports
/// have) the size 1, the way the classic interpreter runs such a model, and read back every
/// input and output shape the compiled model then has.
///
/// LiteRT reports the shape *signature* (with the `-1`) and sizes buffers from it, so
/// without this it cannot run a model the classic C API runs unchanged. Other dynamic
/// dimensions are left for [`Pending::info`] to refuse.
///
/// # Safety
/// `compiled` is a live compiled model of the signature the types were read from.
unsafe fn resolve_dynamic_batch(
    api: &LitertApi,
    compiled: Handle,
    inputs: &mut [(Pending, RankedTensorType)],
    outputs: &mut [(Pending, RankedTensorType)],
    label: &str,
) -> Result<(), EngineError> {
    let dynamic = |t: &(Pending, RankedTensorType)| t.0.dims.iter().any(|&d| d < 0);
    if !inputs.iter().any(dynamic) && !outputs.iter().any(dynamic) {
        return Ok(());
    }
    let mut resized = Vec::new();
    for (i, (p, _)) in inputs.iter().enumerate() {
        let batch_only =
            p.dims.first().is_some_and(|&d| d < 0) && p.dims[1..].iter().all(|&d| d > 0);
        if !batch_only {
            continue;
        }
        let mut dims: Vec<std::ffi::c_int> = p.dims.clone();
        dims[0] = 1;
        // SAFETY: live compiled model; `dims` holds `dims.len()` ints for the call.
        let status = unsafe { (api.resize_input)(compiled, 0, i, dims.as_ptr(), dims.len()) };
        if status != 0 {
            return Err(EngineError::Model {
                model: label.into(),
                reason: format!(
                    "input \"{}\" has a dynamic batch {:?} and LiteRT refused to resize it to 1: \
                     status {status} ({})",
                    p.name,
                    p.dims,
                    ffi::status_name(status)
                ),
            });
        }
        resized.push(p.name.clone());
    }
    // The compiled model's layouts are the shapes it now runs with.
    for (i, (p, rtt)) in inputs.iter_mut().enumerate() {
        // SAFETY: a zeroed layout is a valid out-parameter.
        let mut layout: ffi::Layout = unsafe { std::mem::zeroed() };
        // SAFETY: live compiled model; `layout` is a local.
        if unsafe { (api.input_layout)(compiled, 0, i, &mut layout) } == 0 {
            adopt(p, rtt, &layout);
        }
    }
    if !outputs.is_empty() {
        // SAFETY: a zeroed layout is a valid value.
        let mut layouts = vec![unsafe { std::mem::zeroed::<ffi::Layout>() }; outputs.len()];
        // SAFETY: live compiled model; `layouts` holds one layout per signature output;
        // `true` lets it allocate the outputs for the resized inputs.
        let status =
            unsafe { (api.output_layouts)(compiled, 0, layouts.len(), layouts.as_mut_ptr(), true) };
        call("LiteRtGetCompiledModelOutputTensorLayouts", status)?;
        for ((p, rtt), layout) in outputs.iter_mut().zip(&layouts) {
            adopt(p, rtt, layout);
        }
    }
    tracing::debug!(model = label, inputs = ?resized, "dynamic batch resized to 1");
    Ok(())
}

/// Take the dimensions of `layout` (a compiled model's) for a tensor of the same rank.
fn adopt(p: &mut Pending, rtt: &mut RankedTensorType, layout: &ffi::Layout) {
    let rank = layout.rank();
    if rank != p.dims.len() || rank > ffi::MAX_RANK {
        return;
    }
    p.dims.copy_from_slice(&layout.dims[..rank]);
    rtt.layout.dims[..rank].copy_from_slice(&layout.dims[..rank]);
}

/// # Safety
/// `t` is a live tensor handle of a live model.
unsafe fn tensor_info(
    api: &LitertApi,
    t: Handle,
    label: &str,
) -> Result<(Pending, RankedTensorType), EngineError> {
    // SAFETY: per the function contract; out-pointers are locals.
    unsafe {
        let mut name_ptr: *const std::ffi::c_char = std::ptr::null();
        let name = if (api.tensor_name)(t, &mut name_ptr) == 0 {
            crate::engine::dylib::c_string(name_ptr)
        } else {
            String::new()
        };
        let bad = |reason: String| EngineError::Model {
            model: label.into(),
            reason: format!("tensor \"{name}\": {reason}"),
        };
        let mut type_id = -1;
        call(
            "LiteRtGetTensorTypeId",
            (api.tensor_type_id)(t, &mut type_id),
        )?;
        if type_id != ffi::RANKED_TENSOR {
            return Err(bad(
                "unranked (dynamic rank); export the model with static shapes".into(),
            ));
        }
        let mut rtt: RankedTensorType = std::mem::zeroed();
        call(
            "LiteRtGetRankedTensorType",
            (api.ranked_tensor_type)(t, &mut rtt),
        )?;
        let rank = rtt.layout.rank();
        if rank > ffi::MAX_RANK {
            return Err(bad(format!("rank {rank} not supported")));
        }
        let dims = rtt.layout.dims[..rank].to_vec();
        if dims.iter().any(|&d| d < -1) {
            return Err(bad(format!("invalid dimensions {dims:?}")));
        }
        let mut quantization = None;
        let mut qtype = 0;
        if (api.quantization_type)(t, &mut qtype) == 0 && qtype == ffi::QUANT_PER_TENSOR {
            let mut q = ffi::PerTensorQuant::default();
            if (api.per_tensor_quantization)(t, &mut q) == 0 && q.scale > 0.0 && q.scale.is_finite()
            {
                let zero_point = i32::try_from(q.zero_point)
                    .map_err(|_| bad(format!("zero point {} out of range", q.zero_point)))?;
                quantization = Some(Quantization {
                    scale: q.scale,
                    zero_point,
                });
            }
        }
        let pending = Pending {
            name: name.clone(),
            dtype: ElementType::from_tflite_code(rtt.element_type),
            dims,
            quantization,
        };
        Ok((pending, rtt))
    }
}

impl LitertEngine {
    /// Lock `buf`, hand its host memory to `f`, unlock.
    fn with_locked<R>(
        &self,
        buf: Handle,
        mode: std::ffi::c_int,
        f: impl FnOnce(*mut c_void) -> R,
    ) -> Result<R, EngineError> {
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `buf` is a live buffer owned by this engine.
        call("LiteRtLockTensorBuffer", unsafe {
            (self.api.lock_buffer)(buf, &mut ptr, mode)
        })?;
        if ptr.is_null() {
            // SAFETY: undo the successful lock.
            unsafe { (self.api.unlock_buffer)(buf) };
            return Err(EngineError::Runtime {
                backend: BackendKind::Litert,
                call: "LiteRtLockTensorBuffer",
                reason: "returned no host memory".into(),
            });
        }
        let r = f(ptr);
        // SAFETY: paired with the lock above.
        call("LiteRtUnlockTensorBuffer", unsafe {
            (self.api.unlock_buffer)(buf)
        })?;
        Ok(r)
    }
}

impl Engine for LitertEngine {
    fn backend(&self) -> BackendKind {
        BackendKind::Litert
    }

    fn accelerator(&self) -> Accelerator {
        Accelerator::Xnnpack
    }

    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn set_input(&mut self, index: usize, data: &[u8]) -> Result<(), EngineError> {
        let (sig, want) = crate::engine::tensor::checked_slot(
            "input",
            &self.in_map,
            &self.inputs,
            index,
            data.len(),
        )?;
        let buf = self.sig_in_bufs[sig];
        self.with_locked(buf, ffi::LOCK_WRITE, |ptr| {
            // SAFETY: the locked buffer holds at least `want` bytes (checked at
            // creation) and does not overlap `data`.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.cast::<u8>(), want) }
        })
    }

    fn invoke(&mut self) -> Result<(), EngineError> {
        // SAFETY: live compiled model; the buffer arrays match the signature's
        // input and output counts.
        let status = unsafe {
            (self.api.run)(
                self.compiled,
                0,
                self.sig_in_bufs.len(),
                self.sig_in_bufs.as_mut_ptr(),
                self.sig_out_bufs.len(),
                self.sig_out_bufs.as_mut_ptr(),
            )
        };
        call("LiteRtRunCompiledModel", status)
    }

    fn output(&mut self, index: usize, out: &mut [u8]) -> Result<(), EngineError> {
        let (sig, want) = crate::engine::tensor::checked_slot(
            "output",
            &self.out_map,
            &self.outputs,
            index,
            out.len(),
        )?;
        let buf = self.sig_out_bufs[sig];
        self.with_locked(buf, ffi::LOCK_READ, |ptr| {
            // SAFETY: the locked buffer holds at least `want` bytes.
            unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), out.as_mut_ptr(), want) }
        })
    }
}

impl Drop for LitertEngine {
    fn drop(&mut self) {
        // SAFETY: each non-null handle is destroyed once, users before what
        // they use: buffers, compiled model, model, options, environment.
        // The model bytes and the library are released afterwards with the
        // remaining fields.
        unsafe {
            for &b in self.sig_in_bufs.iter().chain(&self.sig_out_bufs) {
                (self.api.destroy_buffer)(b);
            }
            if !self.compiled.is_null() {
                (self.api.destroy_compiled_model)(self.compiled);
            }
            if !self.model.is_null() {
                (self.api.destroy_model)(self.model);
            }
            if !self.options.is_null() {
                (self.api.destroy_options)(self.options);
            }
            if !self.env.is_null() {
                (self.api.destroy_environment)(self.env);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: usize) -> Handle {
        n as Handle
    }

    #[test]
    fn order_maps_subgraph_to_signature() {
        let sig = [h(8), h(16)];
        assert_eq!(order(&sig, Some(&[h(16), h(8)])), vec![1, 0]);
        assert_eq!(order(&sig, Some(&[h(8), h(16)])), vec![0, 1]);
        assert_eq!(order(&sig, None), vec![0, 1]);
        assert_eq!(order(&sig, Some(&[h(8)])), vec![0, 1]);
        assert_eq!(order(&sig, Some(&[h(8), h(24)])), vec![0, 1]);
        assert_eq!(order(&sig, Some(&[h(8), h(8)])), vec![0, 1]);
    }
}
