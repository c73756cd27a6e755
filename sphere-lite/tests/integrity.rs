//! Data integrity on the embedded default and again on MLflow + S3 (`support::backend`): what a
//! device sends once stays as it was first stored, a device whose state database was
//! recreated is not taken for a device repeating itself, a burst of requests is not a burst of
//! durable writes, and stored packages are bounded by age and by a per-device quota.

use std::time::Duration;

use serde_json::json;
use sphere_lite::domain::{Sphere, now_unix_ms};
use tinylcm_protocol::api::{DriftEventQuery, EnrollRequest, UploadOutcome};

#[path = "support/backend.rs"]
mod backend;
#[path = "support/drift.rs"]
mod drift;

use backend::each_backend;

/// Enroll a device directly through the domain: (device id, token).
fn enroll(sphere: &Sphere) -> (String, String) {
    let key = sphere.create_enrollment_key(1).unwrap();
    let r = sphere
        .enroll(&EnrollRequest {
            enrollment_key: key,
            name: None,
            hardware: None,
        })
        .unwrap();
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
