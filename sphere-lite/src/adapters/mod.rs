//! Adapters implementing the ports of [`crate::ports`].
//!
//! Why: keeping each backend in its own module lets the MLflow and S3 adapters be added next to
//! the embedded ones without touching the domain.

pub mod dir_blobs;
pub mod redb_tracking;

pub use dir_blobs::DirBlobs;
pub use redb_tracking::RedbTracking;
