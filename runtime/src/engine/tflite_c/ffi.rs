//! The classic TF Lite C API as a table of function pointers read from
//! `libtensorflowlite_c.so` at run time, with the version check.
//!
//! Signatures are those of `tensorflow/lite/c/c_api.h`, stable from 2.6 to the
//! 2.2x releases. All handles are opaque pointers.

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libloading::Library;

use crate::engine::EngineError;
use crate::engine::dylib;
use crate::engine::locate::{LibraryKind, LibraryLocation};
use crate::engine::pins;

use super::xnnpack::{RawFn, XnnpackOptions};

/// `TfLiteStatus`: 0 is `kTfLiteOk`.
pub(crate) type Status = c_int;

pub(crate) type ErrorReporter =
    unsafe extern "C" fn(user_data: *mut c_void, format: *const c_char, args: *mut c_void);

/// `TfLiteQuantizationParams`, returned by value (8 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
}

macro_rules! api_table {
    ($( $field:ident : $sym:literal => fn($($arg:ty),*) $(-> $ret:ty)? ;)*) => {
        /// Function pointers into one loaded `libtensorflowlite_c.so`.
        pub struct TfliteCApi {
            $(pub(crate) $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            /// Version string reported by `TfLiteVersion()`.
            pub version: String,
            /// File the loader mapped (or the name it was asked for).
            pub path: PathBuf,
            /// Where the lookup found it.
            pub location: LibraryLocation,
            /// `TfLiteXNNPackDelegateOptionsDefault`, if exported. Untyped:
            /// its return convention depends on the release (see
            /// [`super::xnnpack`]).
            pub(crate) xnnpack_options_default: Option<RawFn>,
            /// `TfLiteXNNPackDelegateGetFlags` (newer releases): the flags a
            /// delegate actually runs with.
            pub(crate) xnnpack_get_flags: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
            _lib: Library,
        }

        impl TfliteCApi {
            fn from_library(lib: Library, location: LibraryLocation) -> Result<Self, EngineError> {
                let kind = LibraryKind::TfliteC;
                let p = &location.path;
                // SAFETY: each type below is the C signature of that symbol in
                // the 2.x C API (c_api.h); the version is checked before use.
                // `TfLiteXNNPackDelegateOptionsDefault` is kept as an untyped
                // address and only called once the version fixes its type;
                // `TfLiteXNNPackDelegateGetFlags` is `int (TfLiteDelegate*)`
                // wherever it exists. The pointers live as long as `lib`,
                // which the table owns.
                unsafe {
                    $(let $field = dylib::symbol::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(&lib, kind, p, $sym)?;)*
                    // Optional: absent in some builds; a missing one only
                    // changes how the XNNPACK options are made and logged.
                    let xnnpack_options_default = lib
                        .get::<RawFn>(b"TfLiteXNNPackDelegateOptionsDefault")
                        .ok()
                        .map(|s| *s);
                    let xnnpack_get_flags = lib
                        .get::<unsafe extern "C" fn(*mut c_void) -> c_int>(
                            b"TfLiteXNNPackDelegateGetFlags",
                        )
                        .ok()
                        .map(|s| *s);
                    Ok(TfliteCApi {
                        $($field,)*
                        version: String::new(),
                        path: p.clone(),
                        location,
                        xnnpack_options_default,
                        xnnpack_get_flags,
                        _lib: lib,
                    })
                }
            }
        }
    };
}

api_table! {
    version_fn: "TfLiteVersion" => fn() -> *const c_char;
    model_create: "TfLiteModelCreate" => fn(*const c_void, usize) -> *mut c_void;
    model_create_from_file: "TfLiteModelCreateFromFile" => fn(*const c_char) -> *mut c_void;
    model_delete: "TfLiteModelDelete" => fn(*mut c_void);
    options_create: "TfLiteInterpreterOptionsCreate" => fn() -> *mut c_void;
    options_delete: "TfLiteInterpreterOptionsDelete" => fn(*mut c_void);
    options_set_num_threads: "TfLiteInterpreterOptionsSetNumThreads" => fn(*mut c_void, i32);
    options_add_delegate: "TfLiteInterpreterOptionsAddDelegate" => fn(*mut c_void, *mut c_void);
    options_set_error_reporter: "TfLiteInterpreterOptionsSetErrorReporter" => fn(*mut c_void, Option<ErrorReporter>, *mut c_void);
    interpreter_create: "TfLiteInterpreterCreate" => fn(*const c_void, *const c_void) -> *mut c_void;
    interpreter_delete: "TfLiteInterpreterDelete" => fn(*mut c_void);
    interpreter_allocate_tensors: "TfLiteInterpreterAllocateTensors" => fn(*mut c_void) -> Status;
    interpreter_invoke: "TfLiteInterpreterInvoke" => fn(*mut c_void) -> Status;
    interpreter_input_count: "TfLiteInterpreterGetInputTensorCount" => fn(*const c_void) -> i32;
    interpreter_input: "TfLiteInterpreterGetInputTensor" => fn(*const c_void, i32) -> *mut c_void;
    interpreter_output_count: "TfLiteInterpreterGetOutputTensorCount" => fn(*const c_void) -> i32;
    interpreter_output: "TfLiteInterpreterGetOutputTensor" => fn(*const c_void, i32) -> *const c_void;
    tensor_type: "TfLiteTensorType" => fn(*const c_void) -> c_int;
    tensor_num_dims: "TfLiteTensorNumDims" => fn(*const c_void) -> i32;
    tensor_dim: "TfLiteTensorDim" => fn(*const c_void, i32) -> i32;
    tensor_byte_size: "TfLiteTensorByteSize" => fn(*const c_void) -> usize;
    tensor_name: "TfLiteTensorName" => fn(*const c_void) -> *const c_char;
    tensor_quantization: "TfLiteTensorQuantizationParams" => fn(*const c_void) -> QuantParams;
    tensor_copy_from: "TfLiteTensorCopyFromBuffer" => fn(*mut c_void, *const c_void, usize) -> Status;
    tensor_copy_to: "TfLiteTensorCopyToBuffer" => fn(*const c_void, *mut c_void, usize) -> Status;
    xnnpack_create: "TfLiteXNNPackDelegateCreate" => fn(*const XnnpackOptions) -> *mut c_void;
    xnnpack_delete: "TfLiteXNNPackDelegateDelete" => fn(*mut c_void);
}

impl TfliteCApi {
    /// Load the library at `location`, resolve every symbol and check the version.
    pub fn load(location: LibraryLocation) -> Result<Self, EngineError> {
        let lib = dylib::open(LibraryKind::TfliteC, &location)?;
        let mut api = TfliteCApi::from_library(lib, location)?;
        if let Some(real) = dylib::file_of_symbol(api.version_fn as *const c_void) {
            api.path = real;
        }
        // SAFETY: `TfLiteVersion` takes nothing and returns a static string.
        api.version = unsafe { dylib::c_string((api.version_fn)()) };
        if !pins::tflite_c_version_supported(&api.version) {
            return Err(EngineError::Version {
                what: LibraryKind::TfliteC.file_name(),
                path: api.path.clone(),
                found: api.version.clone(),
                supported: format!(
                    "2.{}.x and later 2.x (developed against {})",
                    pins::TFLITE_C_MIN_MINOR,
                    pins::TFLITE_C_DEV_VERSION
                ),
            });
        }
        Ok(api)
    }

    /// Load once per process and path; later calls share the same table.
    pub fn load_shared(location: LibraryLocation) -> Result<Arc<Self>, EngineError> {
        static CACHE: OnceLock<Mutex<Vec<Arc<TfliteCApi>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(api) = cache.iter().find(|a| a.location == location) {
            return Ok(Arc::clone(api));
        }
        let api = Arc::new(TfliteCApi::load(location)?);
        cache.push(Arc::clone(&api));
        Ok(api)
    }
}

impl std::fmt::Debug for TfliteCApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfliteCApi")
            .field("version", &self.version)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_params_layout() {
        assert_eq!(std::mem::size_of::<QuantParams>(), 8);
    }
}
