//! sphere-lite: the slim fleet server for TinyLCM devices (embedded default: redb + a directory;
//! stateless: MLflow + S3).
//!
//! Why a library as well as a binary: the integration tests start the same server the binary
//! does. Layout (ports and adapters, so one domain runs on either storage backend):
//!
//! * [`ports`]: the `Tracking` and `Blobs` traits the domain depends on;
//! * [`adapters`]: their implementations (redb file, local directory, S3, MLflow);
//! * [`domain`]: enrollment, authentication, package ingest, listings, the Drift Hub (drift
//!   events, operator decisions, the per-device feedback queue);
//! * [`legacy`]: what the original TinyLCM Python clients send and expect, translated to the
//!   domain (archives → v2 packages, the feedback queue → validations);
//! * [`http`]: the warp routes of API v2 and of the original API;
//! * [`web`]: the operators' web dashboard under `/ui/` (server-rendered, live over SSE);
//! * [`door`]: the accept loop and the checks before routing (timeouts, connection cap,
//!   `Host` allow-list, failed-authentication budget);
//! * [`server`]: wiring and the serve loop; [`tls`]: native TLS (rustls) for it;
//!   [`config`]: settings; [`secret`]: tokens;
//!   `parallel`: a few blocking calls at once (S3 and MLflow round trips);
//!   [`rss`]: resident-memory reading for the idle-RSS bar;
//!   [`test_support`]: set-ups the crate's tests and benches share.

#![warn(missing_docs)]

pub mod adapters;
pub mod config;
pub mod domain;
pub mod door;
pub mod http;
pub mod legacy;
pub mod limits;
mod parallel;
pub mod ports;
pub mod rss;
pub mod secret;
pub mod server;
#[doc(hidden)]
pub mod test_support;
pub mod tls;
pub mod web;
