//! The A/B model store: over-the-air models that can never leave the device on a broken model.
//!
//! The life of a model: install → verify SHA-256 and Ed25519 signature against trusted keys →
//! smoke test on the manifest's golden inputs through the real engine → activate atomically →
//! health window → commit; otherwise roll back, also after a crash loop.
//!
//! * Files: `<dir>/a/` and `<dir>/b/` hold `model.tflite`, `model.toml` and `release.json`
//!   ([`layout`]); an install writes only the slot nothing refers to.
//! * State: one versioned value (`models`) in the device's redb database ([`record`]), every
//!   change flushed before the action it protects ([`store`] explains the order that makes
//!   `kill -9` safe at any instant).
//! * The running service holds the database, so other processes hand requests over through
//!   `<dir>/incoming/` ([`incoming`]).
//!
//! The service's part: call [`ModelStore::boot`] once per start before loading a model, feed
//! the [`HealthWindow`] from [`ModelStore::health_window`] per frame and pass its verdict to
//! [`ModelStore::commit`] or [`ModelStore::rollback`], and call [`process_incoming`] off the
//! inference thread.

pub mod config;
pub mod error;
pub mod golden;
pub mod health;
pub mod incoming;
pub mod layout;
pub mod record;
pub mod store;
pub mod verify;

pub use config::ModelsConfig;
pub use error::ModelStoreError;
pub use health::{HealthSummary, HealthWindow, Verdict};
pub use incoming::{Outcome, Processed, Request, hand_over, hand_over_install, process_incoming};
pub use layout::Layout;
pub use record::{ActiveModel, ActiveState, ModelsState, Slot, SlotRecord};
pub use store::{Boot, BootChoice, Installed, ModelStore, RolledBack};
