//! What the fuzz targets in `fuzz_targets/` share: splitting one input into parts, building a
//! package around a member without TAR and checksums, and the LiteRT differential check.
//!
//! Why a library: each target is a tiny `fuzz_target!` over one parser; what several of them
//! need lives here once.

pub mod litert;

use tinylcm_protocol::package::{FileEntry, FileKind, Manifest, Package, sha256_hex};

/// Separates the parts of a multi-part input (e.g. a legacy upload's metadata and archive).
/// Text a mutator can keep intact and a dictionary can insert.
pub const SPLIT: &[u8] = b"\n--8<--\n";

/// The first `n` parts of `data` split at [`SPLIT`] (missing parts are empty; the last one
/// keeps any further separators).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SPLIT.len()).position(|w| w == SPLIT) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SPLIT.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

/// Device id every server-side target uses.
pub const DEVICE: &str = "pi-fuzz";

/// A verified package (as `read_package` returns one) of `files`, built directly: the
/// server-side parsers of device JSON run on its members without paying for TAR and SHA-256
/// on every input (the package reader has its own target).
pub fn package(files: Vec<(&str, FileKind, Vec<u8>)>) -> Package {
    let files: Vec<(FileEntry, Vec<u8>)> = files
        .into_iter()
        .map(|(name, kind, data)| {
            let entry = FileEntry {
                name: name.into(),
                kind,
                size: data.len() as u64,
                sha256: sha256_hex(&data),
            };
            (entry, data)
        })
        .collect();
    Package {
        manifest: Manifest {
            format: tinylcm_protocol::package::FORMAT,
            package_id: "fuzz-1".into(),
            device_id: DEVICE.into(),
            created_unix_ms: 1_700_000_000_000,
            files: files.iter().map(|(e, _)| e.clone()).collect(),
        },
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_and_pad() {
        let d = b"a\n--8<--\nb\n--8<--\nc";
        assert_eq!(parts(d, 2), vec![&b"a"[..], &b"b\n--8<--\nc"[..]]);
        assert_eq!(parts(b"x", 3), vec![&b"x"[..], &b""[..], &b""[..]]);
    }
}
