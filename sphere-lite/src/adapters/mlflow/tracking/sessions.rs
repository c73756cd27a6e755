//! The MLflow adapter: the `SessionStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::SessionStore;

impl SessionStore for MlflowTracking {
    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.store_session(session)
    }

    fn session(&self, session_hash: &SecretHash) -> Result<Option<SessionRecord>, StoreError> {
        self.find_session(session_hash)
    }

    fn touch_session(&self, session_hash: &SecretHash, now_unix_ms: u64) -> Result<(), StoreError> {
        self.touch_session_at(session_hash, now_unix_ms)
    }

    fn delete_session(&self, session_hash: &SecretHash) -> Result<(), StoreError> {
        self.remove_session(session_hash)
    }

    fn purge_sessions(&self, now_unix_ms: u64, idle_ms: u64) -> Result<usize, StoreError> {
        self.purge(now_unix_ms, idle_ms)
    }
}
