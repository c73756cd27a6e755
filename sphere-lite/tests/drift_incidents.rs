//! Drift incidents (`Sphere::drift_incident`, `Sphere::device_classes`, what the Drift Hub's
//! cards and incident pages are built from) against a real sphere-lite on 127.0.0.1:0, on the
//! embedded default and again on MLflow + S3 when `SPHERE_TEST_MLFLOW_URL` and
//! `SPHERE_TEST_S3_*` are set: both tracking backends filter drift events by device and time
//! for it and keep the per-class metric keys the label chooser offers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tinylcm_protocol::api::{DriftEventQuery, ValidateRequest};
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/server.rs"]
mod server;

#[path = "support/backend.rs"]
mod backend;

use backend::each_backend;
use server::TestServer;

const EPOCH: &str = "0123456789abcdef0123456789abcdef";

/// A drift report of `incident`, `seconds` after a fixed start (device clock).
fn onset(seq: u64, incident: u64, detector: &str, seconds: u64) -> serde_json::Value {
    json!({
        "event_seq": seq, "epoch": EPOCH, "incident": incident, "detector": detector,
        "statistic": 4.0, "threshold": 3.0, "magnitude": 1.0, "sample_id": 30 + seq,
        "unix_ms": 1_764_147_600_000u64 + seconds * 1000,
        "samples": ["samples/00000000000000000031.jpg"],
    })
}

/// Fails before this change (there was no incident to look up): the events of one incident
/// are found from any of them, also when another incident of the same device and one of
/// another device fall in between, and an incident's decision labels its shared sample once.
#[test]
fn an_incident_is_its_devices_events_with_the_same_epoch_and_number() {
    each_backend(
        "an_incident_is_its_devices_events_with_the_same_epoch_and_number",
        |b| {
            let sphere = Arc::new(b.open());
            let key = sphere.create_enrollment_key(5).unwrap();
            let server = TestServer::start_shared(sphere.clone(), None);
            let (a, a_token) = server.enrolled(&key);
            let (other, other_token) = server.enrolled(&key);
            let upload = |device: &str, token: &str, id: &str, events: serde_json::Value| {
                let mut p = PackageBuilder::new(id, device, 1_764_147_600_000).unwrap();
                let metrics = json!({"classes": {
                    "star": {"total": 3, "interval": 1}, "new-2": {"total": 1, "interval": 1},
                }});
                p.add(
                    "metrics.json",
                    FileKind::Metrics,
                    metrics.to_string().into_bytes(),
                )
                .unwrap();
                p.add(
                    "drift-events.json",
                    FileKind::DriftEvents,
                    events.to_string().into_bytes(),
                )
                .unwrap();
                p.add(
                    "samples/00000000000000000031.jpg",
                    FileKind::Sample,
                    vec![0xff, 0xd8, 0xff, 0xe0, 1],
                )
                .unwrap();
                let (status, body) =
                    server.post(&paths::packages(device), Some(token), &p.finish().unwrap());
                assert_eq!(status, 200, "{body}");
            };
            upload(&a, &a_token, "pkg-1", json!([onset(1, 4, "adwin", 0)]));
            upload(
                &other,
                &other_token,
                "pkg-2",
                json!([onset(1, 4, "adwin", 1)]),
            );
            upload(
                &a,
                &a_token,
                "pkg-3",
                json!([onset(2, 5, "cusum", 2), onset(3, 4, "page-hinkley", 60)]),
            );
            let start = Instant::now();
            let all = loop {
                let list = sphere
                    .list_drift_events(&DriftEventQuery::default())
                    .unwrap();
                if list.events.len() == 4 {
                    break list.events;
                }
                assert!(start.elapsed() < Duration::from_secs(20), "{list:?}");
                std::thread::sleep(Duration::from_millis(50));
            };
            let id = |device: &str, seq: u64| {
                all.iter()
                    .find(|e| e.device_id == device && e.event_seq == seq)
                    .unwrap()
                    .id
            };
            let four = [id(&a, 1), id(&a, 3)];
            for from in four {
                let ids: Vec<u64> = sphere
                    .drift_incident(from)
                    .unwrap()
                    .iter()
                    .map(|e| e.id)
                    .collect();
                assert_eq!(ids, four, "from {from}");
            }
            let five: Vec<u64> = sphere
                .drift_incident(id(&a, 2))
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(five, [id(&a, 2)]);
            assert!(sphere.drift_incident(999_999).is_err());

            let (known, proposed) = sphere.device_classes(&a).unwrap();
            assert_eq!(
                (known, proposed),
                (vec!["star".into()], vec!["new-2".into()])
            );

            // Both events carry sample 31: validated together, it is labelled once.
            let mut labelled = std::collections::HashSet::new();
            let request = ValidateRequest {
                label: Some("star".into()),
                note: None,
            };
            for e in four {
                sphere
                    .validate_drift_event_once(e, "alice", &request, &mut labelled)
                    .unwrap();
            }
            let (status, body) = server.get(&paths::feedback(&a), Some(&a_token));
            assert_eq!(status, 200, "{body}");
            let kinds: Vec<&str> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["verdict"]["type"].as_str().unwrap())
                .collect();
            assert_eq!(kinds, ["drift", "sample", "drift"], "{body}");
        },
    );
}
