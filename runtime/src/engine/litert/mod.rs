//! Backend for the LiteRT C API (`libLiteRt.so` 2.3.0): the one TFLite runtime
//! obtainable for aarch64 development, and fast XNNPACK on the CPU.
//!
//! * [`ffi`]: the function table and the pinned-hash version check;
//! * [`engine`]: the compiled model and its tensor buffers.
//!
//! Models are always loaded with `LiteRtCreateModelFromBuffer`, which 2.3.0
//! exports as `(env, addr, size, &model)`: LiteRT does not verify flatbuffers
//! (a truncated file crashes it), so files are read and checked by
//! `engine::flatbuf` first. The engine keeps the bytes alive.

pub mod engine;
pub mod ffi;

use std::sync::Arc;

pub use engine::{LitertEngine, open_with_api};
pub use ffi::LitertApi;

use super::EngineError;
use super::config::EngineConfig;
use super::locate::{LibraryKind, locate};
use super::model::ModelSource;

/// Load LiteRT as configured (see [`crate::engine::locate`]), hash-checked.
pub fn load_api(cfg: &EngineConfig) -> Result<Arc<LitertApi>, EngineError> {
    LitertApi::load_shared(locate(LibraryKind::Litert, cfg.litert_library.as_deref()))
}

/// Open `model` with LiteRT.
pub fn open(cfg: &EngineConfig, model: &ModelSource) -> Result<LitertEngine, EngineError> {
    model.precheck()?;
    open_with_api(load_api(cfg)?, cfg, model)
}
