//! An owned `TfLiteDelegate*` that frees itself with the function that made it.
//!
//! The interpreter borrows delegates; the engine drops them only after the
//! interpreter is deleted.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

/// Keeps whatever library owns the deleter loaded.
pub type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

/// An owned TF Lite delegate.
pub struct Delegate {
    ptr: NonNull<c_void>,
    free: unsafe extern "C" fn(*mut c_void),
    _owner: KeepAlive,
}

// SAFETY: a delegate is a heap object with no thread affinity; it is only
// touched through the interpreter, which the engine uses from one thread at a time.
unsafe impl Send for Delegate {}

impl Delegate {
    /// Wrap `ptr` (NULL gives `None`).
    ///
    /// # Safety
    /// `ptr` must be a delegate created by the library that `owner` keeps
    /// loaded, and `free` must be its matching destructor.
    pub unsafe fn from_raw(
        ptr: *mut c_void,
        free: unsafe extern "C" fn(*mut c_void),
        owner: KeepAlive,
    ) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Delegate {
            ptr,
            free,
            _owner: owner,
        })
    }

    /// The raw pointer to hand to `TfLiteInterpreterOptionsAddDelegate`.
    pub fn as_ptr(&self) -> *mut c_void {
        self.ptr.as_ptr()
    }
}

impl Drop for Delegate {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the matching create function (see `from_raw`)
        // and is freed exactly once; the owner keeps the code loaded.
        unsafe { (self.free)(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Delegate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Delegate").field(&self.ptr).finish()
    }
}
