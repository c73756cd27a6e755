//! Opening shared libraries and reading their symbols, with errors that say
//! which library, where, and what to do.
//!
//! Both backends and the Edge TPU discovery load C libraries at run time; this
//! module keeps the `libloading` and `dladdr` details out of them.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io::Read;
use std::path::{Path, PathBuf};

use libloading::Library;

use super::EngineError;
use super::locate::{LibraryKind, LibraryLocation};

/// Open the library at `loc`, mapping loader failures to [`EngineError::Library`].
pub(crate) fn open(kind: LibraryKind, loc: &LibraryLocation) -> Result<Library, EngineError> {
    // SAFETY: loading a library runs its initialisers. The libraries we load
    // are the inference libraries the user configured or the pinned ones from
    // the cache; there is no way to load a shared library without trusting it.
    unsafe { Library::new(&loc.path) }.map_err(|e| EngineError::Library {
        what: kind.file_name(),
        path: loc.path.clone(),
        reason: e.to_string(),
        hint: kind.hint(),
    })
}

/// Look up `name` and return it as a value of type `T` (a fn-pointer type).
///
/// # Safety
/// `T` must be the exact C signature of the symbol in this library version.
pub(crate) unsafe fn symbol<T: Copy>(
    lib: &Library,
    kind: LibraryKind,
    path: &Path,
    name: &str,
) -> Result<T, EngineError> {
    // SAFETY: the caller guarantees `T` matches the symbol's signature; the
    // value is copied out while `lib` is borrowed and the callers keep `lib`
    // alive next to the returned pointers.
    let sym = unsafe { lib.get::<T>(name.as_bytes()) }.map_err(|e| EngineError::Library {
        what: kind.file_name(),
        path: path.to_path_buf(),
        reason: format!("missing symbol {name}: {e}"),
        hint: format!(
            "this does not look like a supported {}; {}",
            kind.file_name(),
            kind.hint()
        ),
    })?;
    Ok(*sym)
}

#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

unsafe extern "C" {
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
}

/// File the dynamic loader actually mapped for the symbol at `addr`.
///
/// Needed when the library was found by bare name through the system search
/// path: the hash check and the log line want the real file.
pub(crate) fn file_of_symbol(addr: *const c_void) -> Option<PathBuf> {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: `dladdr` only reads the address and fills `info`; a zero return
    // means nothing was written that we rely on.
    let ok = unsafe { dladdr(addr, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: on success `dli_fname` is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(name.to_string_lossy().into_owned()))
}

/// SHA-256 of a file as lower-case hex, read in fixed-size chunks.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Turn a C string returned by a library into an owned `String` (empty for NULL).
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for this call.
pub(crate) unsafe fn c_string(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_content() {
        let dir = std::env::temp_dir().join(format!("tinylcm-dylib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn c_string_null_is_empty() {
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { c_string(std::ptr::null()) }, "");
    }
}
