//! The LiteRT 2.3.0 C API as a table of function pointers read from
//! `libLiteRt.so` at run time, with the pinned-hash version check.
//!
//! LiteRT has no version query and changed signatures between minor versions
//! under the same names (e.g. `LiteRtCreateModelFromFile` gained an environment
//! argument in 2.2), so only the pinned builds are accepted.

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libloading::Library;

use crate::engine::EngineError;
use crate::engine::dylib;
use crate::engine::locate::{LibraryKind, LibraryLocation};
use crate::engine::pins;

/// `LiteRtStatus`: 0 is OK.
pub(crate) type Status = c_int;
/// Opaque handle (`LiteRtEnvironment`, `LiteRtModel`, …).
pub(crate) type Handle = *mut c_void;

/// `kLiteRtHwAcceleratorCpu`.
pub(crate) const HW_ACCELERATOR_CPU: c_int = 1;
/// `kLiteRtTensorBufferLockModeRead`.
pub(crate) const LOCK_READ: c_int = 0;
/// `kLiteRtTensorBufferLockModeWrite`.
pub(crate) const LOCK_WRITE: c_int = 1;
/// `kLiteRtRankedTensorType`.
pub(crate) const RANKED_TENSOR: c_int = 0;
/// `kLiteRtQuantizationPerTensor`.
pub(crate) const QUANT_PER_TENSOR: c_int = 1;
/// `LITERT_TENSOR_MAX_RANK`.
pub(crate) const MAX_RANK: usize = 8;

/// `LiteRtLayout`: a 7-bit rank and a has-strides bit, then dimensions and strides.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub rank_bits: u32,
    pub dims: [i32; MAX_RANK],
    pub strides: [u32; MAX_RANK],
}

impl Layout {
    pub(crate) fn rank(&self) -> usize {
        (self.rank_bits & 0x7f) as usize
    }
}

/// `LiteRtRankedTensorType` (72 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RankedTensorType {
    pub element_type: c_int,
    pub layout: Layout,
}

const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);

/// `LiteRtQuantizationPerTensor` (16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PerTensorQuant {
    pub scale: f32,
    pub zero_point: i64,
}

const _: () = assert!(std::mem::size_of::<PerTensorQuant>() == 16);

macro_rules! api_table {
    ($( $field:ident : $sym:literal => fn($($arg:ty),*) $(-> $ret:ty)? ;)*) => {
        /// Function pointers into one loaded, hash-checked `libLiteRt.so`.
        pub struct LitertApi {
            $(pub(crate) $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            /// SHA-256 of the library file.
            pub sha256: String,
            /// File the loader mapped.
            pub path: PathBuf,
            /// Where the lookup found it.
            pub location: LibraryLocation,
            /// False when accepted only through `TINYLCM_LITERT_UNPINNED=1`.
            pub pinned: bool,
            _lib: Library,
        }

        impl LitertApi {
            fn from_library(lib: Library, location: LibraryLocation) -> Result<Self, EngineError> {
                let kind = LibraryKind::Litert;
                let p = &location.path;
                // SAFETY: each type is the 2.3.0 C signature of that symbol
                // (litert/c/*.h); the library's hash is checked before use.
                unsafe {
                    $(let $field = dylib::symbol::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(&lib, kind, p, $sym)?;)*
                    Ok(LitertApi {
                        $($field,)*
                        sha256: String::new(),
                        path: p.clone(),
                        location,
                        pinned: false,
                        _lib: lib,
                    })
                }
            }
        }
    };
}

api_table! {
    create_environment: "LiteRtCreateEnvironment" => fn(c_int, *const c_void, *mut Handle) -> Status;
    destroy_environment: "LiteRtDestroyEnvironment" => fn(Handle);
    create_model_from_buffer: "LiteRtCreateModelFromBuffer" => fn(Handle, *const c_void, usize, *mut Handle) -> Status;
    destroy_model: "LiteRtDestroyModel" => fn(Handle);
    num_signatures: "LiteRtGetNumModelSignatures" => fn(Handle, *mut usize) -> Status;
    get_signature: "LiteRtGetModelSignature" => fn(Handle, usize, *mut Handle) -> Status;
    signature_subgraph: "LiteRtGetSignatureSubgraph" => fn(Handle, *mut Handle) -> Status;
    num_signature_inputs: "LiteRtGetNumSignatureInputs" => fn(Handle, *mut usize) -> Status;
    num_signature_outputs: "LiteRtGetNumSignatureOutputs" => fn(Handle, *mut usize) -> Status;
    signature_input: "LiteRtGetSignatureInputTensorByIndex" => fn(Handle, usize, *mut Handle) -> Status;
    signature_output: "LiteRtGetSignatureOutputTensorByIndex" => fn(Handle, usize, *mut Handle) -> Status;
    num_subgraph_inputs: "LiteRtGetNumSubgraphInputs" => fn(Handle, *mut usize) -> Status;
    num_subgraph_outputs: "LiteRtGetNumSubgraphOutputs" => fn(Handle, *mut usize) -> Status;
    subgraph_input: "LiteRtGetSubgraphInput" => fn(Handle, usize, *mut Handle) -> Status;
    subgraph_output: "LiteRtGetSubgraphOutput" => fn(Handle, usize, *mut Handle) -> Status;
    tensor_name: "LiteRtGetTensorName" => fn(Handle, *mut *const c_char) -> Status;
    tensor_type_id: "LiteRtGetTensorTypeId" => fn(Handle, *mut c_int) -> Status;
    ranked_tensor_type: "LiteRtGetRankedTensorType" => fn(Handle, *mut RankedTensorType) -> Status;
    quantization_type: "LiteRtGetQuantizationTypeId" => fn(Handle, *mut c_int) -> Status;
    per_tensor_quantization: "LiteRtGetPerTensorQuantization" => fn(Handle, *mut PerTensorQuant) -> Status;
    create_options: "LiteRtCreateOptions" => fn(*mut Handle) -> Status;
    destroy_options: "LiteRtDestroyOptions" => fn(Handle);
    set_hw_accelerators: "LiteRtSetOptionsHardwareAccelerators" => fn(Handle, c_int) -> Status;
    create_compiled_model: "LiteRtCreateCompiledModel" => fn(Handle, Handle, Handle, *mut Handle) -> Status;
    destroy_compiled_model: "LiteRtDestroyCompiledModel" => fn(Handle);
    fully_accelerated: "LiteRtCompiledModelIsFullyAccelerated" => fn(Handle, *mut bool) -> Status;
    input_requirements: "LiteRtGetCompiledModelInputBufferRequirements" => fn(Handle, usize, usize, *mut Handle) -> Status;
    output_requirements: "LiteRtGetCompiledModelOutputBufferRequirements" => fn(Handle, usize, usize, *mut Handle) -> Status;
    create_managed_buffer: "LiteRtCreateManagedTensorBufferFromRequirements" => fn(Handle, *const RankedTensorType, Handle, *mut Handle) -> Status;
    destroy_buffer: "LiteRtDestroyTensorBuffer" => fn(Handle);
    buffer_size: "LiteRtGetTensorBufferSize" => fn(Handle, *mut usize) -> Status;
    lock_buffer: "LiteRtLockTensorBuffer" => fn(Handle, *mut *mut c_void, c_int) -> Status;
    unlock_buffer: "LiteRtUnlockTensorBuffer" => fn(Handle) -> Status;
    run: "LiteRtRunCompiledModel" => fn(Handle, usize, usize, *mut Handle, usize, *mut Handle) -> Status;
    resize_input: "LiteRtCompiledModelResizeInputTensor" => fn(Handle, usize, usize, *const c_int, usize) -> Status;
    input_layout: "LiteRtGetCompiledModelInputTensorLayout" => fn(Handle, usize, usize, *mut Layout) -> Status;
    output_layouts: "LiteRtGetCompiledModelOutputTensorLayouts" => fn(Handle, usize, usize, *mut Layout, bool) -> Status;
}

impl LitertApi {
    /// Load the library at `location`, check its SHA-256 against the pins and
    /// resolve every symbol.
    pub fn load(location: LibraryLocation) -> Result<Self, EngineError> {
        // With a real path, check the hash before the loader runs any of the
        // library's code; a bare name is hashed once the loader found the file.
        let early = if location.path.components().count() > 1 {
            let sha = hash(&location.path)?;
            check_pin(&sha, &location.path)?;
            Some(sha)
        } else {
            None
        };
        let lib = dylib::open(LibraryKind::Litert, &location)?;
        let mut api = LitertApi::from_library(lib, location)?;
        if let Some(real) = dylib::file_of_symbol(api.create_environment as *const c_void) {
            api.path = real;
        }
        api.sha256 = match early {
            Some(sha) => sha,
            None => {
                let sha = hash(&api.path)?;
                check_pin(&sha, &api.path)?;
                sha
            }
        };
        api.pinned = pins::litert_hash_is_pinned(&api.sha256);
        Ok(api)
    }

    /// Load once per process and location; later calls share the same table
    /// (and skip re-hashing the file).
    pub fn load_shared(location: LibraryLocation) -> Result<Arc<Self>, EngineError> {
        static CACHE: OnceLock<Mutex<Vec<Arc<LitertApi>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(api) = cache.iter().find(|a| a.location == location) {
            return Ok(Arc::clone(api));
        }
        let api = Arc::new(LitertApi::load(location)?);
        cache.push(Arc::clone(&api));
        Ok(api)
    }

    /// Version to report: the pinned version, or "unpinned <hash prefix>".
    pub fn version(&self) -> String {
        if self.pinned {
            pins::LITERT_VERSION.to_string()
        } else {
            format!(
                "unpinned (sha256 {})",
                &self.sha256[..self.sha256.len().min(12)]
            )
        }
    }
}

fn hash(path: &std::path::Path) -> Result<String, EngineError> {
    dylib::sha256_file(path).map_err(|e| EngineError::Library {
        what: LibraryKind::Litert.file_name(),
        path: path.to_path_buf(),
        reason: format!("cannot read it to check its SHA-256: {e}"),
        hint: LibraryKind::Litert.hint(),
    })
}

/// Accept pinned hashes; others only with `TINYLCM_LITERT_UNPINNED=1` (warning).
fn check_pin(sha256: &str, path: &std::path::Path) -> Result<(), EngineError> {
    if pins::litert_hash_is_pinned(sha256) {
        return Ok(());
    }
    let allowed = std::env::var(pins::LITERT_UNPINNED_ENV).is_ok_and(|v| v == "1");
    if allowed {
        tracing::warn!(
            path = %path.display(),
            sha256 = %sha256,
            "{}=1: using a libLiteRt.so that is not the pinned {}; its C API may differ and crash",
            pins::LITERT_UNPINNED_ENV,
            pins::LITERT_VERSION
        );
        return Ok(());
    }
    Err(EngineError::Version {
        what: LibraryKind::Litert.file_name(),
        path: path.to_path_buf(),
        found: format!("SHA-256 {sha256}"),
        supported: format!(
            "LiteRT {} only ({}); run ./scripts/fetch-libs, or set {}=1 to try this build anyway",
            pins::LITERT_VERSION,
            pins::LITERT_SHA256
                .iter()
                .map(|(arch, h)| format!("{arch} {}…", &h[..12]))
                .collect::<Vec<_>>()
                .join(", "),
            pins::LITERT_UNPINNED_ENV
        ),
    })
}

/// Name of a `LiteRtStatus` code, for error messages.
pub(crate) fn status_name(status: Status) -> &'static str {
    match status {
        0 => "ok",
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        7 => "timeout expired",
        8 => "wrong version",
        9 => "unknown error",
        10 => "already exists",
        100 => "cancelled",
        500 => "file I/O error",
        501 => "invalid flatbuffer",
        502 => "dynamic loading error",
        503 => "serialization error",
        504 => "compilation error",
        1000 => "index out of bounds",
        1001 => "invalid IR type",
        1002 => "invalid graph invariant",
        1003 => "graph modification error",
        _ => "unrecognised status",
    }
}

impl std::fmt::Debug for LitertApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitertApi")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_rank_bits() {
        let l = Layout {
            rank_bits: 0x80 | 4,
            dims: [0; MAX_RANK],
            strides: [0; MAX_RANK],
        };
        assert_eq!(l.rank(), 4);
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(501), "invalid flatbuffer");
        assert_eq!(status_name(-7), "unrecognised status");
    }
}
