//! What the original TinyLCM Python clients send to their server, read and translated to v2
//! packages: the JSON shapes of the original API ([`wire`]), their upload archives (flat TAR
//! or `.tar.gz`, [`archive`]) and the translation of an archive into a v2 sync package
//! ([`translate`]).
//!
//! Why here and not in sphere-lite: these are parsers of outside input with no server state,
//! and the fuzz target `legacy_upload` (tests/fuzz) must run the very code sphere-lite runs
//! without building the server's dependency tree. sphere-lite's `legacy` module keeps what
//! needs its store (accepting an upload, the feedback queue as validations) and re-exports
//! these modules.

pub mod archive;
pub mod translate;
pub mod wire;

pub use archive::Compression;

/// Why an original client's upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The archive is not a readable flat TAR (or holds links, traversal, truncated members).
    #[error("package rejected: {0}")]
    BadArchive(String),
    /// A format the server does not read.
    #[error("package rejected: {0}")]
    Unsupported(&'static str),
    /// Over a size or count limit (also when inflating a `.tar.gz`).
    #[error("package rejected: {0}")]
    TooLarge(String),
    /// The `metadata` part is missing fields or names ids that are not allowed.
    #[error("invalid metadata: {0}")]
    BadMetadata(String),
    /// The server's own copy of the upload (its spool files) could not be read or written.
    #[error("the spooled upload failed: {0}")]
    Spool(String),
}
