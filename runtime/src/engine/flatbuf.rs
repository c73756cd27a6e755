//! The `.tflite` flatbuffer walker the engine runs before a library sees a model.
//!
//! It lives in the protocol crate ([`tinylcm_protocol::tflite`]) because `tinylcm model
//! sign` and sphere-lite's release publishing run the same walk; the engine uses it under
//! this name.

pub(crate) use tinylcm_protocol::tflite::{Traits, traits, verify_tflite};
