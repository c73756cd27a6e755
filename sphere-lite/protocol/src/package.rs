//! Sync packages: what a device uploads to `POST /api/v2/devices/{id}/packages`.
//!
//! ## Format (version [`FORMAT`] = 1)
//!
//! A package is one **plain, uncompressed POSIX ustar TAR** archive:
//!
//! 1. The first member is [`MANIFEST_NAME`] (`manifest.json`), a JSON [`Manifest`]:
//!    ```json
//!    { "format": 1, "package_id": "6f1c…", "device_id": "pi-7", "created_unix_ms": 1764147600000,
//!      "files": [ { "name": "metrics.json", "kind": "metrics", "size": 812,
//!                   "sha256": "<64 lowercase hex digits>" } ] }
//!    ```
//!    Unknown manifest fields are refused; a new field means a new `format`.
//! 2. Then exactly one regular-file member per manifest entry, with that name, size and SHA-256
//!    (the members may come in any order; [`read_package`] returns them in manifest order).
//! 3. The end-of-archive marker (two zero blocks). After it only zero bytes may follow (GNU tar
//!    pads to 10 KiB records); any non-zero byte after the marker is refused as trailing data,
//!    so a package has exactly one meaning. A stream that ends cleanly at a member boundary
//!    without the marker is accepted: truncation inside the file list still shows up as a
//!    [`PackageError::MissingFile`], because the manifest lists every file.
//!
//! [`FileKind`] says what a file holds (metrics, operational logs, drift events, drift samples,
//! quarantine samples, models, snapshot metadata, prediction samples, other); the server routes files by kind, not by
//! guessing from names.
//!
//! ## Why the ingest rules are this strict
//!
//! The original server saved uploads and ran Python `tarfile.extractall` / `zipfile.extractall`
//! on them twice, with no size, member-count, link or path checks: a package could write outside
//! its folder (`../`, absolute paths, symlinks), fill the disk (decompression bombs, huge
//! members) or collide files. Here a package is never extracted by a TAR library at all:
//! [`read_package`] streams it once, checks every rule below, and returns the verified bytes in
//! memory, so the caller stores them under names that already passed the name rule.
//!
//! Rules enforced by [`read_package`] (each refusal is a [`PackageError`] naming the member and
//! the limit; [`PackageError::is_too_large`] tells 413 from 400):
//!
//! * **No compression.** A body starting with a gzip, bzip2, xz, zstd or zip magic is refused.
//!   Packages are plain TAR, so nothing is ever inflated and a decompression bomb cannot exist:
//!   the bytes counted on the wire are the bytes held in memory.
//! * **Bounded input.** The whole stream (headers, padding, data, anything after the end marker)
//!   is read through a counting reader; past [`Limits::max_package_bytes`] reading stops, so an
//!   endless stream or a huge body ends with [`PackageError::PackageTooLarge`].
//! * **Sizes checked before allocation.** A member's TAR header size is only an upper bound
//!   checked against [`Limits::max_member_bytes`], the remaining package budget and the
//!   manifest's size before any buffer is allocated; data is read with [`Read::take`].
//!   The manifest itself is bounded by [`MAX_MANIFEST_BYTES`] (not by the per-member limit,
//!   which is about the files).
//! * **Member count** (manifest included) at most [`Limits::max_members`].
//! * **Manifest first, valid**: named [`MANIFEST_NAME`], parses, `format == FORMAT`, ids pass
//!   [`crate::ids`], every `sha256` is 64 lowercase hex digits, sizes within limits, names pass
//!   the name rule and are unique.
//! * **Regular files only.** Symlinks, hard links, devices, FIFOs, directories, GNU long-name
//!   and sparse entries and PAX extension headers are all **refused** (not skipped): the builder
//!   never writes them, so their presence means a foreign or hostile archive. Directory entries
//!   are not needed because names carry their folders. GNU tar writes acceptable packages with
//!   `--format=ustar` or `--format=gnu` when given file names (not folders); its `posix` format
//!   adds PAX headers and is refused.
//! * **Name rule** ([`validate_name`]): UTF-8, relative, 1..=[`Limits::max_name_bytes`] bytes,
//!   segments of `[A-Za-z0-9._-]` separated by single `/`, no empty, `.` or `..` segment, no
//!   leading or trailing `/`. So no member can name a place outside its package folder.
//! * **No duplicates**, compared case-insensitively, and no name may be both a file and a folder
//!   of another name (`a` and `a/b`): stored on any file system or object store, the package's
//!   files never overwrite each other.
//! * **Manifest verified**: every member is listed in the manifest with the same size and the
//!   SHA-256 computed while reading it; every manifest file is present; `manifest.json` is not
//!   listed in itself.
//!
//! [`PackageBuilder`] (the device side) applies the same name, id and limit rules while building,
//! so a device cannot produce a package the server refuses under the same [`Limits`].
//!
//! ## Example
//!
//! ```
//! use tinylcm_protocol::package::{FileKind, Limits, PackageBuilder, read_package};
//!
//! // Device side.
//! let mut builder = PackageBuilder::new("6f1c2a9e-8a4b-4c1d-9f00-123456789abc", "pi-7", 1_764_147_600_000)?;
//! builder.add("metrics.json", FileKind::Metrics, br#"{"total_inferences":42}"#.to_vec())?;
//! builder.add("drift/event-1.json", FileKind::DriftEvents, b"{}".to_vec())?;
//! let tar: Vec<u8> = builder.finish()?;
//!
//! // Server side.
//! let package = read_package(&tar[..], &Limits::default())?;
//! assert_eq!(package.manifest.device_id, "pi-7");
//! assert_eq!(package.file("metrics.json"), Some(&br#"{"total_inferences":42}"#[..]));
//! # Ok::<(), tinylcm_protocol::package::PackageError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::ids::{valid_device_id, valid_package_id};

/// The package format version written in [`Manifest::format`].
pub const FORMAT: u32 = 1;

/// Name of the manifest member; always the first TAR member.
pub const MANIFEST_NAME: &str = "manifest.json";

/// `Content-Type` of an upload body: a package is a plain TAR.
pub const CONTENT_TYPE: &str = "application/x-tar";

/// Largest accepted manifest in bytes (1 MiB holds several thousand entries).
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

const BLOCK: u64 = 512;

/// What a file in a package holds; tells the server where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// Operational metrics (counters, latency and confidence summaries, system stats).
    Metrics,
    /// Operational logs (JSON lines).
    Logs,
    /// Drift events (detector, reason, metrics, the sample that triggered it).
    DriftEvents,
    /// A sample (e.g. an image) attached to a drift event.
    Sample,
    /// A quarantined sample and its metadata.
    Quarantine,
    /// A model file or its metadata.
    Model,
    /// Snapshot metadata (adaptive state snapshots taken by the runtime).
    Snapshot,
    /// A prediction sample the device sends periodically per class (an image, or its metadata)
    /// for the server's Data Hub.
    Prediction,
    /// Anything else; stored, not interpreted.
    Other,
}

impl FileKind {
    /// Every kind, in declaration order.
    pub const ALL: [FileKind; 9] = [
        FileKind::Metrics,
        FileKind::Logs,
        FileKind::DriftEvents,
        FileKind::Sample,
        FileKind::Quarantine,
        FileKind::Model,
        FileKind::Snapshot,
        FileKind::Prediction,
        FileKind::Other,
    ];

    /// The kind's wire name (as in the manifest), e.g. `"drift-events"`; safe as a key or path
    /// segment.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Metrics => "metrics",
            FileKind::Logs => "logs",
            FileKind::DriftEvents => "drift-events",
            FileKind::Sample => "sample",
            FileKind::Quarantine => "quarantine",
            FileKind::Model => "model",
            FileKind::Snapshot => "snapshot",
            FileKind::Prediction => "prediction",
            FileKind::Other => "other",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a package as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Member name inside the TAR (see [`validate_name`]).
    pub name: String,
    /// What the file holds.
    pub kind: FileKind,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
}

/// The first member of every package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Package format version, [`FORMAT`].
    pub format: u32,
    /// Unique per package; the server's idempotency key (passes [`crate::ids::valid_package_id`]).
    pub package_id: String,
    /// The device that built the package (passes [`crate::ids::valid_device_id`]).
    pub device_id: String,
    /// When the device built the package, Unix time in milliseconds.
    pub created_unix_ms: u64,
    /// Every file in the package, in the order the device added them.
    pub files: Vec<FileEntry>,
}

/// Bounds on a package; checked by both [`read_package`] and [`PackageBuilder`].
///
/// Deserializable (missing fields take the defaults) so a server can read it from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Whole TAR stream in bytes, headers and padding included.
    pub max_package_bytes: u64,
    /// TAR members, the manifest included.
    pub max_members: usize,
    /// One file's content in bytes (the manifest has its own bound, [`MAX_MANIFEST_BYTES`]).
    pub max_member_bytes: u64,
    /// One member's name in bytes (folders included).
    pub max_name_bytes: usize,
}

impl Default for Limits {
    /// 64 MiB per package, 4096 members, 32 MiB per member, 100-byte names (every such name fits
    /// the plain ustar name field, so no extension headers are ever needed).
    fn default() -> Self {
        Limits {
            max_package_bytes: 64 * 1024 * 1024,
            max_members: 4096,
            max_member_bytes: 32 * 1024 * 1024,
            max_name_bytes: 100,
        }
    }
}

/// A verified package: the manifest and every file's content, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The verified manifest.
    pub manifest: Manifest,
    /// Each manifest entry with its content (size and SHA-256 already checked).
    pub files: Vec<(FileEntry, Vec<u8>)>,
}

impl Package {
    /// The content of the file called `name`, if the package has one.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(e, _)| e.name == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// Why a package was refused or could not be built.
///
/// Every message names the member and the limit involved, so the server can pass it to the
/// device as is.
#[derive(Debug, Error)]
pub enum PackageError {
    /// The body is empty.
    #[error("package is empty; expected a TAR archive starting with {MANIFEST_NAME}")]
    Empty,
    /// The body starts with a compression magic number.
    #[error("package is {format}-compressed; packages are plain uncompressed TAR")]
    Compressed {
        /// The detected format (`gzip`, `zip`, ...).
        format: &'static str,
    },
    /// The TAR structure itself is broken (bad checksum, truncated block, bad number field).
    #[error("malformed TAR {context}: {source}")]
    Tar {
        /// Where in the archive (e.g. `"after member metrics.json"`).
        context: String,
        /// The underlying parse error.
        #[source]
        source: io::Error,
    },
    /// The reader itself failed (e.g. the client went away); not a problem of the package.
    #[error("reading the package failed: {source}")]
    Read {
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// More than [`Limits::max_package_bytes`] bytes were sent.
    #[error("package is larger than the limit of {max} bytes")]
    PackageTooLarge {
        /// The limit.
        max: u64,
    },
    /// More than [`Limits::max_members`] members (manifest included).
    #[error("package has more than the limit of {max} members (manifest included)")]
    TooManyMembers {
        /// The limit.
        max: usize,
    },
    /// A member is larger than [`Limits::max_member_bytes`].
    #[error("member {name:?} has {size} bytes, over the limit of {max} bytes per member")]
    MemberTooLarge {
        /// The member.
        name: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The manifest is larger than [`MAX_MANIFEST_BYTES`].
    #[error("{MANIFEST_NAME} has {size} bytes, over the limit of {max} bytes")]
    ManifestTooLarge {
        /// Its declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The archive has no members at all.
    #[error("package has no members; the first member must be {MANIFEST_NAME}")]
    MissingManifest,
    /// The first member is not the manifest.
    #[error("first member is {found:?}; the first member must be {MANIFEST_NAME}")]
    ManifestNotFirst {
        /// The name of the first member.
        found: String,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("{MANIFEST_NAME} is invalid: {reason}")]
    InvalidManifest {
        /// The parser's or validator's message.
        reason: String,
    },
    /// The manifest's format is not [`FORMAT`].
    #[error("package format {found} is not supported; this server reads format {expected}")]
    UnsupportedFormat {
        /// The manifest's format.
        found: u32,
        /// [`FORMAT`].
        expected: u32,
    },
    /// A device or package id is malformed.
    #[error("{field} {value:?} is invalid; ids are 1 to 64 characters of A-Z a-z 0-9 _ -")]
    InvalidId {
        /// `"package_id"` or `"device_id"`.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A member or manifest name breaks the name rule.
    #[error("name {name:?} is not allowed: {reason}")]
    InvalidName {
        /// The offending name (lossy UTF-8).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A member name is longer than [`Limits::max_name_bytes`].
    #[error("name {name:?} has {len} bytes, over the limit of {max} bytes")]
    NameTooLong {
        /// The offending name (lossy UTF-8).
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A member is not a regular file.
    #[error("member {name:?} is a {kind}; only regular files are allowed")]
    NotRegularFile {
        /// The member (lossy UTF-8).
        name: String,
        /// What it is instead (`symlink`, `hard link`, `directory`, ...).
        kind: &'static str,
    },
    /// Two members (or manifest entries) have the same name, ignoring case, or one name is
    /// a folder of another.
    #[error("name {name:?} collides with {other:?} (same name ignoring case, or file vs folder)")]
    DuplicateName {
        /// The later name.
        name: String,
        /// The earlier one.
        other: String,
    },
    /// A member is not listed in the manifest.
    #[error("member {name:?} is not listed in {MANIFEST_NAME}")]
    NotInManifest {
        /// The member.
        name: String,
    },
    /// A manifest entry has no member.
    #[error("{MANIFEST_NAME} lists {name:?} but the package has no such member")]
    MissingFile {
        /// The manifest entry.
        name: String,
    },
    /// A member's size differs from the manifest's.
    #[error("member {name:?} has {actual} bytes but {MANIFEST_NAME} says {manifest}")]
    SizeMismatch {
        /// The member.
        name: String,
        /// The manifest's size.
        manifest: u64,
        /// The member's size.
        actual: u64,
    },
    /// A member's SHA-256 differs from the manifest's.
    #[error("member {name:?} has SHA-256 {actual} but {MANIFEST_NAME} says {manifest}")]
    HashMismatch {
        /// The member.
        name: String,
        /// The manifest's hash.
        manifest: String,
        /// The hash of the received content.
        actual: String,
    },
    /// A manifest `sha256` is not 64 lowercase hex digits.
    #[error(
        "{MANIFEST_NAME} entry {name:?} has sha256 {value:?}; expected 64 lowercase hex digits"
    )]
    InvalidHash {
        /// The manifest entry.
        name: String,
        /// The offending value.
        value: String,
    },
    /// Non-zero bytes follow the end-of-archive marker.
    #[error("non-zero data after the end-of-archive marker at byte {offset}")]
    TrailingData {
        /// Offset of the first non-zero byte after the marker.
        offset: u64,
    },
}

impl PackageError {
    /// Whether the package was refused for its size (HTTP 413) rather than its content (400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            PackageError::PackageTooLarge { .. }
                | PackageError::TooManyMembers { .. }
                | PackageError::MemberTooLarge { .. }
                | PackageError::ManifestTooLarge { .. }
        )
    }

    /// What the sender can do about it, for [`crate::api::ErrorResponse::fix`].
    pub fn fix(&self) -> Option<&'static str> {
        use PackageError as E;
        Some(match self {
            E::Compressed { .. } => "send the TAR uncompressed (Content-Type: application/x-tar)",
            E::PackageTooLarge { .. } | E::TooManyMembers { .. } => {
                "split the data over several smaller packages"
            }
            E::MemberTooLarge { .. } => "split or shrink the file; it exceeds the per-file limit",
            E::ManifestTooLarge { .. } => "put fewer files in one package",
            E::UnsupportedFormat { .. } => {
                "build packages with the tinylcm-protocol crate version the server uses"
            }
            E::InvalidName { .. } | E::NameTooLong { .. } => {
                "use short relative names of A-Z a-z 0-9 . _ - separated by /"
            }
            E::HashMismatch { .. } | E::SizeMismatch { .. } | E::Tar { .. } => {
                "the package was damaged or changed after it was built; rebuild and resend it"
            }
            _ => return None,
        })
    }
}

impl From<&PackageError> for crate::api::ErrorResponse {
    fn from(e: &PackageError) -> Self {
        crate::api::ErrorResponse::new(e.to_string(), e.fix().map(str::to_owned))
    }
}

/// Checks `name` against the member name rule (see the module docs).
///
/// `manifest.json` itself passes this rule; it is refused as a listed file elsewhere.
pub fn validate_name(name: &str, limits: &Limits) -> Result<(), PackageError> {
    let bad = |reason| {
        Err(PackageError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name.len() > limits.max_name_bytes {
        return Err(PackageError::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
            max: limits.max_name_bytes,
        });
    }
    if name.starts_with('/') {
        return bad("absolute path");
    }
    for segment in name.split('/') {
        match segment {
            "" => return bad("empty path segment (`//` or trailing `/`)"),
            "." | ".." => return bad("`.` or `..` path segment"),
            _ => {}
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return bad("only A-Z a-z 0-9 . _ - and `/` between folders are allowed");
        }
    }
    Ok(())
}

fn valid_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `bytes` as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of `bytes` as 64 lowercase hex digits (how manifests and releases write it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn check_ids(package_id: &str, device_id: &str) -> Result<(), PackageError> {
    if !valid_package_id(package_id) {
        return Err(PackageError::InvalidId {
            field: "package_id",
            value: package_id.to_owned(),
        });
    }
    if !valid_device_id(device_id) {
        return Err(PackageError::InvalidId {
            field: "device_id",
            value: device_id.to_owned(),
        });
    }
    Ok(())
}

/// Tracks names so that no two collide on a case-insensitive store and no name is both a file
/// and a folder.
#[derive(Debug, Clone, Default)]
struct NameSet {
    /// Lowercased file name -> original name.
    files: HashMap<String, String>,
    /// Lowercased folder prefix -> original name that introduced it.
    folders: HashMap<String, String>,
}

impl NameSet {
    fn insert(&mut self, name: &str) -> Result<(), PackageError> {
        let lower = name.to_ascii_lowercase();
        let clash = |other: &String| PackageError::DuplicateName {
            name: name.to_owned(),
            other: other.clone(),
        };
        if let Some(other) = self.files.get(&lower).or_else(|| self.folders.get(&lower)) {
            return Err(clash(other));
        }
        let folders: Vec<&str> = lower.match_indices('/').map(|(i, _)| &lower[..i]).collect();
        for folder in &folders {
            if let Some(other) = self.files.get(*folder) {
                return Err(clash(other));
            }
        }
        for folder in folders {
            self.folders
                .entry(folder.to_owned())
                .or_insert_with(|| name.to_owned());
        }
        self.files.insert(lower, name.to_owned());
        Ok(())
    }
}

/// Checks a manifest against the format, id, hash, name and limit rules.
fn validate_manifest(manifest: &Manifest, limits: &Limits) -> Result<(), PackageError> {
    if manifest.format != FORMAT {
        return Err(PackageError::UnsupportedFormat {
            found: manifest.format,
            expected: FORMAT,
        });
    }
    check_ids(&manifest.package_id, &manifest.device_id)?;
    if manifest.files.len() >= limits.max_members {
        return Err(PackageError::TooManyMembers {
            max: limits.max_members,
        });
    }
    let mut names = NameSet::default();
    let mut total: u64 = 0;
    for entry in &manifest.files {
        validate_name(&entry.name, limits)?;
        if entry.name.eq_ignore_ascii_case(MANIFEST_NAME) {
            return Err(PackageError::InvalidName {
                name: entry.name.clone(),
                reason: "the manifest cannot list itself",
            });
        }
        names.insert(&entry.name)?;
        if entry.size > limits.max_member_bytes {
            return Err(PackageError::MemberTooLarge {
                name: entry.name.clone(),
                size: entry.size,
                max: limits.max_member_bytes,
            });
        }
        if !valid_sha256_hex(&entry.sha256) {
            return Err(PackageError::InvalidHash {
                name: entry.name.clone(),
                value: entry.sha256.clone(),
            });
        }
        // Header block + data rounded up to whole blocks.
        total = total.saturating_add(BLOCK + entry.size.div_ceil(BLOCK) * BLOCK);
        if total > limits.max_package_bytes {
            return Err(PackageError::PackageTooLarge {
                max: limits.max_package_bytes,
            });
        }
    }
    Ok(())
}

/// A reader that fails once more than `max` bytes have passed through it, and remembers that
/// it did (the TAR parser may wrap or replace the error).
struct Budget<R> {
    inner: R,
    read: u64,
    max: u64,
    exceeded: bool,
    /// The first error the source itself returned (as opposed to a TAR parse error).
    source_error: Option<io::Error>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.max {
            self.exceeded = true;
            return Err(io::Error::other("package size limit exceeded"));
        }
        // Allow one byte past the limit so "exactly max" and "more than max" can be told apart.
        let room = (self.max - self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.source_error.get_or_insert(e);
                return Err(copy);
            }
        };
        self.read += n as u64;
        if self.read > self.max {
            self.exceeded = true;
            return Err(io::Error::other("package size limit exceeded"));
        }
        Ok(n)
    }
}

fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn compression_magic(head: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 5] = [
        (&[0x1f, 0x8b], "gzip"),
        (b"BZh", "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (b"PK\x03\x04", "zip"),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, name)| *name)
}

fn entry_kind_name(t: tar::EntryType) -> &'static str {
    use tar::EntryType as T;
    match t {
        T::Regular => "regular file",
        T::Link => "hard link",
        T::Symlink => "symlink",
        T::Char => "character device",
        T::Block => "block device",
        T::Directory => "directory",
        T::Fifo => "FIFO",
        T::Continuous => "contiguous file",
        T::GNULongName => "GNU long-name header",
        T::GNULongLink => "GNU long-link header",
        T::GNUSparse => "GNU sparse file",
        T::XHeader => "PAX extension header",
        T::XGlobalHeader => "PAX global header",
        _ => "member of unknown type",
    }
}

/// Reads and verifies one package from `reader` under `limits`.
///
/// Reads at most `limits.max_package_bytes + 1` bytes, whatever the stream holds, and reads the
/// stream to its end (trailing zero padding included). On success every rule in the
/// [module docs](self) holds for the returned [`Package`]; on failure nothing partial is
/// returned. An error of `reader` itself comes back as [`PackageError::Read`] (a server answers
/// that differently from a bad package).
pub fn read_package<R: Read>(reader: R, limits: &Limits) -> Result<Package, PackageError> {
    let (manifest, contents) = read_budgeted(reader, limits, true)?;
    let files = manifest
        .files
        .iter()
        .cloned()
        .zip(contents.into_iter().map(Option::unwrap_or_default))
        .collect();
    Ok(Package { manifest, files })
}

/// Verifies a package exactly as [`read_package`] does, keeping none of its files: each
/// member is hashed as it streams past, so memory stays bounded by the manifest whatever the
/// package's size. A server checks an upload spooled to disk with this before it stores it.
pub fn check_package<R: Read>(reader: R, limits: &Limits) -> Result<Manifest, PackageError> {
    read_budgeted(reader, limits, false).map(|(manifest, _)| manifest)
}

/// Every file's content in manifest order, when kept (`None` otherwise).
type Contents = Vec<Option<Vec<u8>>>;

/// The manifest and, when `keep`, every file's content in manifest order (`None` otherwise).
fn read_budgeted<R: Read>(
    reader: R,
    limits: &Limits,
    keep: bool,
) -> Result<(Manifest, Contents), PackageError> {
    let mut budget = Budget {
        inner: reader,
        read: 0,
        max: limits.max_package_bytes,
        exceeded: false,
        source_error: None,
    };
    let result = read_package_inner(&mut budget, limits, keep);
    // Whatever error the parser reported, running out of budget is the real cause.
    if budget.exceeded {
        return Err(PackageError::PackageTooLarge {
            max: limits.max_package_bytes,
        });
    }
    if let Some(source) = budget.source_error {
        return Err(PackageError::Read { source });
    }
    result
}

fn read_package_inner<R: Read>(
    budget: &mut Budget<R>,
    limits: &Limits,
    keep: bool,
) -> Result<(Manifest, Contents), PackageError> {
    let tar_err = |context: String| move |source| PackageError::Tar { context, source };

    let mut head = [0u8; 6];
    let n = read_up_to(budget, &mut head).map_err(tar_err("at the start".into()))?;
    if n == 0 {
        return Err(PackageError::Empty);
    }
    if let Some(format) = compression_magic(&head[..n]) {
        return Err(PackageError::Compressed { format });
    }

    let mut archive = tar::Archive::new(io::Cursor::new(&head[..n]).chain(&mut *budget));
    let mut entries = archive
        .entries()
        .map_err(tar_err("at the start".into()))?
        // Raw: GNU long names, PAX headers and sparse maps come back as members of their own
        // type, which are then refused, instead of being interpreted by the parser.
        .raw(true);

    // --- The manifest.
    let mut first = match entries.next() {
        None => return Err(PackageError::MissingManifest),
        Some(e) => e.map_err(tar_err("in the first member header".into()))?,
    };
    let first_name = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    // Type first: a PAX header or link in front of the manifest is reported as what it is.
    let first_type = first.header().entry_type();
    if !first_type.is_file() {
        return Err(PackageError::NotRegularFile {
            name: first_name,
            kind: entry_kind_name(first_type),
        });
    }
    if first_name != MANIFEST_NAME {
        return Err(PackageError::ManifestNotFirst { found: first_name });
    }
    let manifest_size = first.size();
    if manifest_size > MAX_MANIFEST_BYTES {
        return Err(PackageError::ManifestTooLarge {
            size: manifest_size,
            max: MAX_MANIFEST_BYTES,
        });
    }
    let manifest_bytes = read_member(&mut first, manifest_size, MANIFEST_NAME)?;
    drop(first);
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::InvalidManifest {
            reason: e.to_string(),
        })?;
    validate_manifest(&manifest, limits)?;

    let index: HashMap<&str, usize> = manifest
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    let mut contents: Vec<Option<Vec<u8>>> = vec![None; manifest.files.len()];
    let mut found = vec![false; manifest.files.len()];
    let mut seen: HashSet<String> = HashSet::new();
    let mut members: usize = 1;
    let mut last = MANIFEST_NAME.to_owned();

    // --- The files.
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(|e| PackageError::Tar {
            context: format!("after member {last:?}"),
            source: e,
        })?;
        members += 1;
        if members > limits.max_members {
            return Err(PackageError::TooManyMembers {
                max: limits.max_members,
            });
        }
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let entry_type = entry.header().entry_type();
        if !entry_type.is_file() {
            return Err(PackageError::NotRegularFile {
                name,
                kind: entry_kind_name(entry_type),
            });
        }
        let Ok(utf8) = std::str::from_utf8(&raw_name) else {
            return Err(PackageError::InvalidName {
                name,
                reason: "not UTF-8",
            });
        };
        validate_name(utf8, limits)?;
        if name.eq_ignore_ascii_case(MANIFEST_NAME) || !seen.insert(name.to_ascii_lowercase()) {
            return Err(PackageError::DuplicateName {
                other: name.clone(),
                name,
            });
        }
        let Some(&i) = index.get(name.as_str()) else {
            return Err(PackageError::NotInManifest { name });
        };
        let expected = &manifest.files[i];
        let size = entry.size();
        if size > limits.max_member_bytes {
            return Err(PackageError::MemberTooLarge {
                name,
                size,
                max: limits.max_member_bytes,
            });
        }
        if size != expected.size {
            return Err(PackageError::SizeMismatch {
                name,
                manifest: expected.size,
                actual: size,
            });
        }
        let (actual, data) = if keep {
            let data = read_member(&mut entry, size, &name)?;
            (sha256_hex(&data), Some(data))
        } else {
            (hash_member(&mut entry, size, &name)?, None)
        };
        if actual != expected.sha256 {
            return Err(PackageError::HashMismatch {
                name,
                manifest: expected.sha256.clone(),
                actual,
            });
        }
        contents[i] = data;
        found[i] = true;
        last = name;
    }

    // --- After the end-of-archive marker: only zero padding.
    let mut rest = archive.into_inner();
    let mut offset = budget_position(&rest);
    let mut buf = [0u8; 8192];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(tar_err("after the end-of-archive marker".into())(e)),
        };
        if let Some(p) = buf[..n].iter().position(|&b| b != 0) {
            return Err(PackageError::TrailingData {
                offset: offset + p as u64,
            });
        }
        offset += n as u64;
    }

    if let Some(i) = found.iter().position(|f| !f) {
        return Err(PackageError::MissingFile {
            name: manifest.files[i].name.clone(),
        });
    }
    Ok((manifest, contents))
}

fn budget_position<R>(rest: &io::Chain<io::Cursor<&[u8]>, &mut Budget<R>>) -> u64 {
    let (cursor, budget) = rest.get_ref();
    budget.read - (cursor.get_ref().len() as u64 - cursor.position())
}

/// Reads exactly `size` bytes of a member whose size was already checked against the limits.
fn read_member<R: Read>(entry: &mut R, size: u64, name: &str) -> Result<Vec<u8>, PackageError> {
    // `size` is bounded by the limits (at most max_member_bytes), so allocating it is safe.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry
        .take(size)
        .read_to_end(&mut data)
        .map_err(|source| PackageError::Tar {
            context: format!("in member {name:?}"),
            source,
        })?;
    if data.len() as u64 != size {
        return Err(PackageError::Tar {
            context: format!("in member {name:?}"),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("member data ends after {} of {size} bytes", data.len()),
            ),
        });
    }
    Ok(data)
}

/// SHA-256 (hex) of exactly `size` bytes of a member, read in small pieces and not kept.
fn hash_member<R: Read>(entry: &mut R, size: u64, name: &str) -> Result<String, PackageError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    let tar_err = |source| PackageError::Tar {
        context: format!("in member {name:?}"),
        source,
    };
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match entry.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(tar_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("member data ends after {} of {size} bytes", size - left),
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(tar_err(e)),
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// Builds a package on the device; the counterpart of [`read_package`].
///
/// Files are kept in memory until [`PackageBuilder::finish`]; every [`PackageBuilder::add`]
/// checks the name rule, duplicates and the [`Limits`] so that a package that builds is a
/// package the server accepts under the same limits.
#[derive(Debug, Clone)]
pub struct PackageBuilder {
    manifest: Manifest,
    contents: Vec<Vec<u8>>,
    names: Vec<String>,
    taken: NameSet,
    limits: Limits,
    /// Bytes the TAR will take so far (manifest excluded, end marker included).
    tar_bytes: u64,
}

impl PackageBuilder {
    /// Starts a package with default [`Limits`]; fails if an id is malformed.
    pub fn new(
        package_id: impl Into<String>,
        device_id: impl Into<String>,
        created_unix_ms: u64,
    ) -> Result<Self, PackageError> {
        let (package_id, device_id) = (package_id.into(), device_id.into());
        check_ids(&package_id, &device_id)?;
        Ok(PackageBuilder {
            manifest: Manifest {
                format: FORMAT,
                package_id,
                device_id,
                created_unix_ms,
                files: Vec::new(),
            },
            contents: Vec::new(),
            names: Vec::new(),
            taken: NameSet::default(),
            limits: Limits::default(),
            tar_bytes: 2 * BLOCK,
        })
    }

    /// Uses `limits` instead of the defaults (use the server's limits).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The manifest as it stands (files added so far).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Adds a file; fails on a bad or duplicate name or when a limit would be exceeded.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        kind: FileKind,
        bytes: Vec<u8>,
    ) -> Result<&mut Self, PackageError> {
        let name = name.into();
        validate_name(&name, &self.limits)?;
        if name.eq_ignore_ascii_case(MANIFEST_NAME) {
            return Err(PackageError::InvalidName {
                name,
                reason: "reserved for the manifest",
            });
        }
        if self.manifest.files.len() + 2 > self.limits.max_members {
            return Err(PackageError::TooManyMembers {
                max: self.limits.max_members,
            });
        }
        let size = bytes.len() as u64;
        if size > self.limits.max_member_bytes {
            return Err(PackageError::MemberTooLarge {
                name,
                size,
                max: self.limits.max_member_bytes,
            });
        }
        let tar_bytes = self.tar_bytes + BLOCK + size.div_ceil(BLOCK) * BLOCK;
        if tar_bytes > self.limits.max_package_bytes {
            return Err(PackageError::PackageTooLarge {
                max: self.limits.max_package_bytes,
            });
        }
        // Last check: `insert` leaves the set unchanged when it fails.
        self.taken.insert(&name)?;
        self.tar_bytes = tar_bytes;
        self.manifest.files.push(FileEntry {
            name: name.clone(),
            kind,
            size,
            sha256: sha256_hex(&bytes),
        });
        self.names.push(name);
        self.contents.push(bytes);
        Ok(self)
    }

    /// Writes the TAR: manifest first, then the files in the order added, then the end marker.
    pub fn finish(self) -> Result<Vec<u8>, PackageError> {
        // The exact size, so the buffer is never grown (and held twice) while writing.
        let manifest = serde_json::to_vec(&self.manifest).map_or(0, |m| m.len() as u64);
        let total = self.tar_bytes + BLOCK + manifest.div_ceil(BLOCK) * BLOCK;
        let capacity = usize::try_from(total.min(self.limits.max_package_bytes)).unwrap_or(0);
        self.finish_to(Vec::with_capacity(capacity))
    }

    /// As [`finish`](Self::finish), writing the TAR to `out` (a file, so a large package is
    /// never held twice in memory); returns `out`.
    pub fn finish_to<W: Write>(self, out: W) -> Result<W, PackageError> {
        let manifest =
            serde_json::to_vec(&self.manifest).map_err(|e| PackageError::InvalidManifest {
                reason: e.to_string(),
            })?;
        if manifest.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(PackageError::ManifestTooLarge {
                size: manifest.len() as u64,
                max: MAX_MANIFEST_BYTES,
            });
        }
        let total = self.tar_bytes + BLOCK + (manifest.len() as u64).div_ceil(BLOCK) * BLOCK;
        if total > self.limits.max_package_bytes {
            return Err(PackageError::PackageTooLarge {
                max: self.limits.max_package_bytes,
            });
        }
        let mtime = self.manifest.created_unix_ms / 1000;
        let mut out = tar::Builder::new(out);
        let members = std::iter::once((MANIFEST_NAME, manifest.as_slice())).chain(
            self.names
                .iter()
                .map(String::as_str)
                .zip(self.contents.iter().map(Vec::as_slice)),
        );
        for (name, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_path(name).map_err(|e| PackageError::Tar {
                context: format!("writing the header of {name:?}"),
                source: e,
            })?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            header.set_cksum();
            out.append(&header, data).map_err(|e| PackageError::Tar {
                context: format!("writing member {name:?}"),
                source: e,
            })?;
        }
        out.into_inner().map_err(|e| PackageError::Tar {
            context: "writing the end-of-archive marker".into(),
            source: e,
        })
    }
}
