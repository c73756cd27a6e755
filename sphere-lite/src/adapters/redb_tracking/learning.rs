//! The embedded (redb) adapter: the `LearningStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module (the two tables of this one are
//! declared here and created at open).

use tinylcm_protocol::learning::{ClassRenameView, LearningEventView};

use super::*;
use crate::ports::{ClassRename, LearningStore};

/// (device, `<unix ms, 20 digits>/<key>`) → JSON [`LearningEventView`]: a device's events
/// in time order, read backwards for "newest first".
pub(super) const LEARNING: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("learning_events");
/// (device, [`LearningEventView::key`]) → its key in [`LEARNING`]: the idempotency index.
pub(super) const LEARNING_KEYS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("learning_event_keys");
/// (device, feedback item id) → JSON [`StoredRename`].
pub(super) const CLASS_RENAMES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("class_renames");

/// A class rename as kept: the queue forgets its items once acknowledged, this does not.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRename {
    from: String,
    to: String,
    by: String,
    unix_ms: u64,
}

/// Store the new ones of `events` inside `tx` (see [`LearningStore::put_learning_events`]);
/// how many were new.
pub(super) fn put_learning_events_in(
    tx: &redb::WriteTransaction,
    events: &[LearningEventView],
) -> Result<usize, StoreError> {
    let mut new = 0;
    let mut keys = tx.open_table(LEARNING_KEYS).map_err(err)?;
    let mut table = tx.open_table(LEARNING).map_err(err)?;
    for event in events {
        let key = event.key();
        let device = event.device_id.as_str();
        if keys.get((device, key.as_str())).map_err(err)?.is_some() {
            continue;
        }
        let at = format!("{:020}/{key}", event.unix_ms);
        table
            .insert((device, at.as_str()), to_json(event)?.as_slice())
            .map_err(err)?;
        keys.insert((device, key.as_str()), at.as_str())
            .map_err(err)?;
        new += 1;
    }
    Ok(new)
}

impl LearningStore for RedbTracking {
    fn put_learning_events(&self, events: &[LearningEventView]) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let new = put_learning_events_in(&tx, events)?;
        tx.commit().map_err(err)?;
        Ok(new)
    }

    fn learning_events(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<LearningEventView>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(LEARNING).map_err(err)?;
        let mut out = Vec::new();
        // Every key of the device sorts between "" and "~" (digits, '/', epoch characters).
        for row in table
            .range((device_id, "")..=(device_id, "~"))
            .map_err(err)?
            .rev()
        {
            if out.len() >= limit {
                break;
            }
            out.push(from_json(row.map_err(err)?.1.value())?);
        }
        Ok(out)
    }

    fn queue_class_rename(&self, device_id: &str, rename: &ClassRename) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let verdict = FeedbackVerdict::Class {
            from: rename.from.clone(),
            to: rename.to.clone(),
        };
        let ids = append_feedback_in(&tx, device_id, &[verdict], rename.unix_ms)?;
        let id = ids[0];
        let stored = StoredRename {
            from: rename.from.clone(),
            to: rename.to.clone(),
            by: rename.by.clone(),
            unix_ms: rename.unix_ms,
        };
        tx.open_table(CLASS_RENAMES)
            .map_err(err)?
            .insert((device_id, id), to_json(&stored)?.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(id)
    }

    fn class_renames(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<ClassRenameView>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(CLASS_RENAMES).map_err(err)?;
        let acked = tx
            .open_table(FEEDBACK_STATE)
            .map_err(err)?
            .get(device_id)
            .map_err(err)?
            .map_or(0, |v| v.value().1);
        let results = tx.open_table(FEEDBACK_RESULTS).map_err(err)?;
        let mut out = Vec::new();
        for row in table
            .range((device_id, 0)..=(device_id, u64::MAX))
            .map_err(err)?
            .rev()
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(err)?;
            let id = k.value().1;
            let stored: StoredRename = from_json(v.value())?;
            let mut feedback = FeedbackItemState {
                id,
                verdict: FeedbackVerdict::Class {
                    from: stored.from.clone(),
                    to: stored.to.clone(),
                },
                progress: FeedbackProgress::Queued,
                reason: None,
                reported_unix_ms: None,
            };
            progress(&mut feedback, acked, |id| {
                results
                    .get((device_id, id))
                    .map_err(err)?
                    .map(|v| from_json::<FeedbackResult>(v.value()))
                    .transpose()
            })?;
            out.push(ClassRenameView {
                device_id: device_id.to_owned(),
                from: stored.from,
                to: stored.to,
                by: stored.by,
                requested_unix_ms: stored.unix_ms,
                feedback,
            });
        }
        Ok(out)
    }
}
