//! Coral Edge TPU discovery and delegate creation, behind a small trait.
//!
//! Production uses [`LibEdgeTpu`] (`libedgetpu.so.1`). No Coral exists on the
//! development and CI machines, so tests implement [`EdgeTpuProvider`] with
//! XNNPACK standing in as the delegate to exercise the "device present" path,
//! and use a missing library or an empty device list for the fallbacks.

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::Arc;

use libloading::Library;

use super::delegate::Delegate;
use super::ffi::TfliteCApi;
use crate::engine::EngineError;
use crate::engine::dylib;
use crate::engine::locate::{LibraryKind, LibraryLocation};

/// How an Edge TPU is attached (`enum edgetpu_device_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeTpuKind {
    /// PCIe / M.2 module (`EDGETPU_APEX_PCI`).
    Pci,
    /// USB Accelerator (`EDGETPU_APEX_USB`).
    Usb,
    /// A type code this runtime does not know.
    Other(i32),
}

impl EdgeTpuKind {
    fn from_code(code: c_int) -> Self {
        match code {
            0 => EdgeTpuKind::Pci,
            1 => EdgeTpuKind::Usb,
            other => EdgeTpuKind::Other(other),
        }
    }

    fn code(self) -> c_int {
        match self {
            EdgeTpuKind::Pci => 0,
            EdgeTpuKind::Usb => 1,
            EdgeTpuKind::Other(c) => c,
        }
    }
}

/// One Edge TPU found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTpuDevice {
    /// How it is attached.
    pub kind: EdgeTpuKind,
    /// Device path as libedgetpu reports it (e.g. `/sys/bus/usb/devices/2-1`).
    pub path: String,
}

/// Finds Edge TPUs and creates a TF Lite delegate for one of them.
pub trait EdgeTpuProvider {
    /// Where the implementation comes from (library path and version), for logs.
    fn describe(&self) -> String;
    /// Devices present now (empty when none).
    fn list_devices(&self) -> Vec<EdgeTpuDevice>;
    /// A delegate for `device`, or `None` if it cannot be opened.
    fn create_delegate(&self, api: &Arc<TfliteCApi>, device: &EdgeTpuDevice) -> Option<Delegate>;
}

#[repr(C)]
struct RawDevice {
    kind: c_int,
    path: *const c_char,
}

type ListDevices = unsafe extern "C" fn(*mut usize) -> *mut RawDevice;
type FreeDevices = unsafe extern "C" fn(*mut RawDevice);
type CreateDelegate =
    unsafe extern "C" fn(c_int, *const c_char, *const c_void, usize) -> *mut c_void;
type FreeDelegate = unsafe extern "C" fn(*mut c_void);
type Version = unsafe extern "C" fn() -> *const c_char;

/// Most devices read from one `edgetpu_list_devices` call (a bound on a
/// length that comes from outside; real systems have one to four).
const MAX_DEVICES: usize = 64;

struct EdgeTpuLib {
    list_devices: ListDevices,
    free_devices: FreeDevices,
    create_delegate: CreateDelegate,
    free_delegate: FreeDelegate,
    _lib: Library,
}

/// The real Coral runtime, `libedgetpu.so.1`, loaded at run time.
pub struct LibEdgeTpu {
    lib: Arc<EdgeTpuLib>,
    path: PathBuf,
    version: String,
}

impl LibEdgeTpu {
    /// Load libedgetpu from `location` and resolve its C entry points.
    pub fn load(location: &LibraryLocation) -> Result<Self, EngineError> {
        let kind = LibraryKind::EdgeTpu;
        let lib = dylib::open(kind, location)?;
        let p = &location.path;
        // SAFETY: the types are the signatures from `edgetpu_c.h`.
        let (list_devices, free_devices, create_delegate, free_delegate, version) = unsafe {
            (
                dylib::symbol::<ListDevices>(&lib, kind, p, "edgetpu_list_devices")?,
                dylib::symbol::<FreeDevices>(&lib, kind, p, "edgetpu_free_devices")?,
                dylib::symbol::<CreateDelegate>(&lib, kind, p, "edgetpu_create_delegate")?,
                dylib::symbol::<FreeDelegate>(&lib, kind, p, "edgetpu_free_delegate")?,
                dylib::symbol::<Version>(&lib, kind, p, "edgetpu_version").ok(),
            )
        };
        // SAFETY: `edgetpu_version` returns a static string.
        let version = version.map_or_else(String::new, |v| unsafe { dylib::c_string(v()) });
        let path = dylib::file_of_symbol(list_devices as *const c_void)
            .unwrap_or_else(|| location.path.clone());
        Ok(LibEdgeTpu {
            lib: Arc::new(EdgeTpuLib {
                list_devices,
                free_devices,
                create_delegate,
                free_delegate,
                _lib: lib,
            }),
            path,
            version,
        })
    }
}

impl EdgeTpuProvider for LibEdgeTpu {
    fn describe(&self) -> String {
        format!("{} {}", self.path.display(), self.version)
            .trim()
            .to_string()
    }

    fn list_devices(&self) -> Vec<EdgeTpuDevice> {
        let mut n: usize = 0;
        // SAFETY: documented API; returns an array of `n` devices or NULL.
        let raw = unsafe { (self.lib.list_devices)(&mut n) };
        if raw.is_null() {
            return Vec::new();
        }
        let count = n.min(MAX_DEVICES);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: `raw` points to `n` >= `count` devices until freed below.
            let d = unsafe { &*raw.add(i) };
            out.push(EdgeTpuDevice {
                kind: EdgeTpuKind::from_code(d.kind),
                // SAFETY: `path` is a NUL-terminated string owned by the array.
                path: unsafe { dylib::c_string(d.path) },
            });
        }
        // SAFETY: frees the array returned above, once.
        unsafe { (self.lib.free_devices)(raw) };
        out
    }

    fn create_delegate(&self, _api: &Arc<TfliteCApi>, device: &EdgeTpuDevice) -> Option<Delegate> {
        let name = std::ffi::CString::new(device.path.as_str()).ok()?;
        // SAFETY: documented API; NULL options with count 0 are allowed and NULL
        // is returned when the device cannot be opened.
        let ptr = unsafe {
            (self.lib.create_delegate)(device.kind.code(), name.as_ptr(), std::ptr::null(), 0)
        };
        let owner: Arc<dyn std::any::Any + Send + Sync> = self.lib.clone();
        // SAFETY: created by libedgetpu, freed by its `edgetpu_free_delegate`;
        // `owner` keeps the library loaded while the delegate lives.
        unsafe { Delegate::from_raw(ptr, self.lib.free_delegate, owner) }
    }
}
