//! Data integrity on the embedded default and again on MLflow + S3 (`support::backend`): what a
//! device sends once stays as it was first stored, a device whose state database was
//! recreated is not taken for a device repeating itself, a burst of requests is not a burst of
//! durable writes, and stored packages are bounded by age and by a per-device quota.

use std::time::Duration;

use serde_json::json;
use sphere_lite::domain::storage::StorageSettings;
use sphere_lite::domain::{DomainError, Sphere, now_unix_ms};
use tinylcm_protocol::api::{DriftEventQuery, UploadOutcome};
use tinylcm_protocol::package::FileKind;

#[path = "support/backend.rs"]
mod backend;
#[path = "support/drift.rs"]
mod drift;

use backend::each_backend;

/// Enroll a device directly through the domain: (device id, token).
fn enroll(sphere: &Sphere) -> (String, String) {
    let r = sphere_lite::test_support::enrolled(sphere, None);
    (r.device_id, r.token)
}

/// Upload `package` as `device` and process it as the background worker would.
fn deliver(sphere: &Sphere, device: &str, package: &[u8]) -> UploadOutcome {
    let answer = sphere.accept_upload(device, package).unwrap();
    sphere.process(device, &answer.package_id).unwrap();
    answer.outcome
}

/// Fails before this change: every authenticated device request wrote the device's record
/// (an fsync'ed redb commit, an MLflow call), so the stored last-seen time followed every
/// request of a burst. Now the first request of an interval writes it, the rest of the burst
/// only refreshes the in-memory value the listings show.
#[test]
fn a_burst_of_device_requests_writes_last_seen_once() {
    each_backend("a_burst_of_device_requests_writes_last_seen_once", |b| {
        let sphere = b.open().with_last_seen_interval(3_600_000);
        let (device, token) = enroll(&sphere);
        let bearer = format!("Bearer {token}");
        sphere.authorize_device(&device, Some(&bearer)).unwrap();
        let after_first = now_unix_ms();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(2));
            sphere.authorize_device(&device, Some(&bearer)).unwrap();
        }
        let shown = sphere.device_summary(&device).unwrap().unwrap();
        let listed = sphere.list_devices().unwrap();
        drop(sphere);
        let stored = b.tracking().device(&device).unwrap().unwrap();
        assert!(
            stored.last_seen_unix_ms <= after_first,
            "the burst wrote the device's record again"
        );
        assert!(
            shown.last_seen_unix_ms > stored.last_seen_unix_ms,
            "the dashboard's last-seen time is not fresh: {} vs stored {}",
            shown.last_seen_unix_ms,
            stored.last_seen_unix_ms
        );
        assert_eq!(listed.devices[0].last_seen_unix_ms, shown.last_seen_unix_ms);
    });
}

/// A drift report `seq` with `embedding`, its samples named `samples`.
fn report_with(seq: u64, embedding: &[f32], samples: &[&str]) -> serde_json::Value {
    let mut r = drift::report(seq, "page-hinkley-distance", 1_764_147_600_000, samples);
    r["embedding"] = json!(embedding);
    r
}

/// The exported embedding lines of `device`: (event id, embedding).
fn exported(sphere: &Sphere, device: &str) -> Vec<(u64, Vec<f32>)> {
    let mut lines = Vec::new();
    let query = tinylcm_protocol::datahub::EmbeddingExportQuery {
        device: Some(device.to_owned()),
        ..Default::default()
    };
    sphere
        .export_embeddings(&query, |l| {
            lines.push((l.event_id, l.embedding));
            true
        })
        .unwrap();
    lines
}

/// Fails before this change: a later package carrying an event number the server already
/// stored overwrote that event's embedding (the blob was keyed by device and event number and
/// written on every package), so the embedding exported for an event an operator had already
/// validated was not the one the review saw. Now an event's blobs are written once: the same
/// values again are accepted silently, different ones are ignored and named as a problem of
/// the later package.
#[test]
fn a_later_package_does_not_overwrite_a_validated_events_blobs() {
    each_backend(
        "a_later_package_does_not_overwrite_a_validated_events_blobs",
        |b| {
            let sphere = b.open();
            let (device, _) = enroll(&sphere);
            let first = drift::drift_package(
                &device,
                "p-first",
                &json!([report_with(5, &[1.0, 2.0, 3.0], &["s/a.jpg"])]),
                &["s/a.jpg"],
            );
            assert_eq!(deliver(&sphere, &device, &first), UploadOutcome::Accepted);
            let events = sphere
                .list_drift_events(&DriftEventQuery {
                    device: Some(device.clone()),
                    ..Default::default()
                })
                .unwrap()
                .events;
            assert_eq!(events.len(), 1);
            let id = events[0].id;
            let reviewed = sphere
                .validate_drift_event(
                    id,
                    "alice",
                    &tinylcm_protocol::api::ValidateRequest {
                        label: Some("cat".into()),
                        note: None,
                    },
                )
                .unwrap();

            // The same event again, identical: accepted, no problem.
            let same = drift::drift_package(
                &device,
                "p-same",
                &json!([report_with(5, &[1.0, 2.0, 3.0], &["s/a.jpg"])]),
                &["s/a.jpg"],
            );
            deliver(&sphere, &device, &same);
            let record = sphere.package_record(&device, "p-same").unwrap().unwrap();
            assert!(record.problems.is_empty(), "{:?}", record.problems);

            // The same event number with other data: ignored, named as a problem.
            let later = drift::drift_package(
                &device,
                "p-later",
                &json!([report_with(5, &[9.0, 9.0, 9.0], &["s/b.jpg"])]),
                &["s/b.jpg"],
            );
            deliver(&sphere, &device, &later);
            let record = sphere.package_record(&device, "p-later").unwrap().unwrap();
            assert!(
                record
                    .problems
                    .iter()
                    .any(|p| p.contains("drift event 5") && p.contains("p-first")),
                "{:?}",
                record.problems
            );
            assert_eq!(sphere.get_drift_event(id).unwrap(), reviewed);
            assert_eq!(exported(&sphere, &device), [(id, vec![1.0, 2.0, 3.0])]);
        },
    );
}

/// A drift report `seq` of the state database `epoch` (`None`: a device older than epochs),
/// with an embedding `[seq, marker]`.
fn report_of(epoch: Option<&str>, seq: u64, marker: f32) -> serde_json::Value {
    let mut r = report_with(seq, &[seq as f32, marker], &[]);
    if let Some(epoch) = epoch {
        r["epoch"] = json!(epoch);
    }
    r
}

/// The (epoch, event_seq) of `device`'s stored events, in arrival order.
fn stored_events(sphere: &Sphere, device: &str) -> Vec<(Option<String>, u64)> {
    sphere
        .list_drift_events(&DriftEventQuery {
            device: Some(device.to_owned()),
            ..Default::default()
        })
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.epoch, e.event_seq))
        .collect()
}

/// Fails before this change: the server keyed drift events by (device, event_seq), so a
/// device whose state database was recreated (its event numbers start at 1 again) had every
/// new event dropped as a duplicate of the old database's. Now the key is (device, epoch,
/// event_seq): the new database's events are stored, each with its own embedding, a re-sent
/// event of either database is still stored once, and events of devices older than epochs
/// (no `epoch`) keep their old key.
#[test]
fn a_recreated_device_database_reports_new_events_not_duplicates() {
    each_backend(
        "a_recreated_device_database_reports_new_events_not_duplicates",
        |b| {
            let sphere = b.open();
            let (device, _) = enroll(&sphere);
            let send = |id: &str, events: serde_json::Value| {
                let package = drift::drift_package(&device, id, &events, &[]);
                deliver(&sphere, &device, &package)
            };
            // An older runtime (no epoch), then the upgraded one, then the database recreated.
            send("p0", json!([report_of(None, 1, 0.0)]));
            send(
                "p1",
                json!([
                    report_of(Some("aaaa"), 2, 1.0),
                    report_of(Some("aaaa"), 3, 1.0)
                ]),
            );
            send(
                "p2",
                json!([
                    report_of(Some("bbbb"), 1, 2.0),
                    report_of(Some("bbbb"), 2, 2.0)
                ]),
            );
            // Re-sent events of each kind are stored once.
            send(
                "p3",
                json!([
                    report_of(None, 1, 0.0),
                    report_of(Some("aaaa"), 3, 1.0),
                    report_of(Some("bbbb"), 2, 2.0)
                ]),
            );
            let aaaa = Some("aaaa".to_owned());
            let bbbb = Some("bbbb".to_owned());
            assert_eq!(
                stored_events(&sphere, &device),
                [
                    (None, 1),
                    (aaaa.clone(), 2),
                    (aaaa, 3),
                    (bbbb.clone(), 1),
                    (bbbb, 2)
                ]
            );
            // Each event exports its own embedding (event 2 of both databases included).
            let exported: Vec<Vec<f32>> = exported(&sphere, &device)
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            assert_eq!(
                exported,
                [
                    vec![1.0, 0.0],
                    vec![2.0, 1.0],
                    vec![3.0, 1.0],
                    vec![1.0, 2.0],
                    vec![2.0, 2.0]
                ]
            );
            // A malformed epoch is refused as a problem of its package; the rest is kept.
            send("p4", json!([report_of(Some("Not/An-Epoch"), 9, 0.0)]));
            let record = sphere.package_record(&device, "p4").unwrap().unwrap();
            assert!(
                record.problems.iter().any(|p| p.contains("epoch")),
                "{:?}",
                record.problems
            );
            assert_eq!(stored_events(&sphere, &device).len(), 5);
        },
    );
}

/// Storage settings with `retention` and `quota` (bytes), the last-seen interval default.
fn storage(retention: Option<Duration>, quota: Option<u64>) -> StorageSettings {
    StorageSettings {
        retention,
        device_quota_bytes: quota,
        ..StorageSettings::default()
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Fails before this change: raw TARs and unpacked files were kept for ever. Now a processed
/// package past the retention is pruned (raw TAR and files), except the samples a pending
/// drift event shows, which go once the event is decided; the package's record stays, so the
/// same package sent again is still a duplicate, and the event's embedding stays.
#[test]
fn packages_past_retention_are_pruned_but_what_a_pending_event_shows_stays() {
    each_backend(
        "packages_past_retention_are_pruned_but_what_a_pending_event_shows_stays",
        |b| {
            let sphere = b.open().with_storage(&storage(Some(DAY), None));
            let (device, _) = enroll(&sphere);
            let with_event = drift::drift_package(
                &device,
                "p1",
                &json!([report_with(1, &[1.0, 2.0], &["s/a.jpg"])]),
                &["s/a.jpg"],
            );
            let plain = drift::drift_package(&device, "p2", &json!([]), &[]);
            deliver(&sphere, &device, &with_event);
            deliver(&sphere, &device, &plain);
            let now = now_unix_ms();
            assert_eq!(sphere.sweep_retention(now).unwrap().packages, 0);
            let before = b.blob_keys();
            assert!(
                before.contains(&format!("incoming/{device}/p1.tar")),
                "{before:?}"
            );

            let pruned = sphere.sweep_retention(now + 2 * DAY_MS).unwrap();
            assert_eq!(pruned.packages, 2);
            let sample = format!("devices/{device}/packages/p1/s/a.jpg");
            let left: Vec<String> = b
                .blob_keys()
                .into_iter()
                .filter(|k| !k.contains("/embeddings/"))
                .collect();
            // The device's reported.json (one small file per device, what the fleet page
            // reads) is its latest state, not a package's: retention keeps it.
            assert_eq!(
                left,
                [sample.clone(), format!("devices/{device}/reported.json")],
                "only the pending event's sample stays"
            );
            assert_eq!(exported(&sphere, &device).len(), 1, "the embedding stays");
            assert_eq!(
                sphere.sweep_retention(now + 2 * DAY_MS).unwrap().packages,
                0,
                "a package pruned before, with only a pending event's sample left, is not pruned again"
            );
            assert_eq!(
                sphere.accept_upload(&device, &plain).unwrap().outcome,
                UploadOutcome::Duplicate
            );

            let id = sphere
                .list_drift_events(&DriftEventQuery::default())
                .unwrap()
                .events[0]
                .id;
            sphere
                .reject_drift_event(id, "alice", &Default::default())
                .unwrap();
            sphere.sweep_retention(now + 2 * DAY_MS).unwrap();
            assert!(
                b.blob(&sample).is_none(),
                "a decided event's sample is pruned in time"
            );
        },
    );
}

/// A package of `device` with one sample `s/big.jpg` of `sample_bytes` bytes, and a pending
/// drift event showing it when `event` is set.
fn sized_package(device: &str, id: &str, sample_bytes: usize, event: bool) -> Vec<u8> {
    let events = if event {
        json!([drift::report(1, "adwin", 1, &["s/big.jpg"])])
    } else {
        json!([])
    };
    let mut b = tinylcm_protocol::package::PackageBuilder::new(id, device, 1).unwrap();
    b.add(
        "drift-events.json",
        FileKind::DriftEvents,
        events.to_string().into_bytes(),
    )
    .unwrap();
    b.add("s/big.jpg", FileKind::Sample, vec![7; sample_bytes])
        .unwrap();
    b.finish().unwrap()
}

/// Fails before this change: there was no quota, a device could store without bound. Now
/// a device that needs room has its oldest processed packages pruned; when what is left is all
/// shown by pending drift events it gets 507 (the runtime keeps the package and retries: not
/// a final answer to it) until an operator decides them; a package bigger than the quota on
/// its own gets 413.
#[test]
fn a_device_over_its_quota_loses_its_oldest_packages_or_is_told_to_wait() {
    each_backend(
        "a_device_over_its_quota_loses_its_oldest_packages_or_is_told_to_wait",
        |b| {
            const SAMPLE: usize = 20_000;
            let len = sized_package("d", "p", SAMPLE, false).len() as u64;

            // Room for three packages (raw + unpacked ≈ 2 × len each), not four.
            let sphere = b.open().with_storage(&storage(None, Some(7 * len)));
            let (device, _) = enroll(&sphere);
            for id in ["q1", "q2", "q3", "q4"] {
                let package = sized_package(&device, id, SAMPLE, false);
                assert_eq!(deliver(&sphere, &device, &package), UploadOutcome::Accepted);
            }
            let keys = b.blob_keys();
            assert!(
                !keys.iter().any(|k| k.contains("/q1")),
                "the oldest package was not pruned: {keys:?}"
            );
            for id in ["q2", "q3", "q4"] {
                assert!(
                    keys.contains(&format!("incoming/{device}/{id}.tar")),
                    "{id}: {keys:?}"
                );
            }
            drop(sphere);

            // Room for one package with its sample held by a pending event, not two.
            let sphere = b.open().with_storage(&storage(None, Some(5 * len / 2)));
            let (device, _) = enroll(&sphere);
            let first = sized_package(&device, "r1", SAMPLE, true);
            assert_eq!(deliver(&sphere, &device, &first), UploadOutcome::Accepted);
            let second = sized_package(&device, "r2", SAMPLE, true);
            match sphere.accept_upload(&device, &second) {
                Err(DomainError::InsufficientStorage { error, .. }) => {
                    assert!(error.contains("review"), "{error}")
                }
                other => panic!("expected 507, got {other:?}"),
            }
            assert!(
                b.blob(&format!("devices/{device}/packages/r1/s/big.jpg"))
                    .is_some()
            );
            let huge = sized_package(&device, "r3", 3 * SAMPLE, false);
            assert!(matches!(
                sphere.accept_upload(&device, &huge),
                Err(DomainError::TooLarge { .. })
            ));
            // Once the operator has decided, the retry gets through.
            let id = sphere
                .list_drift_events(&DriftEventQuery::default())
                .unwrap()
                .events[0]
                .id;
            sphere
                .reject_drift_event(id, "alice", &Default::default())
                .unwrap();
            assert_eq!(deliver(&sphere, &device, &second), UploadOutcome::Accepted);
        },
    );
}
