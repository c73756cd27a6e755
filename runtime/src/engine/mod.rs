//! Model inference behind one trait, whatever library runs it.
//!
//! The inference libraries are loaded at run time (`libloading`) so that one
//! binary runs on a device with the classic TFLite C library, with LiteRT, or
//! with a Coral Edge TPU plugged in, and so that nothing is linked or downloaded
//! at build time. Callers see only [`Engine`]: raw tensor bytes in, raw tensor
//! bytes out, with [`TensorInfo`] describing each tensor.

use std::fmt;
use std::path::PathBuf;

pub mod config;
mod dylib;
mod flatbuf;
pub mod litert;
pub mod locate;
pub mod model;
pub mod pins;
mod select;
pub mod tensor;
pub mod tflite_c;

pub use config::{BackendChoice, EdgeTpuMode, EngineConfig};
pub use locate::{LibraryKind, LibraryLocation, LibrarySource};
pub use model::ModelSource;
pub use select::{BackendStatus, ModelInfo, candidates, inspect, open, order_for, probe};
pub use tensor::{ResolveTensor, TensorRef, decode_output, encode_input};

/// Element type of a tensor, as the model declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// Unsigned 8-bit integer (usually quantised).
    U8,
    /// Signed 8-bit integer (usually quantised).
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// 16-bit float.
    F16,
    /// Boolean (one byte).
    Bool,
    /// A type this runtime does not handle; the number is the library's code.
    Other(i32),
}

impl ElementType {
    /// Bytes per element, or `None` for a type we cannot size.
    pub fn size(self) -> Option<usize> {
        match self {
            ElementType::F32 | ElementType::I32 => Some(4),
            ElementType::U8 | ElementType::I8 | ElementType::Bool => Some(1),
            ElementType::I16 | ElementType::F16 => Some(2),
            ElementType::I64 => Some(8),
            ElementType::Other(_) => None,
        }
    }
}

impl ElementType {
    /// Map a `TfLiteType` / `LiteRtElementType` code (the two share values).
    pub fn from_tflite_code(code: i32) -> Self {
        match code {
            1 => ElementType::F32,
            2 => ElementType::I32,
            3 => ElementType::U8,
            4 => ElementType::I64,
            6 => ElementType::Bool,
            7 => ElementType::I16,
            9 => ElementType::I8,
            10 => ElementType::F16,
            other => ElementType::Other(other),
        }
    }
}

/// Byte size of `info` with overflow checks, or why it cannot be sized.
///
/// Backends call this on every tensor before accepting a model, so later
/// `element_count`/`byte_len` calls on a [`TensorInfo`] cannot overflow.
pub(crate) fn checked_byte_len(info: &TensorInfo) -> Result<usize, String> {
    let elem = info.dtype.size().ok_or_else(|| {
        format!(
            "\"{}\" has element type {}, which this runtime cannot handle",
            info.name, info.dtype
        )
    })?;
    info.shape
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("\"{}\" shape {:?} is too large", info.name, info.shape))
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementType::F32 => f.write_str("float32"),
            ElementType::U8 => f.write_str("uint8"),
            ElementType::I8 => f.write_str("int8"),
            ElementType::I16 => f.write_str("int16"),
            ElementType::I32 => f.write_str("int32"),
            ElementType::I64 => f.write_str("int64"),
            ElementType::F16 => f.write_str("float16"),
            ElementType::Bool => f.write_str("bool"),
            ElementType::Other(code) => write!(f, "unsupported type #{code}"),
        }
    }
}

/// Affine quantisation: `real = scale * (quantised - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantization {
    /// Step between two quantised values, in real units.
    pub scale: f32,
    /// Quantised value that represents real zero.
    pub zero_point: i32,
}

/// What the model declares about one input or output tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name from the model file (may be empty).
    pub name: String,
    /// Element type.
    pub dtype: ElementType,
    /// Static shape; every dimension is known (a dynamic batch is resized to 1 at load,
    /// other dynamic dimensions are refused).
    pub shape: Vec<usize>,
    /// Quantisation parameters, when the tensor is quantised.
    pub quantization: Option<Quantization>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes, or `None` if the element type has no known size.
    pub fn byte_len(&self) -> Option<usize> {
        self.dtype.size().map(|s| s * self.element_count())
    }
}

/// Which library family runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Classic TensorFlow Lite C API (`libtensorflowlite_c.so`).
    TfliteC,
    /// LiteRT C API (`libLiteRt.so`).
    Litert,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::TfliteC => "tflite-c",
            BackendKind::Litert => "litert",
        })
    }
}

/// What actually executes the operations inside the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// Coral Edge TPU delegate.
    EdgeTpu,
    /// XNNPACK CPU kernels.
    Xnnpack,
    /// The library's reference CPU kernels.
    Cpu,
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accelerator::EdgeTpu => "edgetpu",
            Accelerator::Xnnpack => "xnnpack",
            Accelerator::Cpu => "cpu",
        })
    }
}

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The inference library could not be found or opened.
    #[error("cannot load {what} from {path}: {reason}. {hint}")]
    Library {
        /// Which library (e.g. "libLiteRt.so").
        what: &'static str,
        /// Where we looked.
        path: PathBuf,
        /// What the loader said.
        reason: String,
        /// What the user can do about it.
        hint: String,
    },
    /// The library is present but not a version this runtime was built for.
    #[error("{path}: unsupported {what} version ({found}); supported: {supported}")]
    Version {
        /// Which library.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What we found (version string or SHA-256).
        found: String,
        /// What we accept.
        supported: String,
    },
    /// The model file could not be read or is not a valid model.
    #[error("invalid model {model}: {reason}")]
    Model {
        /// File name or "<bytes>".
        model: String,
        /// Why it was refused.
        reason: String,
    },
    /// Data handed to a tensor does not match it.
    #[error("tensor {tensor}: {reason}")]
    Tensor {
        /// Tensor name or index.
        tensor: String,
        /// What does not match.
        reason: String,
    },
    /// The library reported a failure while running.
    #[error("{backend} failed in {call}: {reason}")]
    Runtime {
        /// Backend that failed.
        backend: BackendKind,
        /// The C function that failed.
        call: &'static str,
        /// Status or message from the library.
        reason: String,
    },
    /// No backend could be used.
    #[error("no inference backend available: {0}")]
    NoBackend(String),
}

/// A loaded model ready to run: the one interface the rest of the runtime uses.
///
/// Implementations own their library handle, model and interpreter; dropping the
/// engine releases them in the right order.
pub trait Engine: Send {
    /// Library family running the model.
    fn backend(&self) -> BackendKind;
    /// What executes the operations (Edge TPU, XNNPACK or plain CPU).
    fn accelerator(&self) -> Accelerator;
    /// Input tensors in model order.
    fn inputs(&self) -> &[TensorInfo];
    /// Output tensors in model order.
    fn outputs(&self) -> &[TensorInfo];
    /// Copy `data` into input `index`; its length must equal the tensor's byte size.
    fn set_input(&mut self, index: usize, data: &[u8]) -> Result<(), EngineError>;
    /// Run the model once.
    fn invoke(&mut self) -> Result<(), EngineError>;
    /// Copy output `index` into `out`; its length must equal the tensor's byte size.
    fn output(&mut self, index: usize, out: &mut [u8]) -> Result<(), EngineError>;
}
