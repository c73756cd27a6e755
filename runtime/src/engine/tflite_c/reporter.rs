//! Capturing the interpreter's error messages instead of letting them go to stderr.
//!
//! TF Lite reports failures (unsupported op, delegate refusal, allocation
//! failure) through a printf-style callback. We format them with `vsnprintf`
//! into a bounded buffer, forward them to `tracing`, and attach the last one to
//! the [`crate::engine::EngineError`] we return.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Mutex;

use super::ffi::ErrorReporter;

/// Longest message kept from one report.
const MAX_MESSAGE: usize = 1024;
/// Reports kept (oldest dropped first).
const MAX_REPORTS: usize = 8;

/// Messages reported by one interpreter. Must outlive it (the engine boxes it).
#[derive(Debug, Default)]
pub(crate) struct ErrorSink {
    messages: Mutex<Vec<String>>,
}

impl ErrorSink {
    /// Take all collected messages joined with "; " (empty if none).
    pub(crate) fn take(&self) -> String {
        let mut m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let joined = m.join("; ");
        m.clear();
        joined
    }

    fn push(&self, msg: String) {
        tracing::debug!(target: "tinylcm::engine::tflite_c", "tflite: {msg}");
        let mut m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() == MAX_REPORTS {
            m.remove(0);
        }
        m.push(msg);
    }
}

// `va_list` is passed as a pointer on the ABIs handled here: on x86_64 it is an
// array type that decays to a pointer, on aarch64 a 32-byte struct passed by
// reference. The callback forwards that pointer unchanged to `vsnprintf`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe extern "C" {
    fn vsnprintf(buf: *mut c_char, size: usize, format: *const c_char, args: *mut c_void) -> c_int;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe extern "C" fn report(user_data: *mut c_void, format: *const c_char, args: *mut c_void) {
    if user_data.is_null() || format.is_null() {
        return;
    }
    let mut buf = [0 as c_char; MAX_MESSAGE];
    // SAFETY: `buf` has `MAX_MESSAGE` bytes and vsnprintf writes at most that
    // many including the NUL; `format`/`args` come straight from TF Lite.
    let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), format, args) };
    if n < 0 {
        return;
    }
    // SAFETY: vsnprintf NUL-terminated the buffer.
    let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .trim()
        .to_string();
    // SAFETY: `user_data` is the `ErrorSink` registered with this callback,
    // boxed by the engine and alive for as long as the interpreter.
    let sink = unsafe { &*(user_data as *const ErrorSink) };
    sink.push(msg);
}

/// The callback to register, where this ABI supports it.
pub(crate) fn callback() -> Option<ErrorReporter> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        Some(report)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}
