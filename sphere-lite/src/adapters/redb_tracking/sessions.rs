//! The embedded (redb) adapter: the `SessionStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use redb::ReadableTable;

use super::credentials::{SESSIONS, one};
use super::*;
use crate::ports::SessionStore;

impl SessionStore for RedbTracking {
    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(SESSIONS)
            .map_err(err)?
            .insert(
                session.session_hash.as_slice(),
                to_json(session)?.as_slice(),
            )
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn session(&self, session_hash: &SecretHash) -> Result<Option<SessionRecord>, StoreError> {
        one(&self.db, SESSIONS, session_hash)
    }

    fn touch_session(&self, session_hash: &SecretHash, now_unix_ms: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(SESSIONS).map_err(err)?;
            let session: Option<SessionRecord> = table
                .get(session_hash.as_slice())
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            let Some(mut session) = session else {
                return Ok(());
            };
            if session.last_active_unix_ms >= now_unix_ms {
                return Ok(());
            }
            session.last_active_unix_ms = now_unix_ms;
            table
                .insert(session_hash.as_slice(), to_json(&session)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn delete_session(&self, session_hash: &SecretHash) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(SESSIONS)
            .map_err(err)?
            .remove(session_hash.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn purge_sessions(&self, now_unix_ms: u64, idle_ms: u64) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let n = {
            let mut table = tx.open_table(SESSIONS).map_err(err)?;
            let mut ended = Vec::new();
            for row in table.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let s: SessionRecord = from_json(v.value())?;
                if now_unix_ms >= s.expires_unix_ms
                    || now_unix_ms >= s.last_active_unix_ms.saturating_add(idle_ms)
                {
                    ended.push(k.value().to_vec());
                }
            }
            for k in &ended {
                table.remove(k.as_slice()).map_err(err)?;
            }
            ended.len()
        };
        tx.commit().map_err(err)?;
        Ok(n)
    }
}
