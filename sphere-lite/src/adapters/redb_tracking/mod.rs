//! The embedded `Tracking` adapter: one redb file (`<data>/sphere.redb`).
//!
//! Why: the embedded default must run alone with no other service and survive kill -9; redb
//! gives ACID transactions in one file with a small footprint (the runtime uses it too). Values
//! are JSON so records can grow fields without a migration.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

use tinylcm_protocol::api::{
    DriftEventStatus, DriftEventView, FeedbackItem, FeedbackItemState, FeedbackOutcome,
    FeedbackProgress, FeedbackResult, FeedbackVerdict,
};
use tinylcm_protocol::datahub::PredictionView;

use super::series::{MAX_SCAN_POINTS, thin};
use crate::ports::{
    ConfigLayer, DecideOutcome, Decision, DeviceRecord, DeviceSettings, DriftEventFilter,
    EnrollOutcome, EnrollmentKey, OperatorToken, PackageRecord, PredictionCursor, PredictionFilter,
    Principal, Recorded, ReleaseRecord, Rollout, SecretHash, SessionRecord, StoreError,
};

mod access;
mod config;
mod credentials;
mod devices;
mod drift;
mod learning;
mod metrics;
mod packages;
mod predictions;
mod releases;
mod sessions;

/// device id → JSON [`DeviceRecord`].
const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// token hash → JSON [`Principal`].
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// `<device>/<package>` → JSON [`PackageRecord`].
const PACKAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("packages");
/// `<accepted ms, 20 digits>/<device>/<package>` → () for accepted, unprocessed packages.
const PENDING: TableDefinition<&str, ()> = TableDefinition::new("pending");
/// server id → JSON [`DriftEventView`].
const DRIFT_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("drift_events");
/// (device, event_seq) → server id: the idempotency index of reported events. The first part
/// is `<device>/<epoch>` for events that carry the device database's epoch (a device id has
/// no `/`, so the two forms never meet), and the bare device id for events of devices older
/// than epochs, so databases written before epochs keep their keys without a migration.
const DRIFT_EVENT_KEYS: TableDefinition<(&str, u64), u64> =
    TableDefinition::new("drift_event_keys");
/// (device, feedback id) → JSON [`FeedbackItem`], unacknowledged items only.
const FEEDBACK: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("feedback");
/// device → (last feedback id given, acknowledged up to).
const FEEDBACK_STATE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("feedback_state");
/// (device, feedback id) → JSON [`FeedbackResult`]: what the device did with the item (the
/// first report stands). Created on open, so older databases gain it without a migration.
const FEEDBACK_RESULTS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("feedback_results");
/// device id → JSON [`DeviceSettings`] (absent: defaults).
const DEVICE_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("device_settings");
/// (name, version) → JSON [`ReleaseRecord`].
const RELEASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("releases");
/// group → JSON [`Rollout`].
const ROLLOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("rollouts");
/// (device, release name, version) → when the device was first served it while assigned it.
/// Created on open, so older databases gain it without a migration.
const RELEASE_GRANTS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("release_grants");
/// scope (`all` or a group) → JSON [`ConfigLayer`].
const SCOPE_CONFIGS: TableDefinition<&str, &[u8]> = TableDefinition::new("scope_configs");
/// (device, key, unix ms, package) → value: metric points; the package in the key makes a
/// re-processed package overwrite its own points instead of adding new ones.
const METRIC_POINTS: TableDefinition<(&str, &str, u64, &str), f64> =
    TableDefinition::new("metric_points");
/// (device, key) → time of its newest point: the keys a device has sent.
const METRIC_KEYS: TableDefinition<(&str, &str), u64> = TableDefinition::new("metric_keys");
/// `<device time ms, 20 digits>/<blob key>` → JSON [`PredictionView`]: the Data Hub's index,
/// in listing order (read backwards for newest first). Created on open, so databases of older
/// versions gain it without a migration.
const PREDICTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("predictions");

/// redb's page cache (reads, and a tenth of it for a transaction's write buffer). Why capped:
/// redb's default is 1 GiB, which grows with every page the server ever touched; the pages
/// read again (devices, tokens, pending packages, the newest metric points) fit in a few MB,
/// and the write buffer (13 MiB) holds the pages a processing batch of a storm of 16 to 32
/// devices dirties (about one per device and metric key) without writing them out early.
const CACHE_BYTES: usize = 128 << 20;

/// Tracking in a redb database.
pub struct RedbTracking {
    db: Database,
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::new("redb", e.into())
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::new("redb", format!("encode: {e}")))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::new("redb", format!("corrupt record: {e}")))
}

fn package_key(device_id: &str, package_id: &str) -> String {
    format!("{device_id}/{package_id}")
}

fn prediction_key(unix_ms: u64, key: &str) -> String {
    format!("{unix_ms:020}/{key}")
}

fn pending_key(record: &PackageRecord) -> String {
    format!(
        "{:020}/{}/{}",
        record.accepted_unix_ms, record.device_id, record.package_id
    )
}

impl RedbTracking {
    /// Open (or create) the database at `path` and make sure all tables exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| {
                StoreError::new(
                    "redb",
                    format!(
                        "cannot open {}: {e} (is another sphere-lite using the same --data?)",
                        path.display()
                    ),
                )
            })?;
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(DEVICES).map_err(err)?;
            tx.open_table(TOKENS).map_err(err)?;
            credentials::migrate(&tx)?;
            tx.open_table(PACKAGES).map_err(err)?;
            tx.open_table(PENDING).map_err(err)?;
            tx.open_table(DRIFT_EVENTS).map_err(err)?;
            tx.open_table(DRIFT_EVENT_KEYS).map_err(err)?;
            tx.open_table(FEEDBACK).map_err(err)?;
            tx.open_table(FEEDBACK_STATE).map_err(err)?;
            tx.open_table(FEEDBACK_RESULTS).map_err(err)?;
            tx.open_table(DEVICE_SETTINGS).map_err(err)?;
            tx.open_table(RELEASES).map_err(err)?;
            tx.open_table(ROLLOUTS).map_err(err)?;
            tx.open_table(RELEASE_GRANTS).map_err(err)?;
            tx.open_table(SCOPE_CONFIGS).map_err(err)?;
            tx.open_table(METRIC_POINTS).map_err(err)?;
            tx.open_table(METRIC_KEYS).map_err(err)?;
            tx.open_table(PREDICTIONS).map_err(err)?;
            tx.open_table(learning::LEARNING).map_err(err)?;
            tx.open_table(learning::LEARNING_KEYS).map_err(err)?;
            tx.open_table(learning::CLASS_RENAMES).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(RedbTracking { db })
    }

    /// Every value of a string-keyed JSON table, in key order.
    fn all_json<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(def).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            out.push(from_json(row.map_err(err)?.1.value())?);
        }
        Ok(out)
    }

    fn read_device(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        device_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        match table.get(device_id).map_err(err)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }
}

/// Brings the progress of `event`'s decision feedback up to date inside a read transaction:
/// delivered up to the device's ack watermark, applied or refused as the device reported.
fn with_progress(
    tx: &redb::ReadTransaction,
    mut event: DriftEventView,
) -> Result<DriftEventView, StoreError> {
    if event.feedback.is_empty() {
        return Ok(event);
    }
    let device = event.device_id.as_str();
    let acked = tx
        .open_table(FEEDBACK_STATE)
        .map_err(err)?
        .get(device)
        .map_err(err)?
        .map(|v| v.value().1)
        .unwrap_or(0);
    let results = tx.open_table(FEEDBACK_RESULTS).map_err(err)?;
    for state in &mut event.feedback {
        progress(state, acked, |id| {
            results
                .get((device, id))
                .map_err(err)?
                .map(|v| from_json::<FeedbackResult>(v.value()))
                .transpose()
        })?;
    }
    Ok(event)
}

/// Sets `state`'s progress from the ack watermark and the device's result (`result(id)`).
pub(crate) fn progress(
    state: &mut FeedbackItemState,
    acked: u64,
    result: impl FnOnce(u64) -> Result<Option<FeedbackResult>, StoreError>,
) -> Result<(), StoreError> {
    match result(state.id)? {
        Some(r) => {
            state.progress = match r.outcome {
                FeedbackOutcome::Applied => FeedbackProgress::Applied,
                FeedbackOutcome::Refused => FeedbackProgress::Refused,
            };
            state.reason = r.reason;
            state.reported_unix_ms = Some(r.unix_ms);
        }
        None if state.id <= acked => state.progress = FeedbackProgress::Delivered,
        None => state.progress = FeedbackProgress::Queued,
    }
    Ok(())
}

/// Queue `verdicts` for `device_id` inside `tx`; returns the ids given.
fn append_feedback_in(
    tx: &redb::WriteTransaction,
    device_id: &str,
    verdicts: &[FeedbackVerdict],
    now_unix_ms: u64,
) -> Result<Vec<u64>, StoreError> {
    let mut state = tx.open_table(FEEDBACK_STATE).map_err(err)?;
    let (mut last, acked) = state
        .get(device_id)
        .map_err(err)?
        .map(|v| v.value())
        .unwrap_or((0, 0));
    let mut queue = tx.open_table(FEEDBACK).map_err(err)?;
    let mut ids = Vec::with_capacity(verdicts.len());
    for verdict in verdicts {
        last += 1;
        let item = FeedbackItem {
            id: last,
            created_unix_ms: now_unix_ms,
            verdict: verdict.clone(),
        };
        queue
            .insert((device_id, last), to_json(&item)?.as_slice())
            .map_err(err)?;
        ids.push(last);
    }
    state.insert(device_id, (last, acked)).map_err(err)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::prelude::*;

    fn device(id: &str, token: u8) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            name: None,
            hardware: None,
            token_hash: [token; 32],
            enrolled_unix_ms: 1,
            last_seen_unix_ms: 1,
            packages: 0,
        }
    }

    #[test]
    fn enrollment_keys_are_counted_and_packages_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let t = RedbTracking::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(
            t.enroll([1; 32], &device("a", 9), 10).unwrap(),
            EnrollOutcome::UnknownKey
        );
        t.add_enrollment_key(&EnrollmentKey {
            id: "key-1".into(),
            name: None,
            key_hash: [1; 32],
            remaining: Some(1),
            used: 0,
            created_unix_ms: 1,
            expires_unix_ms: Some(20),
            revoked_unix_ms: None,
        })
        .unwrap();
        assert_eq!(
            t.enroll([1; 32], &device("a", 9), 10).unwrap(),
            EnrollOutcome::Enrolled
        );
        assert_eq!(
            t.enroll([1; 32], &device("b", 8), 10).unwrap(),
            EnrollOutcome::KeyUsedUp
        );
        assert_eq!(
            t.token_owner(&[9; 32]).unwrap(),
            Some(Principal::Device("a".into()))
        );
        assert!(t.device("b").unwrap().is_none());

        let rec = PackageRecord {
            device_id: "a".into(),
            package_id: "p1".into(),
            raw_key: "incoming/a/p1.tar".into(),
            accepted_unix_ms: 5,
            processed_unix_ms: None,
            failed: None,
            problems: vec![],
        };
        assert_eq!(t.record_accepted(&rec).unwrap(), Recorded::New);
        assert_eq!(t.record_accepted(&rec).unwrap(), Recorded::AlreadyKnown);
        assert_eq!(t.device("a").unwrap().unwrap().packages, 1);
        assert_eq!(t.unprocessed().unwrap(), vec![rec.clone()]);
        assert_eq!(t.unprocessed_count().unwrap(), 1);
        t.mark_processed("a", "p1", 7, None, &[]).unwrap();
        assert!(t.unprocessed().unwrap().is_empty());
        assert_eq!(t.unprocessed_count().unwrap(), 0);
        assert_eq!(
            t.package("a", "p1").unwrap().unwrap().processed_unix_ms,
            Some(7)
        );
    }

    fn event(device: &str, seq: u64, detector: &str, unix_ms: u64) -> DriftEventView {
        DriftEventView {
            id: 0,
            device_id: device.into(),
            package_id: "p".into(),
            event_seq: seq,
            epoch: None,
            incident: 1,
            detector: detector.into(),
            statistic: 2.0,
            threshold: 1.0,
            magnitude: 0.5,
            sample_id: 10,
            unix_ms,
            received_unix_ms: 1,
            samples: vec![],
            status: DriftEventStatus::Pending,
            label: None,
            note: None,
            decided_by: None,
            decided_unix_ms: None,
            feedback: Vec::new(),
            predicted: None,
            top_k: Vec::new(),
        }
    }

    #[test]
    fn drift_events_are_idempotent_filtered_paginated_and_decided_once() {
        let dir = tempfile::tempdir().unwrap();
        let t = RedbTracking::open(&dir.path().join("s.redb")).unwrap();
        let batch = [
            event("a", 1, "adwin", 100),
            event("a", 2, "cusum", 200),
            event("b", 1, "adwin", 300),
        ];
        assert_eq!(t.put_drift_events(&batch).unwrap(), 3);
        assert_eq!(t.put_drift_events(&batch).unwrap(), 0);
        assert_eq!(
            t.put_drift_events(&[event("a", 3, "adwin", 400)]).unwrap(),
            1
        );
        let all = t
            .drift_events(&DriftEventFilter::default(), 0, 100)
            .unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let adwin = DriftEventFilter {
            detector: Some("adwin".into()),
            ..Default::default()
        };
        let page = t.drift_events(&adwin, 0, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 3]);
        let page = t.drift_events(&adwin, 3, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [4]);
        let window = DriftEventFilter {
            device: Some("a".into()),
            since: Some(200),
            until: Some(400),
            ..Default::default()
        };
        assert_eq!(t.drift_events(&window, 0, 10).unwrap().len(), 1);

        let decision = Decision {
            status: DriftEventStatus::Rejected,
            label: None,
            note: Some("wind".into()),
            by: "alice".into(),
            unix_ms: 9,
        };
        let verdict = FeedbackVerdict::Drift {
            incident: None,
            event: Some(1),
            verdict: tinylcm_protocol::api::DriftVerdict::FalseAlarm,
        };
        let DecideOutcome::Decided(done) = t
            .decide_drift_event(1, &decision, std::slice::from_ref(&verdict))
            .unwrap()
        else {
            panic!("not decided")
        };
        assert_eq!(done.decided_by.as_deref(), Some("alice"));
        assert!(matches!(
            t.decide_drift_event(1, &decision, std::slice::from_ref(&verdict))
                .unwrap(),
            DecideOutcome::AlreadyDecided(e) if e.status == DriftEventStatus::Rejected
        ));
        assert_eq!(
            t.decide_drift_event(99, &decision, &[]).unwrap(),
            DecideOutcome::NotFound
        );
        // One decision, one feedback item, for device a only.
        assert_eq!(t.feedback_after("a", 0, 10).unwrap().len(), 1);
        assert!(t.feedback_after("b", 0, 10).unwrap().is_empty());
    }

    #[test]
    fn feedback_ids_increase_per_device_and_acks_are_final_and_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let t = RedbTracking::open(&dir.path().join("s.redb")).unwrap();
        let v = |id| FeedbackVerdict::Sample {
            id,
            label: None,
            reject: true,
        };
        assert_eq!(t.append_feedback("a", &[v(1), v(2)], 5).unwrap(), [1, 2]);
        assert_eq!(t.append_feedback("b", &[v(3)], 5).unwrap(), [1]);
        assert_eq!(t.append_feedback("a", &[v(4)], 6).unwrap(), [3]);
        assert_eq!(t.feedback_after("a", 0, 2).unwrap().len(), 2);
        assert_eq!(t.feedback_after("a", 2, 10).unwrap()[0].id, 3);
        // Acking beyond the last id clamps: later items are not pre-acknowledged.
        assert_eq!(t.ack_feedback("a", 100).unwrap(), 3);
        assert!(t.feedback_after("a", 0, 10).unwrap().is_empty());
        assert_eq!(t.append_feedback("a", &[v(5)], 7).unwrap(), [4]);
        assert_eq!(t.feedback_after("a", 0, 10).unwrap()[0].id, 4);
        // Acks never move backwards; other devices are untouched.
        assert_eq!(t.ack_feedback("a", 1).unwrap(), 3);
        assert_eq!(t.feedback_after("b", 0, 10).unwrap().len(), 1);
        assert_eq!(t.ack_feedback("nobody", 5).unwrap(), 0);
    }
}
