//! The embedded (redb) adapter: the `DriftStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::DriftStore;

/// Store the new ones of `events` inside `tx` (see [`DriftStore::put_drift_events`]); how many
/// were new.
pub(super) fn put_drift_events_in(
    tx: &redb::WriteTransaction,
    events: &[DriftEventView],
) -> Result<usize, StoreError> {
    let mut new = 0;
    let mut keys = tx.open_table(DRIFT_EVENT_KEYS).map_err(err)?;
    let mut table = tx.open_table(DRIFT_EVENTS).map_err(err)?;
    let mut next = table
        .last()
        .map_err(err)?
        .map(|(k, _)| k.value() + 1)
        .unwrap_or(1);
    for event in events {
        let scope = match &event.epoch {
            Some(epoch) => format!("{}/{epoch}", event.device_id),
            None => event.device_id.clone(),
        };
        let key = (scope.as_str(), event.event_seq);
        if keys.get(key).map_err(err)?.is_some() {
            continue;
        }
        let mut stored = event.clone();
        stored.id = next;
        table
            .insert(next, to_json(&stored)?.as_slice())
            .map_err(err)?;
        keys.insert(key, next).map_err(err)?;
        next += 1;
        new += 1;
    }
    Ok(new)
}

impl DriftStore for RedbTracking {
    fn put_drift_events(&self, events: &[DriftEventView]) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let new = put_drift_events_in(&tx, events)?;
        tx.commit().map_err(err)?;
        Ok(new)
    }

    fn drift_event(&self, id: u64) -> Result<Option<DriftEventView>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(DRIFT_EVENTS).map_err(err)?;
        match table.get(id).map_err(err)? {
            Some(v) => Ok(Some(with_progress(&tx, from_json(v.value())?)?)),
            None => Ok(None),
        }
    }

    fn drift_events(
        &self,
        filter: &DriftEventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DriftEventView>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(DRIFT_EVENTS).map_err(err)?;
        let mut out = Vec::new();
        if limit == 0 || after == u64::MAX {
            return Ok(out);
        }
        // A scan in id order; fine for the embedded default's fleet sizes (the MLflow adapter
        // filters on the server).
        for row in table.range(after + 1..).map_err(err)? {
            let (_, v) = row.map_err(err)?;
            let event: DriftEventView = from_json(v.value())?;
            if filter.matches(&event) {
                out.push(with_progress(&tx, event)?);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn decide_drift_event(
        &self,
        id: u64,
        decision: &Decision,
        feedback: &[FeedbackVerdict],
    ) -> Result<DecideOutcome, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let decided = {
            let table = tx.open_table(DRIFT_EVENTS).map_err(err)?;
            let mut event: DriftEventView = match table.get(id).map_err(err)? {
                Some(v) => from_json(v.value())?,
                None => return Ok(DecideOutcome::NotFound),
            };
            if event.status != DriftEventStatus::Pending {
                return Ok(DecideOutcome::AlreadyDecided(event));
            }
            event.status = decision.status;
            event.label = decision.label.clone();
            event.note = decision.note.clone();
            event.decided_by = Some(decision.by.clone());
            event.decided_unix_ms = Some(decision.unix_ms);
            event
        };
        let ids = append_feedback_in(&tx, &decided.device_id, feedback, decision.unix_ms)?;
        // The decision remembers its items: the queue forgets them once acknowledged.
        let mut decided = decided;
        decided.feedback = ids
            .into_iter()
            .zip(feedback)
            .map(|(id, verdict)| FeedbackItemState {
                id,
                verdict: verdict.clone(),
                progress: FeedbackProgress::Queued,
                reason: None,
                reported_unix_ms: None,
            })
            .collect();
        tx.open_table(DRIFT_EVENTS)
            .map_err(err)?
            .insert(id, to_json(&decided)?.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(DecideOutcome::Decided(decided))
    }

    fn append_feedback(
        &self,
        device_id: &str,
        verdicts: &[FeedbackVerdict],
        now_unix_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let ids = append_feedback_in(&tx, device_id, verdicts, now_unix_ms)?;
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    fn feedback_after(
        &self,
        device_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let acked = tx
            .open_table(FEEDBACK_STATE)
            .map_err(err)?
            .get(device_id)
            .map_err(err)?
            .map(|v| v.value().1)
            .unwrap_or(0);
        let from = after.max(acked);
        let mut out = Vec::new();
        if limit == 0 || from == u64::MAX {
            return Ok(out);
        }
        let queue = tx.open_table(FEEDBACK).map_err(err)?;
        for row in queue
            .range((device_id, from + 1)..=(device_id, u64::MAX))
            .map_err(err)?
        {
            let (_, v) = row.map_err(err)?;
            out.push(from_json(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn record_feedback_results(
        &self,
        device_id: &str,
        results: &[FeedbackResult],
    ) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let mut new = 0;
        {
            let last = tx
                .open_table(FEEDBACK_STATE)
                .map_err(err)?
                .get(device_id)
                .map_err(err)?
                .map_or(0, |v| v.value().0);
            let mut table = tx.open_table(FEEDBACK_RESULTS).map_err(err)?;
            for r in results {
                if r.id == 0 || r.id > last || table.get((device_id, r.id)).map_err(err)?.is_some()
                {
                    continue;
                }
                table
                    .insert((device_id, r.id), to_json(r)?.as_slice())
                    .map_err(err)?;
                new += 1;
            }
        }
        tx.commit().map_err(err)?;
        Ok(new)
    }

    fn ack_feedback(&self, device_id: &str, up_to: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let acked = {
            let mut state = tx.open_table(FEEDBACK_STATE).map_err(err)?;
            let (last, acked) = state
                .get(device_id)
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or((0, 0));
            let new_acked = acked.max(up_to.min(last));
            if new_acked > acked {
                state.insert(device_id, (last, new_acked)).map_err(err)?;
                let mut queue = tx.open_table(FEEDBACK).map_err(err)?;
                let done: Vec<u64> = queue
                    .range((device_id, acked + 1)..=(device_id, new_acked))
                    .map_err(err)?
                    .map(|row| row.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()
                    .map_err(err)?;
                for id in done {
                    queue.remove((device_id, id)).map_err(err)?;
                }
            }
            new_acked
        };
        tx.commit().map_err(err)?;
        Ok(acked)
    }
}
