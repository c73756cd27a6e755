//! The S3 requests an upload and its processing cost on MLflow + S3, counted by the stores'
//! own counters ([`S3Blobs::requests`]): on a small host every S3 request is SeaweedFS CPU,
//! so a request that carries no information (a record read again that the server has just
//! read or written) is a cost that these tests keep out.

use std::sync::Arc;

use sphere_lite::adapters::{MlflowTracking, S3Blobs};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::{BlobKey, Blobs, PackageRecord, Recorded};
use tinylcm_protocol::api::UploadOutcome;
use tinylcm_protocol::package::{FileKind, PackageBuilder};

#[path = "support/backend.rs"]
mod backend;

use backend::Backend;

/// A replica over `backend`'s MLflow and bucket whose two S3 stores count their requests:
/// (the service, its tracking, its blobs, its package records).
fn replica(backend: &Backend) -> (Sphere, Arc<MlflowTracking>, Arc<S3Blobs>, Arc<S3Blobs>) {
    let s3 = backend.s3_settings().unwrap();
    let blobs = Arc::new(S3Blobs::open(s3).unwrap());
    let records = Arc::new(S3Blobs::open(&s3.tracking()).unwrap());
    let tracking = Arc::new(
        MlflowTracking::open(backend.mlflow_settings().unwrap())
            .unwrap()
            .with_package_store(records.clone()),
    );
    let sphere = Sphere::new(tracking.clone(), blobs.clone() as Arc<dyn Blobs>);
    (sphere, tracking, blobs, records)
}

/// A package of two files (metrics and logs), as the runtime sends them.
fn package(device: &str, id: &str) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1_764_147_600_000).unwrap();
    b.add(
        "metrics.json",
        FileKind::Metrics,
        br#"{"frames_total": 5}"#.to_vec(),
    )
    .unwrap();
    b.add(
        "logs.jsonl",
        FileKind::Logs,
        b"{\"unix_ms\": 1764147600000, \"level\": \"INFO\", \"message\": \"m\"}\n".to_vec(),
    )
    .unwrap();
    b.finish().unwrap()
}

const PACKAGES: usize = 6;

/// Fails when processing reads a package's record again (before: once to prepare it and once
/// to mark it, two GETs per package) or when an upload reads it twice (before: the duplicate
/// check and again inside the record's write).
#[test]
fn processing_reads_no_package_record_and_an_upload_reads_it_once() {
    let Some(backend) = Backend::mlflow("s3_requests_jobs") else {
        return;
    };
    let (sphere, _tracking, blobs, records) = replica(&backend);
    let device = sphere_lite::test_support::enrolled(&sphere, None).device_id;
    let ids: Vec<String> = (0..PACKAGES).map(|n| format!("p{n}")).collect();

    let before = records.requests();
    for id in &ids {
        let answer = sphere
            .accept_upload(&device, &package(&device, id))
            .unwrap();
        assert_eq!(answer.outcome, UploadOutcome::Accepted);
    }
    let upload = records.requests() - before;
    // Per upload: the duplicate check's GET; the pending copy, index entry and record PUTs.
    assert_eq!(
        (upload.get, upload.put, upload.delete),
        (PACKAGES as u64, 3 * PACKAGES as u64, 0),
        "package record requests of {PACKAGES} uploads: {upload:?}"
    );

    // Processed as the server does after the answers: by ids, in one batch.
    let (records_before, blobs_before) = (records.requests(), blobs.requests());
    let jobs: Vec<(String, String)> = ids.iter().map(|id| (device.clone(), id.clone())).collect();
    assert_eq!(sphere.process_batch(&jobs).unwrap(), PACKAGES);
    // Per package: the record written as processed, the pending copy deleted; no GET. (Not
    // the listings: the tracking adapter polls announcements of token changes once a second.)
    let marks = records.requests() - records_before;
    assert_eq!(
        (marks.get, marks.put, marks.delete),
        (0, PACKAGES as u64, PACKAGES as u64),
        "package record requests of processing {PACKAGES} packages: {marks:?}"
    );
    // Blobs: each raw TAR read, its two files and its logs' Data Hub index written; the
    // device's report read and written once for the batch.
    let files = blobs.requests() - blobs_before;
    assert_eq!(files.get, PACKAGES as u64 + 1, "{files:?}");
    assert_eq!(files.put, 3 * PACKAGES as u64 + 1, "{files:?}");

    // The marks are whole records: processed, nothing pending, acceptance time kept.
    let tracking = backend.tracking();
    assert!(tracking.unprocessed().unwrap().is_empty());
    for id in &ids {
        let record = tracking.package(&device, id).unwrap().unwrap();
        assert!(record.processed_unix_ms.is_some() && record.failed.is_none());
        assert!(record.accepted_unix_ms > 0);
        assert_eq!(record.raw_key, format!("incoming/{device}/{id}.tar"));
        assert_eq!(
            tracking
                .packages_newest_first(&device, None, PACKAGES)
                .unwrap()
                .len(),
            PACKAGES
        );
    }
    // Re-sent after processing: a duplicate, and nothing pending again.
    let again = sphere
        .accept_upload(&device, &package(&device, "p0"))
        .unwrap();
    assert_eq!(again.outcome, UploadOutcome::Duplicate);
    assert!(tracking.unprocessed().unwrap().is_empty());
}

/// Fails when the sweep of pending packages reads each record again after its listing read
/// it (before: three GETs per package, now one), and checks that a package another replica
/// accepted, left pending and then processed itself is not marked twice by the sweep's stale
/// listing in a way that loses its record.
#[test]
fn the_pending_sweep_reads_each_record_once() {
    let Some(backend) = Backend::mlflow("s3_requests_sweep") else {
        return;
    };
    let (accepting, ..) = replica(&backend);
    let (sweeping, _tracking, _blobs, records) = replica(&backend);
    let device = sphere_lite::test_support::enrolled(&accepting, None).device_id;
    for n in 0..PACKAGES {
        let id = format!("s{n}");
        accepting
            .accept_upload(&device, &package(&device, &id))
            .unwrap();
    }
    // The accepting replica stopped before processing: another sweeps its pending packages.
    let before = records.requests();
    assert_eq!(sweeping.process_pending().unwrap(), PACKAGES);
    // One listing of the pending copies and a GET of each one's record, then a PUT and a
    // DELETE per mark.
    let sweep = records.requests() - before;
    assert_eq!(
        (sweep.get, sweep.put, sweep.delete),
        (PACKAGES as u64, PACKAGES as u64, PACKAGES as u64),
        "package record requests of sweeping {PACKAGES} pending packages: {sweep:?}"
    );
    assert!(sweep.list >= 1, "{sweep:?}");
    assert_eq!(sweeping.pending_count().unwrap(), 0);
    // The accepting replica comes back with its jobs still queued: they are processed again
    // (idempotently), still one record each, nothing pending.
    let jobs: Vec<(String, String)> = (0..PACKAGES)
        .map(|n| (device.clone(), format!("s{n}")))
        .collect();
    accepting.process_batch(&jobs).unwrap();
    let tracking = backend.tracking();
    assert!(tracking.unprocessed().unwrap().is_empty());
    assert_eq!(tracking.devices().unwrap()[0].packages, PACKAGES as u64);
}

/// Monitoring's gauges (`/metrics`: devices, packages pending) cost one MLflow search and one
/// listing of the pending copies however long the backlog: scrapers poll them every few
/// seconds, hardest while packages pile up. Fails when the pending count reads each pending
/// record (a GET per package) or the device count lists each device's records.
#[test]
fn the_fleet_gauges_read_no_package_record() {
    let Some(backend) = Backend::mlflow("s3_requests_gauges") else {
        return;
    };
    let (sphere, tracking, _blobs, records) = replica(&backend);
    let device = sphere_lite::test_support::enrolled(&sphere, None).device_id;
    for n in 0..PACKAGES {
        sphere
            .accept_upload(&device, &package(&device, &format!("g{n}")))
            .unwrap();
    }
    let (requests, calls) = (records.requests(), tracking.mlflow_calls());
    assert_eq!(sphere.fleet_gauges().unwrap(), (1, PACKAGES));
    let gauges = records.requests() - requests;
    assert_eq!(
        (gauges.get, gauges.list),
        (0, 1),
        "package record requests of the gauges: {gauges:?}"
    );
    assert_eq!(tracking.mlflow_calls() - calls, 1, "one experiments search");
}

/// The record's write is conditional: a second acceptance of a package whose record exists
/// (a replica race, a late re-send) is `AlreadyKnown` without overwriting the record, and
/// leaves no pending copy of a package that was processed. Fails if the record is written
/// unconditionally (its processed mark would be lost and the package processed again).
#[test]
fn a_second_acceptance_keeps_the_first_record() {
    let Some(backend) = Backend::mlflow("s3_requests_again") else {
        return;
    };
    let (sphere, ..) = replica(&backend);
    let device = sphere_lite::test_support::enrolled(&sphere, None).device_id;
    let tracking = backend.tracking();
    let record = PackageRecord {
        device_id: device.clone(),
        package_id: "a".into(),
        raw_key: format!("incoming/{device}/a.tar"),
        accepted_unix_ms: 10,
        processed_unix_ms: None,
        failed: None,
        problems: vec![],
    };
    assert_eq!(tracking.record_accepted(&record).unwrap(), Recorded::New);
    let later = PackageRecord {
        accepted_unix_ms: 20,
        ..record.clone()
    };
    // Pending: the second writer's copy stays pending, the first record stands.
    assert_eq!(
        tracking.record_accepted(&later).unwrap(),
        Recorded::AlreadyKnown
    );
    assert_eq!(
        tracking.package(&device, "a").unwrap(),
        Some(record.clone())
    );
    assert_eq!(tracking.unprocessed().unwrap().len(), 1);
    // Processed: a late second acceptance changes nothing and leaves nothing pending.
    tracking
        .mark_processed(&device, "a", 30, None, &[])
        .unwrap();
    assert_eq!(
        tracking.record_accepted(&later).unwrap(),
        Recorded::AlreadyKnown
    );
    let stored = tracking.package(&device, "a").unwrap().unwrap();
    assert_eq!(
        (stored.accepted_unix_ms, stored.processed_unix_ms),
        (10, Some(30))
    );
    assert!(tracking.unprocessed().unwrap().is_empty());
    assert_eq!(tracking.devices().unwrap()[0].packages, 1);
}

/// `put_if_absent` stores a new key and refuses (without storing) an existing one.
#[test]
fn a_conditional_put_stores_only_a_new_key() {
    let Some(backend) = Backend::mlflow("s3_requests_put_if_absent") else {
        return;
    };
    let store = S3Blobs::open(backend.s3_settings().unwrap()).unwrap();
    let key = BlobKey::new("once/k.json").unwrap();
    assert!(store.put_if_absent(&key, b"first").unwrap());
    assert!(!store.put_if_absent(&key, b"second").unwrap());
    assert_eq!(store.get(&key).unwrap().unwrap(), b"first");
}

/// Fails when the sweep for packages left pending too long reads the records of young ones
/// (before: every pending record was read, then filtered by age): during a backlog each
/// replica's sweep read hundreds of records every half minute.
#[test]
fn the_stale_sweep_reads_only_the_records_of_stale_packages() {
    let Some(backend) = Backend::mlflow("s3_requests_stale") else {
        return;
    };
    let (accepting, ..) = replica(&backend);
    let (sweeping, _tracking, _blobs, records) = replica(&backend);
    let device = sphere_lite::test_support::enrolled(&accepting, None).device_id;
    for n in 0..PACKAGES {
        let id = format!("y{n}");
        accepting
            .accept_upload(&device, &package(&device, &id))
            .unwrap();
    }
    let now = sphere_lite::domain::now_unix_ms();
    // Young: none is past a minute, and no record is read to find that out.
    let before = records.requests();
    assert_eq!(sweeping.process_stale_pending(60_000, now).unwrap(), 0);
    let young = records.requests() - before;
    assert_eq!(young.get, 0, "{young:?}");
    // An hour on, all are stale: each record read once, each package processed.
    let before = records.requests();
    assert_eq!(
        sweeping
            .process_stale_pending(60_000, now + 3_600_000)
            .unwrap(),
        PACKAGES
    );
    let stale = records.requests() - before;
    assert_eq!(stale.get, PACKAGES as u64, "{stale:?}");
    assert_eq!(sweeping.pending_count().unwrap(), 0);
}

/// Fails before this change: with replicas sharing the bucket, every upload listed all the
/// device's stored blobs for its quota (two listings an upload, each costing the S3 server
/// time per key the device ever stored). Now a listing's figure is trusted for a minute plus
/// what this replica wrote since; a device that needs room still has it made (the quota test
/// in `integrity.rs` runs on this backend too).
#[test]
fn uploads_within_the_quota_list_the_devices_blobs_once_a_minute() {
    let Some(backend) = Backend::mlflow("s3_requests_quota") else {
        return;
    };
    let (sphere, _tracking, blobs, _records) = replica(&backend);
    let sphere = sphere.with_storage(&sphere_lite::domain::storage::StorageSettings::default());
    let device = sphere_lite::test_support::enrolled(&sphere, None).device_id;
    let before = blobs.requests();
    for n in 0..PACKAGES {
        let id = format!("q{n}");
        let answer = sphere
            .accept_upload(&device, &package(&device, &id))
            .unwrap();
        assert_eq!(answer.outcome, UploadOutcome::Accepted);
        sphere.process(&device, &id).unwrap();
    }
    let used = blobs.requests() - before;
    // The first upload's listing of the raw TARs and of the unpacked files; none after.
    assert_eq!(used.list, 2, "{PACKAGES} uploads under the quota: {used:?}");
}
