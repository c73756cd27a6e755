//! The portable on-disk format of a [`FeatureTransform`].
//!
//! Why our own format: it must be readable on the device without Python or
//! pickles, by a parser that is easy to bound and to fuzz. Layout (all
//! integers and floats little-endian):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `TLCMFEAT` |
//! | 8 | 4 | version (`u32`, currently 1) |
//! | 12 | 4 | flags (`u32`; bit 0: PCA present; other bits must be 0) |
//! | 16 | 4 | input dimensionality `n` (`u32`, 1..=8192) |
//! | 20 | 4 | output dimensionality `m` (`u32`; `m = n` without PCA, else 1..=n) |
//! | 24 | 4·n | scaler mean (`f32`) |
//! | | 4·n | scaler scale (`f32`, > 0) |
//! | | 4·n | PCA mean (`f32`), only with PCA |
//! | | 4·m·n | PCA components, row-major `m × n` (`f32`), only with PCA |
//! | | 4·m | explained variance (`f32`), only with PCA |
//! | end − 32 | 32 | SHA-256 of every byte before it |
//!
//! The expected size follows from the header alone and is compared with the
//! actual size before any array is allocated; files larger than
//! [`MAX_FILE_BYTES`] are refused before they are read.

use super::error::FeatureError;
use super::transform::check_dims;
use super::{FeatureTransform, PcaArrays};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// First eight bytes of every file.
pub const MAGIC: &[u8; 8] = b"TLCMFEAT";
/// Version written, and the only one read.
pub const VERSION: u32 = 1;
/// Largest file accepted (a 1280 → 256 transform is about 1.3 MB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

const HEADER: usize = 24;
const DIGEST: usize = 32;
const FLAG_PCA: u32 = 1;

impl FeatureTransform {
    /// The transform in the portable format (see [`format`](mod@super::format)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let pca = self.pca_mean().is_some();
        let (n, m) = (self.input_dim(), self.output_dim());
        let mut buf = Vec::with_capacity(expected_len(n, m, pca));
        buf.extend_from_slice(MAGIC);
        for word in [VERSION, u32::from(pca), n as u32, m as u32] {
            buf.extend_from_slice(&word.to_le_bytes());
        }
        let mut put = |values: &[f32]| values.iter().for_each(|v| buf.extend(v.to_le_bytes()));
        put(self.mean());
        put(self.scale());
        if let (Some(mean), Some(components), Some(var)) = (
            self.pca_mean(),
            self.components(),
            self.explained_variance(),
        ) {
            put(mean);
            put(components);
            put(var);
        }
        let digest = Sha256::digest(&buf);
        buf.extend_from_slice(&digest);
        buf
    }

    /// Parse the portable format. Truncated, oversized, damaged or foreign
    /// bytes give [`FeatureError::Format`] saying which; bad values give
    /// [`FeatureError::Value`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FeatureError> {
        if bytes.len() < HEADER + DIGEST {
            return Err(FeatureError::format(format!(
                "truncated: {} bytes, a header and checksum alone take {}",
                bytes.len(),
                HEADER + DIGEST
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(FeatureError::format(
                "wrong magic (expected a TinyLCM feature transform, TLCMFEAT)",
            ));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version != VERSION {
            return Err(FeatureError::format(format!(
                "version {version} is not supported (this build reads version {VERSION})"
            )));
        }
        let flags = word(12);
        if flags & !FLAG_PCA != 0 {
            return Err(FeatureError::format(format!("unknown flags {flags:#x}")));
        }
        let pca = flags & FLAG_PCA != 0;
        let (n, m) = (word(16) as usize, word(20) as usize);
        check_dims(n, m).map_err(|e| FeatureError::format(e.to_string()))?;
        if !pca && m != n {
            return Err(FeatureError::format(format!(
                "output dimensionality {m} differs from input {n} without PCA"
            )));
        }
        let expected = expected_len(n, m, pca);
        if bytes.len() != expected {
            return Err(FeatureError::format(format!(
                "{}: the header announces {expected} bytes, there are {}",
                if bytes.len() < expected {
                    "truncated"
                } else {
                    "trailing bytes"
                },
                bytes.len()
            )));
        }
        let (body, digest) = bytes.split_at(expected - DIGEST);
        if Sha256::digest(body).as_slice() != digest {
            return Err(FeatureError::format(
                "checksum mismatch: the file is damaged",
            ));
        }
        let mut rest = &body[HEADER..];
        let mut take = |count: usize| {
            let (head, tail) = rest.split_at(count * 4);
            rest = tail;
            head.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<f32>>()
        };
        let mean = take(n);
        let scale = take(n);
        let pca = pca.then(|| PcaArrays {
            mean: take(n),
            components: take(m * n),
            n_components: m,
            explained_variance: take(m),
        });
        FeatureTransform::from_arrays(mean, scale, pca)
    }

    /// Read a transform file (size checked before reading).
    pub fn read(path: &Path) -> Result<Self, FeatureError> {
        let io = |source| FeatureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(FeatureError::format(format!(
                "{len} bytes is more than the limit of {MAX_FILE_BYTES}"
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_bytes(&bytes)
    }

    /// Write the transform to `path` atomically (a temporary file beside it,
    /// synced, then renamed over `path`).
    pub fn write(&self, path: &Path) -> Result<(), FeatureError> {
        let io = |source| FeatureError::Io {
            path: path.to_path_buf(),
            source,
        };
        crate::files::write_atomic(path, &self.to_bytes(), crate::files::Durability::Synced)
            .map_err(io)
    }
}

/// Size of a file with these dimensions (dimensions already bounded, so no
/// overflow).
fn expected_len(n: usize, m: usize, pca: bool) -> usize {
    let floats = 2 * n + if pca { n + m * n + m } else { 0 };
    HEADER + 4 * floats + DIGEST
}
