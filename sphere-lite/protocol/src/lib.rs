//! The wire protocol between the TinyLCM runtime (`tinylcm`) and its fleet server
//! (`sphere-lite`): the versioned API's request and response types, and sync packages.
//!
//! One crate used by both sides, so a device and the server cannot disagree about a field.
