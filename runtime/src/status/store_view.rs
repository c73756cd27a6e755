//! What a state database holds, for `tinylcm status` when the service is not running.
//!
//! Only the counters, the names of the component states and the newest events are read:
//! enough to see what the device has done (frames, drift onsets, incidents) without
//! decoding the KNN or the detectors. Events that do not decode as
//! [`RuntimeEvent`] (damaged, or written by a newer runtime) are listed by sequence number
//! and size instead of failing the whole view.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::autonomy::RuntimeEvent;
use crate::autonomy::persist::{DRIFT_COUNTER, FRAMES_COUNTER, INCIDENTS_COUNTER};
use crate::state::{StateError, Store};

/// The contents of a state database, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreView {
    /// The database file.
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u32,
    /// Frames processed (counter `frames`).
    pub frames: u64,
    /// Drift onsets (counter `drift.onsets`).
    pub drift_onsets: u64,
    /// Incidents opened (counter `drift.incidents`).
    pub drift_incidents: u64,
    /// Every counter.
    pub counters: BTreeMap<String, u64>,
    /// Names of the component states (`knn`, `drift`, `autonomy`, ...).
    pub states: Vec<String>,
    /// Oldest and newest kept event sequence numbers.
    pub event_bounds: Option<(u64, u64)>,
    /// The newest events, oldest first.
    pub events: Vec<EventView>,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// Sequence number.
    pub seq: u64,
    /// Encoded size, bytes.
    pub bytes: usize,
    /// The event, when it decodes.
    pub event: Option<RuntimeEvent>,
    /// Why it does not.
    pub error: Option<String>,
}

impl StoreView {
    /// Reads the view of `store` with its newest `last_events` events.
    pub fn read(store: &Store, last_events: usize) -> Result<Self, StateError> {
        let counters = store.counters()?;
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
        let event_bounds = store.event_bounds()?;
        let events = match event_bounds {
            Some((first, last)) if last_events > 0 => {
                let after = last
                    .saturating_sub(last_events as u64)
                    .max(first.saturating_sub(1));
                store
                    .events_after_raw(after, last_events)?
                    .into_iter()
                    .map(|(seq, bytes)| {
                        let decoded = store.decode_event::<RuntimeEvent>(seq, &bytes);
                        EventView {
                            seq,
                            bytes: bytes.len(),
                            error: decoded.as_ref().err().map(ToString::to_string),
                            event: decoded.ok(),
                        }
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(StoreView {
            path: store.path().to_path_buf(),
            schema_version: store.schema_version()?,
            frames: counter(FRAMES_COUNTER),
            drift_onsets: counter(DRIFT_COUNTER),
            drift_incidents: counter(INCIDENTS_COUNTER),
            states: store.state_names()?,
            event_bounds,
            events,
            counters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autonomy::EventKind;
    use crate::state::DurabilityPolicy;

    #[test]
    fn counters_states_and_the_newest_events_including_undecodable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path().join("state.redb"), DurabilityPolicy::default()).unwrap();
        let empty = StoreView::read(&store, 20).unwrap();
        assert_eq!((empty.frames, empty.drift_onsets), (0, 0));
        assert!(empty.events.is_empty() && empty.event_bounds.is_none());

        store.increment(FRAMES_COUNTER, 600).unwrap();
        store.increment(DRIFT_COUNTER, 3).unwrap();
        store.put_state("knn", &vec![1u8, 2]).unwrap();
        for i in 0..30u64 {
            let closed = RuntimeEvent {
                unix_ms: i,
                kind: EventKind::IncidentClosed {
                    incident: i,
                    opened_at: 1,
                    closed_at: 2,
                    detectors: vec!["cusum".into()],
                },
            };
            store.append_event(&closed).unwrap();
        }
        // Not a RuntimeEvent: the variant index is out of range.
        store.append_event(&(5u64, 99u32)).unwrap();
        store.flush().unwrap();

        let v = StoreView::read(&store, 20).unwrap();
        assert_eq!((v.frames, v.drift_onsets, v.drift_incidents), (600, 3, 0));
        assert_eq!(v.states, ["knn"]);
        assert_eq!(v.event_bounds, Some((1, 31)));
        assert_eq!(v.events.len(), 20);
        assert_eq!(v.events[0].seq, 12);
        let bad = v.events.last().unwrap();
        assert_eq!(bad.seq, 31);
        assert!(bad.event.is_none() && bad.bytes > 0);
        assert!(
            bad.error.as_deref().unwrap().contains("event 31"),
            "{bad:?}"
        );
        assert!(v.events[..19].iter().all(|e| e.event.is_some()));
        // Fewer events than asked for.
        assert_eq!(StoreView::read(&store, 100).unwrap().events.len(), 31);
        assert!(StoreView::read(&store, 0).unwrap().events.is_empty());
    }
}
