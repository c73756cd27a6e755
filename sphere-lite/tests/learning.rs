//! What devices learn (`tinylcm_protocol::learning`) and operators' class renames, against a
//! real sphere-lite on 127.0.0.1:0, on the embedded default and again on MLflow + S3 when
//! `SPHERE_TEST_MLFLOW_URL` and `SPHERE_TEST_S3_*` are set: both tracking backends keep a
//! device's learning events once each, newest first, keep a drift event's predicted class and
//! top-k, still accept packages of devices older than both, and show a class rename's feedback
//! item queued → delivered → applied or refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tinylcm_protocol::api::{
    DriftEventQuery, FeedbackOutcome, FeedbackProgress, FeedbackResult, FeedbackResults,
    FeedbackVerdict,
};
use tinylcm_protocol::learning::{ClassRenameRequest, LEARNING_MEMBER, LearningEvent};
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/server.rs"]
mod server;

#[path = "support/backend.rs"]
mod backend;

use backend::each_backend;
use server::TestServer;

const EPOCH: &str = "0123456789abcdef0123456789abcdef";
const T0: u64 = 1_764_147_600_000;

fn learning(seq: u64, seconds: u64, event: serde_json::Value) -> serde_json::Value {
    json!({"event_seq": seq, "epoch": EPOCH, "unix_ms": T0 + seconds * 1000, "event": event})
}

fn onset(seq: u64, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "event_seq": seq, "epoch": EPOCH, "incident": 1, "detector": "adwin",
        "statistic": 4.0, "threshold": 3.0, "magnitude": 1.0, "sample_id": 30 + seq,
        "unix_ms": T0 + seq * 1000,
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails before this change (learning events were not read, drift events had no predicted
/// class): a device's adaptation round, proposed class, rollback and closed incident are kept
/// once each (the same events in a second package are not stored again) and listed newest
/// first; a drift event keeps its predicted class and top-k; a package of an older device
/// (no learning member, drift events without a prediction) is processed as before.
#[test]
fn learning_events_and_drift_predictions_round_trip() {
    each_backend("learning_events_and_drift_predictions_round_trip", |b| {
        let sphere = Arc::new(b.open());
        let key = sphere.create_enrollment_key(5).unwrap();
        let server = TestServer::start_shared(sphere.clone(), None);
        let (dev, token) = server.enrolled(&key);
        let upload = |id: &str, members: &[(&str, FileKind, serde_json::Value)]| {
            let mut p = PackageBuilder::new(id, &dev, T0).unwrap();
            for (name, kind, json) in members {
                p.add(*name, *kind, json.to_string().into_bytes()).unwrap();
            }
            let (status, body) =
                server.post(&paths::packages(&dev), Some(&token), &p.finish().unwrap());
            assert_eq!(status, 200, "{body}");
        };
        let events = json!([
            learning(
                2,
                2,
                json!({"kind": "new-class", "round": 1, "class": "new-2", "members": 12})
            ),
            learning(
                3,
                3,
                json!({"kind": "round-rolled-back", "round": 1,
                                  "reason": "confidence-collapse", "added": 4,
                                  "confidence_before": 0.9, "confidence_after": 0.5})
            ),
            learning(
                4,
                4,
                json!({"kind": "incident-closed", "incident": 1, "detectors": ["adwin"]})
            ),
        ]);
        let drift = json!([onset(
            1,
            json!({
                "predicted": "circle",
                "top_k": [{"class": "circle", "score": 0.5}, {"class": "new-2", "score": 0.25}],
            })
        )]);
        upload(
            "pkg-1",
            &[
                ("drift-events.json", FileKind::DriftEvents, drift),
                (LEARNING_MEMBER, FileKind::Other, events.clone()),
            ],
        );
        // The same events again (a device re-packaging after a lost answer), and an older
        // device's package.
        upload("pkg-2", &[(LEARNING_MEMBER, FileKind::Other, events)]);
        upload(
            "pkg-3",
            &[(
                "drift-events.json",
                FileKind::DriftEvents,
                json!([onset(5, json!({}))]),
            )],
        );
        let drift = wait("two drift events", || {
            let list = sphere
                .list_drift_events(&DriftEventQuery::default())
                .unwrap();
            (list.events.len() == 2).then_some(list.events)
        });
        wait("three packages processed", || {
            let p = sphere.device_packages(&dev, None, 10).unwrap();
            p.packages
                .iter()
                .all(|p| p.processed_unix_ms.is_some())
                .then_some(())
                .filter(|()| p.packages.len() == 3)
        });
        assert_eq!(drift[0].predicted.as_deref(), Some("circle"));
        let top: Vec<(&str, f32)> = drift[0]
            .top_k
            .iter()
            .map(|c| (c.class.as_str(), c.score))
            .collect();
        assert_eq!(top, [("circle", 0.5), ("new-2", 0.25)]);
        assert_eq!(drift[1].predicted, None);
        assert!(drift[1].top_k.is_empty());

        let kept = sphere.learning_events(&dev, 50).unwrap();
        let seqs: Vec<u64> = kept.iter().map(|e| e.event_seq).collect();
        assert_eq!(seqs, [4, 3, 2], "{kept:?}");
        assert_eq!(
            kept[2].event,
            LearningEvent::NewClass {
                round: 1,
                class: "new-2".into(),
                members: 12
            }
        );
        assert!(matches!(
            &kept[1].event,
            LearningEvent::RoundRolledBack { reason, .. } if reason == "confidence-collapse"
        ));
        assert_eq!(sphere.learning_events(&dev, 1).unwrap().len(), 1);
    });
}

/// Fails before this change (there was no way to name a proposed class): an operator's
/// rename of `new-2` to `star` reaches the device as a `class` feedback item, and its progress
/// follows the device: queued, delivered once acknowledged, applied once reported; a refused
/// merge shows the device's reason. Bad requests are refused before anything is queued.
#[test]
fn a_class_rename_is_delivered_and_its_result_shown() {
    each_backend("a_class_rename_is_delivered_and_its_result_shown", |b| {
        let sphere = Arc::new(b.open());
        let key = sphere.create_enrollment_key(5).unwrap();
        let server = TestServer::start_shared(sphere.clone(), None);
        let (dev, token) = server.enrolled(&key);
        let rename = |from: &str, to: &str| {
            sphere.rename_class(
                &dev,
                "alice",
                &ClassRenameRequest {
                    from: from.into(),
                    to: to.into(),
                },
            )
        };
        for (from, to) in [("new-2", "new-2"), ("", "star"), ("new-2", "a\nb")] {
            assert!(rename(from, to).is_err(), "{from:?} → {to:?}");
        }
        assert!(
            sphere
                .rename_class(
                    "no-such-device",
                    "alice",
                    &ClassRenameRequest {
                        from: "a".into(),
                        to: "b".into()
                    }
                )
                .is_err()
        );
        let first = rename("new-2", "star").unwrap();
        let second = rename("new-3", "circle").unwrap();
        let renames = sphere.class_renames(&dev, 10).unwrap();
        assert_eq!(renames.len(), 2);
        assert_eq!(
            (renames[0].from.as_str(), renames[0].to.as_str()),
            ("new-3", "circle")
        );
        assert_eq!(renames[1].by, "alice");
        assert!(
            renames
                .iter()
                .all(|r| r.feedback.progress == FeedbackProgress::Queued)
        );

        let (status, page) =
            server.get(&format!("{}?after=0", paths::feedback(&dev)), Some(&token));
        assert_eq!(status, 200, "{page}");
        let verdicts: Vec<FeedbackVerdict> = serde_json::from_value(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["verdict"].clone())
                .collect(),
        )
        .unwrap();
        assert_eq!(
            verdicts,
            [
                FeedbackVerdict::Class {
                    from: "new-2".into(),
                    to: "star".into()
                },
                FeedbackVerdict::Class {
                    from: "new-3".into(),
                    to: "circle".into()
                },
            ]
        );
        let (status, body) = server.post(
            &paths::feedback_ack(&dev),
            Some(&token),
            json!({"up_to": second}).to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        let progress = |i: usize| sphere.class_renames(&dev, 10).unwrap()[i].feedback.clone();
        assert_eq!(progress(1).progress, FeedbackProgress::Delivered);
        let results = FeedbackResults {
            results: vec![
                FeedbackResult::new(first, FeedbackOutcome::Applied, None, 5),
                FeedbackResult::new(
                    second,
                    FeedbackOutcome::Refused,
                    Some("the device has no class new-3"),
                    6,
                ),
            ],
        };
        let (status, body) = server.post(
            &paths::feedback_results(&dev),
            Some(&token),
            serde_json::to_string(&results).unwrap().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(progress(1).progress, FeedbackProgress::Applied);
        let refused = progress(0);
        assert_eq!(refused.progress, FeedbackProgress::Refused);
        assert_eq!(
            refused.reason.as_deref(),
            Some("the device has no class new-3")
        );
    });
}
