//! The `SessionStore` part of the `Tracking` port: dashboard sessions.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{SecretHash, SessionRecord, StoreError};

/// Dashboard sessions (hashes only).
///
/// Embedded: table `sessions`. MLflow: runs of `<ns>/auth` tagged `sphere.kind=session`.
pub trait SessionStore: Send + Sync {
    /// Store a new dashboard session.
    /// MLflow: a run in `<ns>/auth` tagged `sphere.kind=session`, `sphere.session_sha256`, ...
    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// The session with this hash, if stored (expired ones too: the caller checks).
    /// MLflow: `runs/search` on `sphere.session_sha256`.
    fn session(&self, session_hash: &SecretHash) -> Result<Option<SessionRecord>, StoreError>;

    /// Record activity of a session at `now_unix_ms` (the caller throttles).
    fn touch_session(&self, session_hash: &SecretHash, now_unix_ms: u64) -> Result<(), StoreError>;

    /// Delete a session (logout, or found expired); deleting a missing one is not an error.
    /// MLflow: `runs/delete`.
    fn delete_session(&self, session_hash: &SecretHash) -> Result<(), StoreError>;

    /// Delete every session that ended by `now_unix_ms` (expired, or idle for `idle_ms`);
    /// returns how many.
    fn purge_sessions(&self, now_unix_ms: u64, idle_ms: u64) -> Result<usize, StoreError>;
}
