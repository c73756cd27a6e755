//! The quarantine: suspicious samples kept for later.
//!
//! A sample seen while a drift is open, or far from everything the KNN knows, or predicted
//! with low confidence, is evidence the model may be wrong. The heuristic adaptation
//! clusters such samples and pseudo-labels them; a human labels them later from their
//! thumbnails. Neither happens at once, so the samples wait here.
//!
//! The original proof of concept kept them in an unbounded list and JSON files; on a device
//! that runs for months unattended that fills the memory and the SD card during the first
//! long drift. So everything here is bounded: entries by count, feature bytes, age and per
//! predicted class ([`QuarantineConfig`]); thumbnails by bytes on disk.
//!
//! * [`config`]: the `[quarantine]` section (with its documented TOML example).
//! * [`entry`]: what is stored per sample ([`Entry`], versioned) and what the per-frame path
//!   offers ([`Candidate`], borrowed, so refusing allocates nothing).
//! * [`status`]: the life of an entry (`pending` → `pseudo-labelled` / `validated` /
//!   `rejected` / `adapted`) and the allowed transitions. Apart from its status, an entry may
//!   be *under review*: it backs a drift event sent to a human, and eviction leaves it alone
//!   until the verdict comes (bounded by `max-under-review` and `review-hours`).
//! * `evict`: which entries make room (resolved first, then the oldest pending; never an
//!   entry under review for a new sample).
//! * [`review`]: copies of the features of samples sent for review, so a human's label still
//!   applies after the entry is gone.
//! * `index`: [`Quarantine`], the entries in memory; every change is queued into the
//!   caller's state store [`Batch`](crate::state::Batch), never written directly.
//! * [`thumbnails`]: JPEG thumbnails written by a background thread through a bounded
//!   queue that drops (and counts) instead of blocking.
//!
//! # Persistence
//!
//! Entries live in the state store's `quarantine` table (schema 2), keyed by id, and are
//! loaded at [`Quarantine::open`]. They are **not** part of snapshots, and a snapshot
//! restore does not touch them (see [`crate::state`]): after rolling an adaptation back,
//! set the entries it used from `adapted` back to `pending`. Ids come from the store's
//! [`ADMITTED_COUNTER`], so they are never reused.
//!
//! # Wiring into the per-frame path
//!
//! ```no_run
//! # use tinylcm::quarantine::{Candidate, Quarantine, QuarantineConfig, ReasonRef};
//! # use tinylcm::state::{Batch, DurabilityPolicy, Store};
//! # let store = Store::open("/tmp/s.redb", DurabilityPolicy::default()).unwrap();
//! # let frame = tinylcm::frame::Frame::default();
//! # let (features, now_ms) = (vec![0.0f32; 16], 0u64);
//! let mut q = Quarantine::open(QuarantineConfig::default(), &store)?;
//! let mut batch = Batch::new();
//! q.expire(now_ms, &mut batch); // deletes what open left out
//! // per suspicious frame:
//! let candidate = Candidate {
//!     sample: frame.sequence,
//!     reason: ReasonRef::Drift { detector: "ph-distance" },
//!     predicted: "ball",
//!     confidence: 0.41,
//!     knn_distance: Some(2.3),
//!     features: &features,
//! };
//! if let Some(id) = q.admit(candidate, &frame, now_ms, &mut batch)? {
//!     // e.g. record an event naming `id` in the same batch
//! }
//! // the caller submits (try_submit on the inference thread; retry or merge a batch handed
//! // back as Full: a dropped batch leaves memory and database apart until the next open)
//! let _ = store.try_submit(batch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod entry;
mod error;
mod evict;
mod index;
pub mod review;
pub mod status;
pub mod thumbnails;

pub use config::QuarantineConfig;
pub use entry::{Candidate, ENTRY_VERSION, Entry, Reason, ReasonRef, thumbnail_name};
pub use error::QuarantineError;
pub use index::{ADMITTED_COUNTER, EVICTED_COUNTER, EXPIRED_COUNTER, Quarantine, QuarantineStats};
pub use status::{Status, StatusKind};
pub use thumbnails::{ThumbnailStats, ThumbnailWriter};
