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
    let api = load_api(cfg)?;
    check_cpuinfo()?;
    open_with_api(api, cfg, model)
}

/// LiteRT's CPU detection (cpuinfo) dereferences NULL when `/proc/cpuinfo`
/// describes no ARM core, which is what qemu-user before 8.0 shows an aarch64
/// guest (the host's x86 file). Refuse clearly instead of crashing.
fn check_cpuinfo() -> Result<(), EngineError> {
    if !cfg!(target_arch = "aarch64") {
        return Ok(());
    }
    static FOREIGN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let foreign = *FOREIGN.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|c| c.contains("vendor_id") && !c.contains("CPU implementer"))
    });
    if foreign {
        return Err(EngineError::Runtime {
            backend: super::BackendKind::Litert,
            call: "LiteRtCreateCompiledModel",
            reason: "/proc/cpuinfo describes an x86 CPU, not this aarch64 one (qemu-user < 8?); \
                     LiteRT's CPU detection would crash. Use qemu-user-static >= 8 \
                     (bookworm-backports) or real hardware"
                .into(),
        });
    }
    Ok(())
}
