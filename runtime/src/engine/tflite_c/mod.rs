//! Backend for the classic TF Lite C API (`libtensorflowlite_c.so`): what the
//! device image ships, and the only backend that can drive a Coral Edge TPU.
//!
//! * [`ffi`]: the function table and version check;
//! * [`edgetpu`]: Edge TPU discovery behind [`EdgeTpuProvider`];
//! * [`delegate`]: owned delegates;
//! * [`xnnpack`]: the XNNPACK delegate options of each TF Lite release;
//! * [`engine`]: the interpreter and the Edge TPU → XNNPACK → CPU fallback.

pub mod delegate;
pub mod edgetpu;
pub mod engine;
pub mod ffi;
mod reporter;
pub mod xnnpack;

use std::sync::Arc;

pub use delegate::Delegate;
pub use edgetpu::{EdgeTpuDevice, EdgeTpuKind, EdgeTpuProvider, LibEdgeTpu};
pub use engine::{
    EdgeTpuSource, TfliteCEngine, open_with_edgetpu, xnnpack_delegate, xnnpack_delegate_with_setup,
};
pub use ffi::TfliteCApi;
pub use xnnpack::{OptionsAbi, OptionsSource, XnnpackSetup};

use super::EngineError;
use super::config::{EdgeTpuMode, EngineConfig};
use super::locate::{LibraryKind, locate};
use super::model::ModelSource;

/// Load the TF Lite C library as configured (see [`crate::engine::locate`]).
pub fn load_api(cfg: &EngineConfig) -> Result<Arc<TfliteCApi>, EngineError> {
    TfliteCApi::load_shared(locate(
        LibraryKind::TfliteC,
        cfg.tflite_c_library.as_deref(),
    ))
}

/// Open `model` with this backend, discovering an Edge TPU through libedgetpu
/// unless `engine.edgetpu = off`.
pub fn open(cfg: &EngineConfig, model: &ModelSource) -> Result<TfliteCEngine, EngineError> {
    model.precheck()?;
    let api = load_api(cfg)?;
    if cfg.edgetpu == EdgeTpuMode::Off {
        return open_with_edgetpu(api, cfg, model, EdgeTpuSource::Off);
    }
    let loc = locate(LibraryKind::EdgeTpu, cfg.edgetpu_library.as_deref());
    match LibEdgeTpu::load(&loc) {
        Ok(lib) => open_with_edgetpu(api, cfg, model, EdgeTpuSource::Provider(&lib)),
        Err(e) => open_with_edgetpu(api, cfg, model, EdgeTpuSource::Unavailable(e)),
    }
}
