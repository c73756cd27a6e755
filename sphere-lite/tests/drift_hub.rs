//! End-to-end tests of the Drift Hub against a real sphere-lite on 127.0.0.1:0: drift events
//! arrive in packages, operators review them, devices pull and acknowledge the feedback. Each
//! test runs on the embedded default and again on MLflow + S3 when `SPHERE_TEST_MLFLOW_URL`
//! and `SPHERE_TEST_S3_*` are set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::{
    AccessStore, ClassRename, ConfigLayer, ConfigStore, DecideOutcome, Decision, DeviceRecord,
    DeviceSettings, DeviceStore, DriftEventFilter, DriftStore, EnrollOutcome, EnrollmentKey,
    LearningStore, MetricStore, OperatorToken, PackageRecord, PackageStore, PredictionCursor,
    PredictionFilter, PredictionStore, Principal, Recorded, ReleaseRecord, ReleaseStore, Rollout,
    SecretHash, SessionRecord, SessionStore, StoreError, Tracking,
};
use tinylcm_protocol::api::{DriftEventView, FeedbackItem, FeedbackVerdict};
use tinylcm_protocol::datahub::PredictionView;
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/drift.rs"]
mod drift;
#[path = "support/server.rs"]
mod server;

#[path = "support/backend.rs"]
mod backend;

use backend::{Backend, each_backend};
use server::TestServer;

use drift::report;

const THUMB_A: &str = "samples/00000000000000000012.jpg";
const THUMB_B: &str = "samples/00000000000000000013.jpg";

/// A package with `drift-events.json` = `events`, two JPEG-ish samples and a metrics file.
fn drift_package(device: &str, id: &str, events: &Value) -> Vec<u8> {
    drift::drift_package(device, id, events, &[THUMB_A, THUMB_B])
}

struct Fixture {
    server: TestServer,
    key: String,
    operator: String,
}

impl Fixture {
    fn new(backend: &Backend) -> Fixture {
        let sphere = backend.open();
        let key = sphere.create_enrollment_key(5).unwrap();
        let operator = sphere.create_operator_token("alice").unwrap();
        Fixture {
            server: TestServer::start(sphere),
            key,
            operator,
        }
    }

    fn upload(&self, device: &str, token: &str, package: &[u8]) {
        let (status, body) = self
            .server
            .post(&paths::packages(device), Some(token), package);
        assert_eq!(status, 200, "{body}");
    }

    /// The operator's listing for `query`, as it is now.
    fn list(&self, query: &str) -> Value {
        let (status, body) = self.server.get(
            &format!("{}{query}", paths::DRIFT_EVENTS),
            Some(&self.operator),
        );
        assert_eq!(status, 200, "{query}: {body}");
        body
    }

    /// The operator's listing for `query`, once it has `n` events (processing is in the
    /// background).
    fn wait_events(&self, query: &str, n: usize) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.server.get(
                &format!("{}{query}", paths::DRIFT_EVENTS),
                Some(&self.operator),
            );
            assert_eq!(status, 200, "{body}");
            if body["events"].as_array().unwrap().len() >= n
                || start.elapsed() > Duration::from_secs(10)
            {
                return body;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn feedback(&self, device: &str, token: &str, after: u64) -> Vec<FeedbackItem> {
        let (status, body) = self.server.get(
            &format!("{}?after={after}", paths::feedback(device)),
            Some(token),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body["items"].clone()).unwrap()
    }
}

fn events(body: &Value) -> Vec<DriftEventView> {
    serde_json::from_value(body["events"].clone()).unwrap()
}

#[test]
fn a_validated_label_reaches_the_device_exactly_once() {
    each_backend("a_validated_label_reaches_the_device_exactly_once", |b| {
        let f = Fixture::new(b);
        let (dev, token) = f.server.enrolled(&f.key);
        let reports = json!([
            report(7, "page-hinkley-distance", 1000, &[THUMB_A, THUMB_B]),
            report(8, "adwin", 2000, &[]),
        ]);
        f.upload(&dev, &token, &drift_package(&dev, "pkg-1", &reports));

        let list = events(&f.wait_events("?status=pending", 2));
        assert_eq!(list.len(), 2);
        let first = &list[0];
        assert_eq!(first.device_id, dev);
        assert_eq!(first.event_seq, 7);
        assert_eq!(first.detector, "page-hinkley-distance");
        assert_eq!(
            first.samples,
            [
                format!("devices/{dev}/packages/pkg-1/{THUMB_A}"),
                format!("devices/{dev}/packages/pkg-1/{THUMB_B}"),
            ]
        );
        // The keys point at stored blobs.
        for key in &first.samples {
            assert!(b.blob(key).is_some(), "{key}");
        }

        // Validate with a label: the event is decided with its audit fields.
        let (status, body) = f.server.post(
            &paths::drift_event_validate(first.id),
            Some(&f.operator),
            json!({"label": "cat", "note": "new <b>cat</b> breed"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "validated");
        assert_eq!(body["label"], "cat");
        assert_eq!(body["note"], "new <b>cat</b> breed");
        assert_eq!(body["decided_by"], "alice");
        assert!(body["decided_unix_ms"].as_u64().unwrap() > 0);
        let (_, one) = f
            .server
            .get(&paths::drift_event(first.id), Some(&f.operator));
        assert_eq!(one, body);

        // The device's feedback: the drift confirmed, and both thumbnails labelled.
        let items = f.feedback(&dev, &token, 0);
        let verdicts: Vec<&FeedbackVerdict> = items.iter().map(|i| &i.verdict).collect();
        assert_eq!(
            items.iter().map(|i| i.id).collect::<Vec<_>>(),
            [1, 2, 3],
            "{items:?}"
        );
        assert_eq!(
            serde_json::to_value(verdicts).unwrap(),
            json!([
                {"type": "drift", "incident": null, "event": 7, "verdict": "confirmed"},
                {"type": "sample", "id": 12, "label": "cat", "reject": false},
                {"type": "sample", "id": 13, "label": "cat", "reject": false},
            ])
        );
        // Paging by `after` without acking.
        assert_eq!(f.feedback(&dev, &token, 2).len(), 1);

        // Ack: never delivered again, not even with after=0.
        let (status, body) =
            f.server
                .post(&paths::feedback_ack(&dev), Some(&token), br#"{"up_to": 3}"#);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["acknowledged_up_to"], 3);
        let (_, page) = f
            .server
            .get(&format!("{}?after=3", paths::feedback(&dev)), Some(&token));
        assert_eq!(page["items"], json!([]));
        assert_eq!(page["next_after"], 3);
        assert!(f.feedback(&dev, &token, 0).is_empty());

        // A second decision is a 409 with the current state, and queues nothing.
        for (path, body) in [
            (paths::drift_event_validate(first.id), r#"{"label":"dog"}"#),
            (paths::drift_event_reject(first.id), "{}"),
        ] {
            let (status, conflict) = f.server.post(&path, Some(&f.operator), body.as_bytes());
            assert_eq!(status, 409, "{conflict}");
            assert!(conflict["error"].is_string());
            assert_eq!(conflict["current"]["status"], "validated");
            assert_eq!(conflict["current"]["label"], "cat");
        }
        assert!(f.feedback(&dev, &token, 0).is_empty());

        // Reject the other one: a false alarm for its event number, id 4.
        let second = &list[1];
        let (status, body) = f.server.post(
            &paths::drift_event_reject(second.id),
            Some(&f.operator),
            br#"{"note": "a bird"}"#,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "rejected");
        assert_eq!(body["label"], Value::Null);
        let items = f.feedback(&dev, &token, 0);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, 4);
        assert_eq!(
            serde_json::to_value(&items[0].verdict).unwrap(),
            json!({"type": "drift", "incident": null, "event": 8, "verdict": "false-alarm"})
        );
        // Acking beyond the last id clamps to it (later items are not pre-acknowledged).
        let (_, body) = f.server.post(
            &paths::feedback_ack(&dev),
            Some(&token),
            br#"{"up_to": 99}"#,
        );
        assert_eq!(body["acknowledged_up_to"], 4);
        assert_eq!(f.list("?status=pending")["events"], json!([]));
    });
}

/// Fails before this change: sphere-lite had no way to learn what became of a verdict, and the
/// dashboard showed a label as if it took effect while the device logged `no such quarantine
/// entry`. Now each item of a decision goes queued → delivered (acknowledged) → applied, or
/// refused with the device's reason, on both backends; the first result stands.
#[test]
fn each_item_of_a_decision_shows_queued_delivered_and_what_the_device_did() {
    each_backend(
        "each_item_of_a_decision_shows_queued_delivered_and_what_the_device_did",
        |b| {
            let f = Fixture::new(b);
            let (dev, token) = f.server.enrolled(&f.key);
            let (other, other_token) = f.server.enrolled(&f.key);
            let reports = json!([report(
                7,
                "page-hinkley-distance",
                1000,
                &[THUMB_A, THUMB_B]
            )]);
            f.upload(&dev, &token, &drift_package(&dev, "pkg-1", &reports));
            let event = events(&f.wait_events("?status=pending", 1))[0].clone();
            assert!(event.feedback.is_empty(), "pending: nothing queued");
            let (status, body) = f.server.post(
                &paths::drift_event_validate(event.id),
                Some(&f.operator),
                br#"{"label": "star"}"#,
            );
            assert_eq!(status, 200, "{body}");
            let progress = |view: &Value| -> Vec<(u64, String, Option<String>)> {
                view["feedback"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        (
                            i["id"].as_u64().unwrap(),
                            i["progress"].as_str().unwrap().to_string(),
                            i["reason"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            };
            let q = |id| (id, "queued".to_string(), None);
            assert_eq!(progress(&body), [q(1), q(2), q(3)]);
            assert_eq!(body["feedback"][1]["verdict"]["label"], "star");
            let get = || {
                let (status, view) = f
                    .server
                    .get(&paths::drift_event(event.id), Some(&f.operator));
                assert_eq!(status, 200, "{view}");
                view
            };

            // The device takes two items: delivered.
            let (status, _) =
                f.server
                    .post(&paths::feedback_ack(&dev), Some(&token), br#"{"up_to": 2}"#);
            assert_eq!(status, 200);
            let d = |id| (id, "delivered".to_string(), None);
            assert_eq!(progress(&get()), [d(1), d(2), q(3)]);

            // It applied the drift verdict and refused one label, saying why.
            let why = "sample 12 has left the quarantine (evicted or expired) and no features \
                       of it were kept";
            let results = json!({"results": [
                {"id": 1, "outcome": "applied", "unix_ms": 5},
                {"id": 2, "outcome": "refused", "reason": why, "unix_ms": 6},
                {"id": 99, "outcome": "applied", "unix_ms": 6},
            ]});
            let (status, answer) = f.server.post(
                &paths::feedback_results(&dev),
                Some(&token),
                results.to_string().as_bytes(),
            );
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["recorded"], 2, "an item never queued is skipped");
            let view = get();
            assert_eq!(
                progress(&view),
                [
                    (1, "applied".to_string(), None),
                    (2, "refused".to_string(), Some(why.to_string())),
                    q(3)
                ]
            );
            assert_eq!(view["feedback"][1]["reported_unix_ms"], 6);
            // The listing shows the same.
            let listed = f.list(&format!("?device={dev}"));
            assert_eq!(listed["events"][0]["feedback"], view["feedback"]);

            // A repeat (the device retries after a lost answer) changes nothing; the first
            // result stands.
            let again = json!({"results": [{"id": 2, "outcome": "applied", "unix_ms": 9}]});
            let (status, answer) = f.server.post(
                &paths::feedback_results(&dev),
                Some(&token),
                again.to_string().as_bytes(),
            );
            assert_eq!((status, answer["recorded"].clone()), (200, json!(0)));
            assert_eq!(progress(&get())[1].1, "refused");

            // The last item: acknowledged, then applied through the features its event carried.
            f.server
                .post(&paths::feedback_ack(&dev), Some(&token), br#"{"up_to": 3}"#);
            assert_eq!(progress(&get())[2], d(3));
            let how = "learnt from the features the drift event carried";
            let last =
                json!({"results": [{"id": 3, "outcome": "applied", "reason": how, "unix_ms": 7}]});
            f.server.post(
                &paths::feedback_results(&dev),
                Some(&token),
                last.to_string().as_bytes(),
            );
            assert_eq!(
                progress(&get())[2],
                (3, "applied".to_string(), Some(how.to_string()))
            );

            // Only the device itself reports; bad bodies are refused with a reason.
            let (status, _) = f.server.post(
                &paths::feedback_results(&dev),
                Some(&other_token),
                again.to_string().as_bytes(),
            );
            assert!(status == 401 || status == 403, "{status}");
            let (status, _) = f.server.post(
                &paths::feedback_results(&other),
                Some(&other_token),
                again.to_string().as_bytes(),
            );
            assert_eq!(status, 200, "its own route");
            let many: Vec<Value> = (1..=33)
                .map(|i| json!({"id": i, "outcome": "applied", "unix_ms": 1}))
                .collect();
            for bad in [
                json!({"results": many}),
                json!({"results": []}),
                json!({"results": [{"id": 1, "outcome": "refused", "reason": "a\u{7}b", "unix_ms": 1}]}),
                json!({"results": [{"id": 1, "outcome": "refused", "reason": "x".repeat(257), "unix_ms": 1}]}),
                json!({"results": [{"id": 1, "outcome": "maybe", "unix_ms": 1}]}),
                json!({"results": [{"id": 1, "outcome": "applied", "unix_ms": 1, "extra": 1}]}),
            ] {
                let (status, body) = f.server.post(
                    &paths::feedback_results(&dev),
                    Some(&token),
                    bad.to_string().as_bytes(),
                );
                assert_eq!(status, 400, "{bad}: {body}");
                assert_eq!(body["origin"], "sphere-lite");
            }
        },
    );
}

#[test]
fn validation_without_a_label_confirms_the_drift_only() {
    each_backend("validation_without_a_label_confirms_the_drift_only", |b| {
        let f = Fixture::new(b);
        let (dev, token) = f.server.enrolled(&f.key);
        let reports = json!([report(1, "cusum", 1000, &[THUMB_A])]);
        f.upload(&dev, &token, &drift_package(&dev, "p", &reports));
        let list = events(&f.wait_events("", 1));
        let (status, _) = f.server.post(
            &paths::drift_event_validate(list[0].id),
            Some(&f.operator),
            b"",
        );
        assert_eq!(status, 200);
        let items = f.feedback(&dev, &token, 0);
        assert_eq!(items.len(), 1);
        assert!(matches!(
            items[0].verdict,
            FeedbackVerdict::Drift { event: Some(1), .. }
        ));
    });
}

#[test]
fn concurrent_decisions_on_one_event_let_exactly_one_win() {
    each_backend(
        "concurrent_decisions_on_one_event_let_exactly_one_win",
        |b| {
            let f = Fixture::new(b);
            let (dev, token) = f.server.enrolled(&f.key);
            let reports = json!([report(1, "adwin", 1000, &[])]);
            f.upload(&dev, &token, &drift_package(&dev, "p", &reports));
            let id = events(&f.wait_events("", 1))[0].id;
            let statuses: Vec<u16> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6)
                    .map(|i| {
                        let path = if i % 2 == 0 {
                            paths::drift_event_validate(id)
                        } else {
                            paths::drift_event_reject(id)
                        };
                        let server = &f.server;
                        let op = f.operator.as_str();
                        s.spawn(move || server.post(&path, Some(op), b"{}").0)
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(
                statuses.iter().filter(|&&c| c == 200).count(),
                1,
                "{statuses:?}"
            );
            assert_eq!(
                statuses.iter().filter(|&&c| c == 409).count(),
                5,
                "{statuses:?}"
            );
            // One decision, one feedback item.
            assert_eq!(f.feedback(&dev, &token, 0).len(), 1);
        },
    );
}

#[test]
fn feedback_and_drift_events_are_guarded() {
    each_backend("feedback_and_drift_events_are_guarded", |b| {
        let f = Fixture::new(b);
        let (a, token_a) = f.server.enrolled(&f.key);
        let (b, token_b) = f.server.enrolled(&f.key);
        let reports = json!([report(1, "adwin", 1000, &[])]);
        f.upload(&a, &token_a, &drift_package(&a, "p", &reports));
        let id = events(&f.wait_events("", 1))[0].id;
        let (status, _) = f
            .server
            .post(&paths::drift_event_reject(id), Some(&f.operator), b"{}");
        assert_eq!(status, 200);

        // B cannot read or ack A's feedback; operators cannot either (device routes).
        let (status, body) = f.server.get(&paths::feedback(&a), Some(&token_b));
        assert_eq!(status, 403, "{body}");
        assert!(body["error"].is_string());
        let (status, _) =
            f.server
                .post(&paths::feedback_ack(&a), Some(&token_b), br#"{"up_to":1}"#);
        assert_eq!(status, 403);
        assert_eq!(f.server.get(&paths::feedback(&a), Some(&f.operator)).0, 403);
        assert_eq!(f.server.get(&paths::feedback(&a), None).0, 401);
        // B's own feedback is empty; A's item is still there.
        assert!(f.feedback(&b, &token_b, 0).is_empty());
        assert_eq!(f.feedback(&a, &token_a, 0).len(), 1);

        // Devices cannot list, read or decide drift events.
        for token in [&token_a, &token_b] {
            assert_eq!(f.server.get(paths::DRIFT_EVENTS, Some(token)).0, 403);
            assert_eq!(f.server.get(&paths::drift_event(id), Some(token)).0, 403);
            assert_eq!(
                f.server
                    .post(&paths::drift_event_validate(id), Some(token), b"{}")
                    .0,
                403
            );
        }
        assert_eq!(f.server.get(paths::DRIFT_EVENTS, None).0, 401);
        // The token is checked before the body is looked at.
        let (status, body) = f
            .server
            .post(&paths::drift_event_validate(id), None, b"{not json");
        assert_eq!(status, 401, "{body}");
        let (status, _) = f
            .server
            .post(&paths::feedback_ack(&a), Some(&token_b), b"{not json");
        assert_eq!(status, 403);

        // Bad input: JSON errors with a status, never a 500.
        let op = Some(f.operator.as_str());
        for (query, code) in [
            ("?status=done", 400),
            ("?color=red", 400),
            ("?limit=0", 400),
            ("?limit=x", 400),
            ("?device=..%2Fx", 400),
        ] {
            let (status, body) = f.server.get(&format!("{}{query}", paths::DRIFT_EVENTS), op);
            assert_eq!(status, code, "{query}: {body}");
            assert!(body["error"].is_string());
        }
        assert_eq!(f.server.get(&paths::drift_event(999), op).0, 404);
        assert_eq!(
            f.server.post(&paths::drift_event_reject(999), op, b"{}").0,
            404
        );
        let long = "x".repeat(200);
        for body in [
            "{not json".to_string(),
            r#"{"lable":"cat"}"#.to_string(),
            json!({"label": long}).to_string(),
            json!({"label": "  "}).to_string(),
            json!({"label": "a\u{0}b"}).to_string(),
        ] {
            let (status, reply) =
                f.server
                    .post(&paths::drift_event_validate(id), op, body.as_bytes());
            assert_eq!(status, 400, "{body}: {reply}");
        }
        let (status, _) = f
            .server
            .post(&paths::feedback_ack(&a), Some(&token_a), b"{}");
        assert_eq!(status, 400);
        let (status, _) = f
            .server
            .get(&format!("{}?after=-1", paths::feedback(&a)), Some(&token_a));
        assert_eq!(status, 400);
    });
}

#[test]
fn listings_filter_and_paginate() {
    each_backend("listings_filter_and_paginate", |b| {
        let f = Fixture::new(b);
        let (a, token_a) = f.server.enrolled(&f.key);
        let (b, token_b) = f.server.enrolled(&f.key);
        let ra = json!([
            report(1, "adwin", 1000, &[]),
            report(2, "cusum", 2000, &[]),
            report(3, "adwin", 3000, &[]),
        ]);
        let rb = json!([report(1, "adwin", 1500, &[]), report(2, "cusum", 2500, &[])]);
        f.upload(&a, &token_a, &drift_package(&a, "pa", &ra));
        f.wait_events("", 3);
        f.upload(&b, &token_b, &drift_package(&b, "pb", &rb));
        let all = events(&f.wait_events("", 5));
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));

        let count = |query: &str| events(&f.list(query)).len();
        assert_eq!(count(&format!("?device={a}")), 3);
        assert_eq!(count(&format!("?device={b}&detector=adwin")), 1);
        assert_eq!(count("?detector=cusum"), 2);
        assert_eq!(count("?since=1500&until=2500"), 2);
        assert_eq!(count("?since=2500"), 2);
        let id = all[0].id;
        f.server
            .post(&paths::drift_event_reject(id), Some(&f.operator), b"");
        assert_eq!(count("?status=rejected"), 1);
        assert_eq!(count("?status=pending"), 4);
        assert_eq!(count("?status=validated"), 0);

        // Pages of 2 by cursor: 2 + 2 + 1, in id order, each event once.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = f.list(&format!("?limit=2&after={after}"));
            seen.extend(events(&page).into_iter().map(|e| e.id));
            match page["next_after"].as_u64() {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, all.iter().map(|e| e.id).collect::<Vec<_>>());
        // An over-large limit is capped, not refused.
        assert_eq!(count("?limit=100000"), 5);
    });
}

/// Tracking that "crashes" (fails) right before marking a package processed while `crash` is
/// set: the drift events are stored, the package stays pending.
struct CrashBeforeMark {
    inner: Arc<dyn Tracking>,
    crash: AtomicBool,
}

impl AccessStore for CrashBeforeMark {
    fn add_enrollment_key(&self, k: &EnrollmentKey) -> Result<(), StoreError> {
        self.inner.add_enrollment_key(k)
    }
    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError> {
        self.inner.enrollment_keys()
    }
    fn revoke_enrollment_key(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        self.inner.revoke_enrollment_key(id, now)
    }
    fn enroll(
        &self,
        h: SecretHash,
        d: &DeviceRecord,
        now: u64,
    ) -> Result<EnrollOutcome, StoreError> {
        self.inner.enroll(h, d, now)
    }
    fn add_operator_token(&self, t: &OperatorToken) -> Result<(), StoreError> {
        self.inner.add_operator_token(t)
    }
    fn operator_token(&self, h: &SecretHash) -> Result<Option<OperatorToken>, StoreError> {
        self.inner.operator_token(h)
    }
    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError> {
        self.inner.operator_tokens()
    }
    fn revoke_operator_token(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        self.inner.revoke_operator_token(id, now)
    }
    fn touch_operator_token(&self, h: &SecretHash, now: u64) -> Result<(), StoreError> {
        self.inner.touch_operator_token(h, now)
    }
    fn token_owner(&self, h: &SecretHash) -> Result<Option<Principal>, StoreError> {
        self.inner.token_owner(h)
    }
    fn replace_device_token(&self, d: &str, h: Option<SecretHash>) -> Result<bool, StoreError> {
        self.inner.replace_device_token(d, h)
    }
}

impl SessionStore for CrashBeforeMark {
    fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.inner.create_session(s)
    }
    fn session(&self, h: &SecretHash) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.session(h)
    }
    fn touch_session(&self, h: &SecretHash, now: u64) -> Result<(), StoreError> {
        self.inner.touch_session(h, now)
    }
    fn delete_session(&self, h: &SecretHash) -> Result<(), StoreError> {
        self.inner.delete_session(h)
    }
    fn purge_sessions(&self, now: u64, idle_ms: u64) -> Result<usize, StoreError> {
        self.inner.purge_sessions(now, idle_ms)
    }
}

impl DeviceStore for CrashBeforeMark {
    fn device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.inner.device(id)
    }
    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.inner.devices()
    }
    fn touch_device(&self, id: &str, now: u64) -> Result<(), StoreError> {
        self.inner.touch_device(id, now)
    }
    fn device_settings(&self, d: &str) -> Result<Option<DeviceSettings>, StoreError> {
        self.inner.device_settings(d)
    }
    fn set_device_settings(&self, d: &str, s: &DeviceSettings) -> Result<bool, StoreError> {
        self.inner.set_device_settings(d, s)
    }
}

impl PackageStore for CrashBeforeMark {
    fn package(&self, d: &str, p: &str) -> Result<Option<PackageRecord>, StoreError> {
        self.inner.package(d, p)
    }
    fn record_accepted(&self, r: &PackageRecord) -> Result<Recorded, StoreError> {
        self.inner.record_accepted(r)
    }
    fn mark_processed(
        &self,
        d: &str,
        p: &str,
        now: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError> {
        if self.crash.load(Ordering::SeqCst) {
            return Err(StoreError::new("test", "crash before mark_processed"));
        }
        self.inner.mark_processed(d, p, now, failed, problems)
    }
    fn packages_newest_first(
        &self,
        d: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        self.inner.packages_newest_first(d, before, limit)
    }
    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError> {
        self.inner.unprocessed()
    }
}

impl DriftStore for CrashBeforeMark {
    fn put_drift_events(&self, e: &[DriftEventView]) -> Result<usize, StoreError> {
        self.inner.put_drift_events(e)
    }
    fn drift_event(&self, id: u64) -> Result<Option<DriftEventView>, StoreError> {
        self.inner.drift_event(id)
    }
    fn drift_events(
        &self,
        f: &DriftEventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DriftEventView>, StoreError> {
        self.inner.drift_events(f, after, limit)
    }
    fn decide_drift_event(
        &self,
        id: u64,
        d: &Decision,
        fb: &[FeedbackVerdict],
    ) -> Result<DecideOutcome, StoreError> {
        self.inner.decide_drift_event(id, d, fb)
    }
    fn append_feedback(
        &self,
        d: &str,
        v: &[FeedbackVerdict],
        now: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.inner.append_feedback(d, v, now)
    }
    fn feedback_after(
        &self,
        d: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        self.inner.feedback_after(d, after, limit)
    }
    fn record_feedback_results(
        &self,
        d: &str,
        results: &[tinylcm_protocol::api::FeedbackResult],
    ) -> Result<usize, StoreError> {
        self.inner.record_feedback_results(d, results)
    }
    fn ack_feedback(&self, d: &str, up_to: u64) -> Result<u64, StoreError> {
        self.inner.ack_feedback(d, up_to)
    }
}

impl LearningStore for CrashBeforeMark {
    fn put_learning_events(
        &self,
        e: &[tinylcm_protocol::learning::LearningEventView],
    ) -> Result<usize, StoreError> {
        self.inner.put_learning_events(e)
    }
    fn learning_events(
        &self,
        d: &str,
        limit: usize,
    ) -> Result<Vec<tinylcm_protocol::learning::LearningEventView>, StoreError> {
        self.inner.learning_events(d, limit)
    }
    fn queue_class_rename(&self, d: &str, r: &ClassRename) -> Result<u64, StoreError> {
        self.inner.queue_class_rename(d, r)
    }
    fn class_renames(
        &self,
        d: &str,
        limit: usize,
    ) -> Result<Vec<tinylcm_protocol::learning::ClassRenameView>, StoreError> {
        self.inner.class_renames(d, limit)
    }
}

impl PredictionStore for CrashBeforeMark {
    fn put_predictions(&self, p: &[PredictionView]) -> Result<usize, StoreError> {
        self.inner.put_predictions(p)
    }
    fn predictions(
        &self,
        f: &PredictionFilter,
        after: Option<&PredictionCursor>,
        limit: usize,
    ) -> Result<Vec<PredictionView>, StoreError> {
        self.inner.predictions(f, after, limit)
    }
}

impl ReleaseStore for CrashBeforeMark {
    fn put_release(&self, r: &ReleaseRecord) -> Result<Recorded, StoreError> {
        self.inner.put_release(r)
    }
    fn release(&self, n: &str, v: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        self.inner.release(n, v)
    }
    fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        self.inner.releases()
    }
    fn set_rollout(&self, r: &Rollout) -> Result<(), StoreError> {
        self.inner.set_rollout(r)
    }
    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.inner.rollouts()
    }
    fn grant_release(&self, d: &str, n: &str, v: &str) -> Result<(), StoreError> {
        self.inner.grant_release(d, n, v)
    }
    fn release_granted(&self, d: &str, n: &str, v: &str) -> Result<bool, StoreError> {
        self.inner.release_granted(d, n, v)
    }
}

impl ConfigStore for CrashBeforeMark {
    fn set_scope_config(&self, l: &ConfigLayer) -> Result<(), StoreError> {
        self.inner.set_scope_config(l)
    }
    fn scope_configs(&self) -> Result<Vec<ConfigLayer>, StoreError> {
        self.inner.scope_configs()
    }
}

impl MetricStore for CrashBeforeMark {
    fn put_metrics(&self, d: &str, p: &str, t: u64, m: &[(String, f64)]) -> Result<(), StoreError> {
        self.inner.put_metrics(d, p, t, m)
    }
    fn metric_series(
        &self,
        d: &str,
        k: &str,
        since: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        self.inner.metric_series(d, k, since, until, max)
    }
    fn metric_keys(&self, d: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.metric_keys(d, limit)
    }
}

#[test]
fn reprocessing_after_a_crash_stores_no_duplicates_and_bad_members_are_problems() {
    each_backend(
        "reprocessing_after_a_crash_stores_no_duplicates_and_bad_members_are_problems",
        |b| {
            let device = {
                // A run that accepts the package and dies after storing its drift events but before
                // marking it processed.
                let tracking = Arc::new(CrashBeforeMark {
                    inner: b.tracking(),
                    crash: AtomicBool::new(true),
                });
                let sphere = Sphere::new(tracking.clone(), b.blobs());
                let device = sphere_lite::test_support::enrolled(&sphere, None).device_id;
                let mut b = PackageBuilder::new("crashy", &device, 1).unwrap();
                b.add("metrics.json", FileKind::Metrics, b"{\"n\":1}".to_vec())
                    .unwrap();
                b.add(
                    "drift-events.json",
                    FileKind::DriftEvents,
                    json!([
                        report(1, "adwin", 1000, &[THUMB_A]),
                        report(2, "cusum", 2000, &[THUMB_A, "samples/nope.jpg", THUMB_A]),
                    ])
                    .to_string()
                    .into_bytes(),
                )
                .unwrap();
                b.add(
                    "more/broken-drift.json",
                    FileKind::DriftEvents,
                    b"[{\"event_seq\": 3, \"detector\": ".to_vec(),
                )
                .unwrap();
                b.add(THUMB_A, FileKind::Sample, vec![0xff, 0xd8, 9])
                    .unwrap();
                sphere.accept_upload(&device, &b.finish().unwrap()).unwrap();
                assert!(sphere.process(&device, "crashy").is_err());
                assert_eq!(sphere.pending_count().unwrap(), 1);
                device
            };

            // The next start processes the package again before serving.
            let operator = {
                let sphere = b.open();
                sphere.create_operator_token("bob").unwrap()
            };
            let server = TestServer::start(b.open());
            let (status, body) = server.get(paths::DRIFT_EVENTS, Some(&operator));
            assert_eq!(status, 200, "{body}");
            let list = events(&body);
            assert_eq!(
                list.iter().map(|e| e.event_seq).collect::<Vec<_>>(),
                [1, 2],
                "{list:?}"
            );
            // The unknown sample name is dropped, the known one kept.
            assert_eq!(
                list[1].samples,
                [format!("devices/{device}/packages/crashy/{THUMB_A}")]
            );
            drop(server);

            // The rest of the package is kept; the bad member and the unknown sample are problems.
            let sphere = b.open();
            let record = sphere.package_record(&device, "crashy").unwrap().unwrap();
            assert!(record.processed_unix_ms.is_some());
            assert_eq!(record.failed, None);
            assert_eq!(record.problems.len(), 2, "{:?}", record.problems);
            assert!(
                record
                    .problems
                    .iter()
                    .any(|p| p.contains("more/broken-drift.json"))
            );
            assert!(
                record
                    .problems
                    .iter()
                    .any(|p| p.contains("samples/nope.jpg"))
            );
            assert_eq!(
                b.blob(&format!("devices/{device}/packages/crashy/metrics.json"))
                    .unwrap(),
                b"{\"n\":1}"
            );
            assert_eq!(sphere.pending_count().unwrap(), 0);
        },
    );
}
