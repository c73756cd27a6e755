//! TinyLCM edge runtime.
//!
//! Frames come from a [`frame::FrameSource`] (a V4L2 camera, a directory of
//! images, or the deterministic synthetic scene), are turned into model input
//! by [`preprocess`], run through an [`engine::Engine`] (TFLite C API or LiteRT,
//! loaded at run time), and the [`pipeline`] measures every stage.
//! Everything a user can set lives in one [`config::Config`].

pub mod adapt;
pub mod assemble;
pub mod autonomy;
pub mod bench;
pub mod bench_autonomy;
pub mod board;
pub mod config;
pub mod drift;
pub mod engine;
pub mod eval;
pub mod features;
pub mod files;
pub mod frame;
pub mod knn;
pub mod model;
pub mod modelstore;
pub mod pipeline;
pub mod preprocess;
pub mod quarantine;
pub mod rauc;
pub mod report;
pub mod service;
pub mod signals;
pub mod state;
pub mod stats;
pub mod status;
pub mod sync;
pub mod systemd;
/// Wall-clock time (shared with the server through the protocol crate).
pub use tinylcm_protocol::time as utc;
