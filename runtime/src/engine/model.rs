//! Where a model comes from (a file or bytes in memory) and the cheap checks
//! done before a library sees it.
//!
//! The libraries verify the flatbuffer themselves; checking the size and the
//! `TFL3` identifier first turns "not a model at all" into a clear error
//! instead of a library log line and a NULL handle.

use std::alloc::Layout;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use super::EngineError;

/// Largest model accepted (bytes). Far above any model a Pi-class device runs;
/// it bounds what a corrupt or hostile file can make us map or copy.
pub const MAX_MODEL_BYTES: u64 = 512 * 1024 * 1024;

/// Smallest possible TFLite flatbuffer: root offset + file identifier.
const MIN_MODEL_BYTES: usize = 8;

/// A model to load.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A `.tflite` file; the library maps it itself.
    File(PathBuf),
    /// A model already in memory. The engine keeps this `Arc` alive for as long
    /// as the interpreter exists (the libraries do not copy the buffer).
    Bytes(Arc<[u8]>),
}

impl ModelSource {
    /// Short name for messages: the file path, or `<N bytes in memory>`.
    pub fn label(&self) -> String {
        match self {
            ModelSource::File(p) => p.display().to_string(),
            ModelSource::Bytes(b) => format!("<{} bytes in memory>", b.len()),
        }
    }

    /// Check size and flatbuffer identifier without reading the whole file.
    pub fn precheck(&self) -> Result<(), EngineError> {
        match self {
            ModelSource::File(path) => precheck_file(path),
            ModelSource::Bytes(bytes) => precheck_bytes(bytes, &self.label()),
        }
    }
}

/// Read a model file whole (after the size check), for backends that must
/// verify the bytes themselves before loading them.
pub(crate) fn read_file(path: &Path) -> Result<Arc<[u8]>, EngineError> {
    precheck_file(path)?;
    let label = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| model_error(&label, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| model_error(&label, e.to_string()))?;
    precheck_bytes(&bytes, &label)?;
    Ok(bytes.into())
}

/// Alignment of [`AlignedBytes`]: generous enough for any SIMD kernel that
/// reads weights in place from the model buffer.
pub(crate) const MODEL_ALIGN: usize = 64;

/// A private copy of model bytes at a [`MODEL_ALIGN`]-aligned address.
///
/// LiteRT reads constant tensors in place from the model buffer. Flatbuffers
/// align buffer data relative to the start of the file, assuming the file
/// itself starts on a generous boundary; an `Arc<[u8]>` or `Vec<u8>` only
/// guarantees 8 bytes. The copy also makes the engine independent of how the
/// caller allocated the bytes.
pub(crate) struct AlignedBytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an owned, immutable heap buffer; nothing is shared or mutated.
unsafe impl Send for AlignedBytes {}
// SAFETY: as above; only `&[u8]` views are handed out.
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    /// Copy `bytes` (non-empty, at most [`MAX_MODEL_BYTES`]) into an aligned buffer.
    pub(crate) fn copy_from(bytes: &[u8], label: &str) -> Result<Self, EngineError> {
        let layout = Layout::from_size_align(bytes.len().max(1), MODEL_ALIGN)
            .map_err(|e| model_error(label, e.to_string()))?;
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| model_error(label, "out of memory"))?;
        // SAFETY: the new allocation holds at least `bytes.len()` bytes and
        // does not overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        Ok(AlignedBytes {
            ptr,
            len: bytes.len(),
        })
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len.max(1), MODEL_ALIGN)
            .expect("layout was valid at allocation");
        // SAFETY: allocated in `copy_from` with this exact layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

fn model_error(model: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Model {
        model: model.to_string(),
        reason: reason.into(),
    }
}

fn precheck_file(path: &Path) -> Result<(), EngineError> {
    let label = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| model_error(&label, e.to_string()))?;
    if !meta.is_file() {
        return Err(model_error(&label, "not a regular file"));
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(model_error(
            &label,
            format!(
                "{} bytes exceeds the {MAX_MODEL_BYTES}-byte limit",
                meta.len()
            ),
        ));
    }
    let mut head = [0u8; MIN_MODEL_BYTES];
    let mut file = std::fs::File::open(path).map_err(|e| model_error(&label, e.to_string()))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(model_error(&label, e.to_string())),
        }
    }
    check_header(&head[..filled], &label)
}

fn precheck_bytes(bytes: &[u8], label: &str) -> Result<(), EngineError> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(model_error(
            label,
            format!("exceeds the {MAX_MODEL_BYTES}-byte limit"),
        ));
    }
    check_header(bytes, label)
}

fn check_header(head: &[u8], label: &str) -> Result<(), EngineError> {
    if head.len() < MIN_MODEL_BYTES {
        return Err(model_error(
            label,
            format!("only {} bytes; too short to be a TFLite model", head.len()),
        ));
    }
    if &head[4..8] != b"TFL3" {
        return Err(model_error(
            label,
            "no TFLite file identifier (\"TFL3\" at byte 4): not a .tflite model",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> ModelSource {
        ModelSource::Bytes(Arc::from(b))
    }

    #[test]
    fn header_checks() {
        assert!(bytes(b"\x1c\0\0\0TFL3\0\0").precheck().is_ok());
        let e = bytes(b"PK\x03\x04notamodel").precheck().unwrap_err();
        assert!(e.to_string().contains("not a .tflite model"), "{e}");
        let e = bytes(b"\x1c\0").precheck().unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
        let e = ModelSource::File("/nonexistent/m.tflite".into())
            .precheck()
            .unwrap_err();
        assert!(matches!(e, EngineError::Model { .. }));
        let e = ModelSource::File(std::env::temp_dir())
            .precheck()
            .unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn aligned_copy() {
        let b = AlignedBytes::copy_from(b"\x1c\0\0\0TFL3", "m").unwrap();
        assert_eq!(b.as_slice(), b"\x1c\0\0\0TFL3");
        assert_eq!(b.as_slice().as_ptr() as usize % MODEL_ALIGN, 0);
    }

    #[test]
    fn labels() {
        assert_eq!(bytes(&[0; 3]).label(), "<3 bytes in memory>");
        assert_eq!(ModelSource::File("a/b.tflite".into()).label(), "a/b.tflite");
    }
}
