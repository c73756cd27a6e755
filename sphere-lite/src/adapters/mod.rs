//! Adapters implementing the ports of [`crate::ports`].
//!
//! Why: keeping each backend in its own module lets the MLflow and S3 adapters sit next to
//! the embedded ones without touching the domain.

pub mod dir_blobs;
pub mod mlflow;
pub mod redb_tracking;
pub mod s3_blobs;
mod series;

pub use dir_blobs::DirBlobs;
pub use mlflow::{MlflowSettings, MlflowTracking};
pub use redb_tracking::RedbTracking;
pub use s3_blobs::{S3Blobs, S3Requests, S3Settings};
