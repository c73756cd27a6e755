//! Every parser of what a device sends inside a package — drift events, Data Hub prediction
//! samples, metrics — run on one package without a store.
//!
//! Why: the parsers live in the protocol crate (`tinylcm_protocol::device_json`), where the
//! fuzz targets in `tests/fuzz` run them without the server's dependency tree; package
//! processing ([`Sphere::process`](super::Sphere::process)) runs the same functions through
//! this crate's `domain` modules and then stores what they return.

pub use tinylcm_protocol::device_json::{Parsed, parse};
