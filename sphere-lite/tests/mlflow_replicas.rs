//! Several sphere-lite replicas on one MLflow: two `MlflowTracking` instances on the same
//! namespace, driven from many threads at once, against a real MLflow server
//! (`SPHERE_TEST_MLFLOW_URL`; unset, they skip with a note, or fail under `./scripts/test`).
//! These check the guarantees the adapter's module docs promise: exact enrollment-key uses,
//! one decision per event, unique increasing feedback ids, acks that never move backwards,
//! harmless package duplicates (counted once, points stored once), a batch of packages processed
//! by both replicas at once (each point once in MLflow, a few MLflow calls per batch), work a
//! dead replica left finished by another, and the bound on how long a rotated device token works
//! elsewhere.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere_lite::adapters::{MlflowSettings, MlflowTracking, S3Blobs, S3Settings};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::prelude::*;
use sphere_lite::ports::{
    BlobKey, Blobs, DecideOutcome, Decision, DeviceRecord, DriftEventFilter, EnrollOutcome,
    EnrollmentKey, PackageRecord, Recorded,
};
use tinylcm_protocol::api::{DriftEventStatus, DriftEventView, DriftVerdict, FeedbackVerdict};
use tinylcm_protocol::package::{FileKind, PackageBuilder};

#[path = "support/mlflow_rest.rs"]
mod mlflow_rest;

/// Two replicas' adapters on a fresh namespace (package records in S3 under a fresh prefix),
/// or `None` without MLflow and S3 (`test_support::missing`).
fn replicas(test: &str) -> Option<[Arc<MlflowTracking>; 2]> {
    replicas_with(test, |t| t)
}

/// As [`replicas`], each adapter set up by `setup` after opening.
fn replicas_with(
    test: &str,
    setup: impl Fn(MlflowTracking) -> MlflowTracking,
) -> Option<[Arc<MlflowTracking>; 2]> {
    replicas_setup(test, setup).map(|(r, ..)| r)
}

/// As [`replicas`], with the S3 settings of the blobs (the package records are under
/// [`S3Settings::tracking`]) and the MLflow settings.
fn replicas_s3(test: &str) -> Option<([Arc<MlflowTracking>; 2], S3Settings, MlflowSettings)> {
    replicas_setup(test, |t| t)
}

fn replicas_setup(
    test: &str,
    setup: impl Fn(MlflowTracking) -> MlflowTracking,
) -> Option<([Arc<MlflowTracking>; 2], S3Settings, MlflowSettings)> {
    let (Ok(url), Ok(endpoint)) = (
        std::env::var("SPHERE_TEST_MLFLOW_URL"),
        std::env::var("SPHERE_TEST_S3_ENDPOINT"),
    ) else {
        tinylcm_protocol::test_support::missing(
            &format!(
                "{test}: MLflow and S3 (SPHERE_TEST_MLFLOW_URL or SPHERE_TEST_S3_ENDPOINT is not set)"
            ),
            "run ./scripts/test sphere, which starts MLflow and SeaweedFS and sets them",
        );
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let space = format!("t/replicas-{test}-{nanos:x}");
    let settings = MlflowSettings {
        url,
        namespace: space.clone(),
        metric_keys: Default::default(),
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let s3 = S3Settings {
        endpoint,
        bucket: "sphere-domain-test".into(),
        access_key: var("SPHERE_TEST_S3_ACCESS_KEY"),
        secret_key: var("SPHERE_TEST_S3_SECRET_KEY"),
        region: std::env::var("SPHERE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        prefix: Some(space),
    };
    let a = setup(MlflowTracking::open_with_s3(&settings, &s3).unwrap());
    let b = setup(MlflowTracking::open_with_s3(&settings, &s3).unwrap());
    Some(([Arc::new(a), Arc::new(b)], s3, settings))
}

fn device(id: &str, token: u8) -> DeviceRecord {
    DeviceRecord {
        device_id: id.into(),
        name: Some("pi".into()),
        hardware: None,
        token_hash: [token; 32],
        enrolled_unix_ms: 1,
        last_seen_unix_ms: 1,
        packages: 0,
    }
}

fn event(device: &str, seq: u64) -> DriftEventView {
    DriftEventView {
        id: 0,
        device_id: device.into(),
        package_id: "p".into(),
        event_seq: seq,
        epoch: None,
        incident: 1,
        detector: "adwin' or tags.x = 'y".into(),
        statistic: 2.0,
        threshold: 1.0,
        magnitude: 0.5,
        sample_id: 3,
        unix_ms: 100 + seq,
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

/// A key of `uses` uses without expiry.
fn key(hash: [u8; 32], uses: u32) -> EnrollmentKey {
    EnrollmentKey {
        id: format!("key-{}", hash[0]),
        name: None,
        key_hash: hash,
        remaining: Some(uses),
        used: 0,
        created_unix_ms: 1,
        expires_unix_ms: None,
        revoked_unix_ms: None,
    }
}

#[test]
fn an_enrollment_key_enrolls_exactly_its_uses_across_replicas() {
    let Some(r) = replicas("enroll") else { return };
    r[0].add_enrollment_key(&key([7; 32], 3)).unwrap();
    let outcomes: Vec<EnrollOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let t = r[usize::from(i % 2)].clone();
                s.spawn(move || {
                    t.enroll([7; 32], &device(&format!("dev-{i}"), i), 1)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let enrolled = outcomes
        .iter()
        .filter(|o| **o == EnrollOutcome::Enrolled)
        .count();
    assert_eq!(enrolled, 3, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == EnrollOutcome::KeyUsedUp)
            .count(),
        5
    );
    assert_eq!(r[1].devices().unwrap().len(), 3);
    assert_eq!(
        r[1].enroll([8; 32], &device("dev-x", 99), 1).unwrap(),
        EnrollOutcome::UnknownKey
    );
}

#[test]
fn one_decision_wins_across_replicas_and_feedback_ids_stay_unique() {
    let Some(r) = replicas("decide") else { return };
    r[0].add_enrollment_key(&key([1; 32], 1)).unwrap();
    assert_eq!(
        r[0].enroll([1; 32], &device("dev-a", 1), 1).unwrap(),
        EnrollOutcome::Enrolled
    );
    assert_eq!(r[1].put_drift_events(&[event("dev-a", 1)]).unwrap(), 1);
    // The same report again, through the other replica: stored once.
    assert_eq!(r[0].put_drift_events(&[event("dev-a", 1)]).unwrap(), 0);
    let all = r[0]
        .drift_events(&DriftEventFilter::default(), 0, 10)
        .unwrap();
    assert_eq!(all.len(), 1);
    // The detector name with quotes is data, found through the hex tag, never a filter clause.
    let by_detector = DriftEventFilter {
        detector: Some("adwin' or tags.x = 'y".into()),
        ..Default::default()
    };
    assert_eq!(r[1].drift_events(&by_detector, 0, 10).unwrap().len(), 1);
    let other = DriftEventFilter {
        detector: Some("adwin".into()),
        ..Default::default()
    };
    assert!(r[1].drift_events(&other, 0, 10).unwrap().is_empty());

    let id = all[0].id;
    let verdict = FeedbackVerdict::Drift {
        incident: None,
        event: Some(1),
        verdict: DriftVerdict::Confirmed,
    };
    let outcomes: Vec<DecideOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let t = r[i % 2].clone();
                let verdict = verdict.clone();
                s.spawn(move || {
                    let decision = Decision {
                        status: if i % 2 == 0 {
                            DriftEventStatus::Validated
                        } else {
                            DriftEventStatus::Rejected
                        },
                        label: None,
                        note: Some(format!("attempt {i}")),
                        by: format!("op-{i}"),
                        // Now, not a fixed old time: a decision older than
                        // DECISION_REPAIR_AFTER_MS lets a loser "repair" the winner's missing
                        // feedback while the winner is still writing it (a hidden duplicate id,
                        // deduplicated on read, that made the id check below flaky).
                        unix_ms: tinylcm_protocol::time::now_unix_ms(),
                    };
                    t.decide_drift_event(id, &decision, &[verdict]).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&DriftEventView> = outcomes
        .iter()
        .filter_map(|o| match o {
            DecideOutcome::Decided(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0];
    // Everyone else sees the winner's decision, note included.
    for o in &outcomes {
        if let DecideOutcome::AlreadyDecided(e) = o {
            assert_eq!(e.decided_by, winner.decided_by);
            assert_eq!(e.note, winner.note);
        }
    }
    assert_eq!(r[1].drift_event(id).unwrap().as_ref(), Some(winner));
    let status = DriftEventFilter {
        status: Some(winner.status),
        ..Default::default()
    };
    assert_eq!(r[0].drift_events(&status, 0, 10).unwrap().len(), 1);
    assert_eq!(r[0].feedback_after("dev-a", 0, 100).unwrap().len(), 1);

    // Concurrent appends through both replicas: every id given once, 2..=31 in all.
    let v = |id| FeedbackVerdict::Sample {
        id,
        label: None,
        reject: true,
    };
    let ids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let t = r[i % 2].clone();
                s.spawn(move || {
                    t.append_feedback("dev-a", &[v(1), v(2), v(3), v(4), v(5)], 9)
                        .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 30, "{ids:?}");
    assert_eq!(unique, (2..=31).collect());
    let items = r[1].feedback_after("dev-a", 0, 100).unwrap();
    assert_eq!(items.len(), 31);
    assert!(items.windows(2).all(|w| w[0].id < w[1].id));

    // Acks from both replicas: the watermark only moves forward and is clamped.
    assert_eq!(r[0].ack_feedback("dev-a", 20).unwrap(), 20);
    assert_eq!(r[1].ack_feedback("dev-a", 5).unwrap(), 20);
    assert_eq!(r[1].ack_feedback("dev-a", 1000).unwrap(), 31);
    assert!(r[0].feedback_after("dev-a", 0, 100).unwrap().is_empty());
    assert_eq!(r[0].append_feedback("dev-a", &[v(9)], 10).unwrap(), [32]);
}

#[test]
fn a_package_recorded_by_two_replicas_at_once_is_one_package() {
    let Some(r) = replicas("packages") else {
        return;
    };
    r[0].add_enrollment_key(&key([2; 32], 1)).unwrap();
    r[0].enroll([2; 32], &device("dev-b", 2), 1).unwrap();
    let record = PackageRecord {
        device_id: "dev-b".into(),
        package_id: "p1".into(),
        raw_key: "incoming/dev-b/p1.tar".into(),
        accepted_unix_ms: 5,
        processed_unix_ms: None,
        failed: None,
        problems: vec![],
    };
    let outcomes: Vec<Recorded> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let t = r[i % 2].clone();
                let record = record.clone();
                s.spawn(move || t.record_accepted(&record).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Never lost: at least one replica recorded it; look-ups see one record.
    assert!(outcomes.contains(&Recorded::New), "{outcomes:?}");
    assert_eq!(r[1].package("dev-b", "p1").unwrap(), Some(record.clone()));
    assert_eq!(r[0].unprocessed().unwrap(), vec![record.clone()]);
    assert_eq!(
        r[1].record_accepted(&record).unwrap(),
        Recorded::AlreadyKnown
    );
    let problems = vec!["x".to_string()];
    r[1].mark_processed("dev-b", "p1", 9, None, &problems)
        .unwrap();
    assert!(r[0].unprocessed().unwrap().is_empty());
    let done = r[0].package("dev-b", "p1").unwrap().unwrap();
    assert_eq!((done.processed_unix_ms, done.problems), (Some(9), problems));
    // Counted once: the count is the number of records, one per package id.
    assert_eq!(r[0].devices().unwrap()[0].packages, 1);
    assert_eq!(r[1].devices().unwrap()[0].packages, 1);

    // Both replicas process it (a restarted replica's sweep racing the one that accepted
    // it): its metric points are stored once, whichever writes them and how often.
    let points = vec![("cpu".to_string(), 0.5), ("fps".to_string(), 9.0)];
    let at = tinylcm_protocol::time::now_unix_ms();
    std::thread::scope(|s| {
        for i in 0..4 {
            let (t, points) = (r[i % 2].clone(), points.clone());
            s.spawn(move || t.put_metrics("dev-b", "p1", at, &points).unwrap());
        }
    });
    for t in &r {
        assert_eq!(
            t.metric_series("dev-b", "cpu", at - 1, at + 1, 100)
                .unwrap(),
            vec![(at, 0.5)]
        );
    }
}

/// A package of `keys` metric keys (`k00`, `k01`, …) whose values say which package and key
/// they are, created at `at`.
fn metrics_package(device: &str, id: &str, n: u64, at: u64, keys: u64) -> Vec<u8> {
    let doc: serde_json::Map<String, serde_json::Value> = (0..keys)
        .map(|k| (format!("k{k:02}"), serde_json::json!(n * 100 + k)))
        .collect();
    let mut b = PackageBuilder::new(id, device, at).unwrap();
    b.add(
        "metrics.json",
        FileKind::Metrics,
        serde_json::Value::Object(doc).to_string().into_bytes(),
    )
    .unwrap();
    b.finish().unwrap()
}

/// Fails on the per-package path (one MLflow `log-batch` per package: 24 calls or more for this
/// batch), and if the batch path dropped the points past one call's 1000, or stored a point
/// twice when both replicas log it.
#[test]
fn a_batch_processed_by_two_replicas_at_once_logs_each_point_once_in_a_few_calls() {
    /// 2025-11-26 09:00:00 UTC.
    const T: u64 = 1_764_147_600_000;
    const DAY: u64 = 86_400_000;
    const KEYS: u64 = 60;
    let Some((r, s3, mlflow)) = replicas_s3("batch") else {
        return;
    };
    let blobs: Arc<dyn Blobs> = Arc::new(S3Blobs::open(&s3).unwrap());
    let spheres: Vec<Sphere> = r
        .iter()
        .map(|t| Sphere::new(t.clone(), blobs.clone()))
        .collect();
    let device = sphere_lite::test_support::enrolled(&spheres[0], None).device_id;
    // (package id, n, time): package n at T + n s on day one (21 of them: 1260 points, more
    // than one log-batch takes), or on day two (5).
    let packages: Vec<(String, u64, u64)> = (0..26)
        .map(|n| {
            let at = if n < 21 { T } else { T + DAY };
            (format!("p{n:02}"), n, at + n * 1000)
        })
        .collect();
    for (id, n, at) in &packages {
        let body = metrics_package(&device, id, *n, *at, KEYS);
        spheres[0].accept_upload(&device, &body).unwrap();
    }
    // Each replica first processes one package of each day alone: the day runs exist and
    // both replicas know them, as in a server that has been running.
    for (replica, warm) in [(0, ["p00", "p21"]), (1, ["p01", "p22"])] {
        let jobs: Vec<(String, String)> = warm
            .iter()
            .map(|id| (device.clone(), id.to_string()))
            .collect();
        assert_eq!(spheres[replica].process_batch(&jobs).unwrap(), 2);
    }
    // The other 22 at once on both replicas (a sweep racing the replica that accepted them).
    let jobs: Vec<(String, String)> = packages
        .iter()
        .map(|(id, ..)| (device.clone(), id.clone()))
        .filter(|(_, id)| !["p00", "p21", "p01", "p22"].contains(&id.as_str()))
        .collect();
    let before: u64 = r.iter().map(|t| t.mlflow_calls()).sum();
    std::thread::scope(|s| {
        for sphere in &spheres {
            let jobs = &jobs;
            s.spawn(move || sphere.process_batch(jobs).unwrap());
        }
    });
    let calls = r.iter().map(|t| t.mlflow_calls()).sum::<u64>() - before;
    // Each replica: day one's 18 packages (1080 points) in two log-batches, day two's 4 in one.
    assert!(
        calls <= 6,
        "{calls} MLflow calls for 22 packages on two replicas"
    );

    // Every package processed once, counted once.
    assert!(r[0].unprocessed().unwrap().is_empty());
    for (id, ..) in &packages {
        let record = r[1].package(&device, id).unwrap().unwrap();
        assert!(record.processed_unix_ms.is_some() && record.failed.is_none());
    }
    assert_eq!(r[1].devices().unwrap()[0].packages, 26);

    // What the MLflow UI charts: every package's point of each key, once.
    let runs = mlflow_rest::day_runs(&mlflow.url, &mlflow.namespace, &device);
    assert_eq!(runs.len(), 2, "one run per day: {runs:?}");
    for (day, run) in runs.iter().enumerate() {
        for k in [0, KEYS / 2, KEYS - 1] {
            let want: Vec<(i64, i64, f64)> = packages
                .iter()
                .filter(|(_, _, at)| (at - T) / DAY == day as u64)
                .map(|(_, n, at)| {
                    let step = ((at % DAY) / 1000) as i64;
                    (step, *at as i64, (n * 100 + k) as f64)
                })
                .collect();
            assert_eq!(
                mlflow_rest::history(&mlflow.url, run, &format!("k{k:02}")),
                want,
                "day {day}, key k{k:02}"
            );
        }
    }
}

#[test]
fn a_package_accepted_by_a_replica_that_died_midway_is_finished_by_another() {
    let Some((r, s3, _)) = replicas_s3("crash") else {
        return;
    };
    r[0].add_enrollment_key(&key([5; 32], 1)).unwrap();
    r[0].enroll([5; 32], &device("dev-d", 5), 1).unwrap();
    let record = PackageRecord {
        device_id: "dev-d".into(),
        package_id: "p9".into(),
        raw_key: "incoming/dev-d/p9.tar".into(),
        accepted_unix_ms: 7,
        processed_unix_ms: None,
        failed: None,
        problems: vec![],
    };
    assert_eq!(r[0].record_accepted(&record).unwrap(), Recorded::New);
    // Replica A died after writing the pending copy, before the record itself.
    let objects = S3Blobs::open(&s3.tracking()).unwrap();
    objects
        .delete(&BlobKey::new("packages/dev-d/p9.json").unwrap())
        .unwrap();
    assert_eq!(r[1].package("dev-d", "p9").unwrap(), None);
    // Replica B's sweep finds the work, completes the record, and processes it.
    assert_eq!(r[1].unprocessed().unwrap(), vec![record.clone()]);
    assert_eq!(r[1].package("dev-d", "p9").unwrap(), Some(record.clone()));
    assert_eq!(
        r[0].packages_newest_first("dev-d", None, 10).unwrap(),
        vec![record.clone()]
    );
    r[1].mark_processed("dev-d", "p9", 8, None, &[]).unwrap();
    assert!(r[0].unprocessed().unwrap().is_empty());
    // The device's retry of the same package (it never got its 200) is a duplicate.
    assert_eq!(
        r[0].record_accepted(&record).unwrap(),
        Recorded::AlreadyKnown
    );
}

#[test]
fn a_rotated_device_token_stops_working_on_every_replica_within_the_cache_ttl() {
    let ttl = Duration::from_millis(800);
    let Some(r) = replicas_with("token-ttl", |t| t.with_device_cache_ttl(ttl)) else {
        return;
    };
    r[0].add_enrollment_key(&key([3; 32], 1)).unwrap();
    r[0].enroll([3; 32], &device("dev-c", 3), 1).unwrap();
    // Replica B reads the device (an upload's authorisation) and keeps it.
    let cached_at = Instant::now();
    assert_eq!(r[1].device("dev-c").unwrap().unwrap().token_hash, [3; 32]);
    // The operator rotates the token through replica A: A refuses the old one at once.
    assert!(r[0].replace_device_token("dev-c", Some([4; 32])).unwrap());
    assert_eq!(r[0].device("dev-c").unwrap().unwrap().token_hash, [4; 32]);
    let seen_by_b = r[1].device("dev-c").unwrap().unwrap().token_hash;
    if cached_at.elapsed() < ttl {
        // The bound is real: B still trusts what it read.
        assert_eq!(seen_by_b, [3; 32]);
    }
    // ... and no longer than the TTL.
    std::thread::sleep(ttl);
    assert_eq!(r[1].device("dev-c").unwrap().unwrap().token_hash, [4; 32]);
}

/// A verdict to queue as feedback.
fn sample(id: u64) -> FeedbackVerdict {
    FeedbackVerdict::Sample {
        id,
        label: None,
        reject: true,
    }
}

#[test]
fn feedback_queued_on_one_replica_is_polled_on_the_other_and_empty_polls_skip_mlflow() {
    let Some((r, s3, settings)) = replicas_s3("feedback-marks") else {
        return;
    };
    r[0].add_enrollment_key(&key([6; 32], 2)).unwrap();
    r[0].enroll([6; 32], &device("dev-f", 6), 1).unwrap();
    // The empty queue, polled on either replica: no MLflow request (S3 marks say so).
    let polls_without_mlflow = |t: &MlflowTracking, after: u64| {
        let before = t.mlflow_calls();
        let items = t.feedback_after("dev-f", after, 10).unwrap();
        assert_eq!(t.mlflow_calls(), before, "poll after {after} read MLflow");
        items
    };
    assert!(polls_without_mlflow(&r[1], 0).is_empty());
    assert!(polls_without_mlflow(&r[0], 0).is_empty());
    // Queued through A: B's very next poll delivers it (no waiting for a cache to expire).
    assert_eq!(r[0].append_feedback("dev-f", &[sample(1)], 5).unwrap(), [1]);
    let items = r[1].feedback_after("dev-f", 0, 10).unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [1]);
    assert!(polls_without_mlflow(&r[1], 1).is_empty());
    // And the other way round.
    assert_eq!(r[1].append_feedback("dev-f", &[sample(2)], 6).unwrap(), [2]);
    let items = r[0].feedback_after("dev-f", 1, 10).unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [2]);
    assert!(polls_without_mlflow(&r[0], 2).is_empty());
    // Each new mark deletes the lower ones: the device keeps one, not one per item ever
    // queued, and polls from an old cursor still find the items above it.
    assert_eq!(r[0].append_feedback("dev-f", &[sample(3)], 7).unwrap(), [3]);
    let marks = S3Blobs::open(&s3.tracking())
        .unwrap()
        .list("feedback/dev-f/")
        .unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert!(
        marks[0].as_str().ends_with("00000000000000000003"),
        "{marks:?}"
    );
    let items = r[1].feedback_after("dev-f", 1, 10).unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [2, 3]);
    assert!(polls_without_mlflow(&r[1], 3).is_empty());

    // A device enrolled, and fed, by a replica without marks (the version before them):
    // its items are still delivered, and once read its empty polls skip MLflow too.
    let unmarked = MlflowTracking::open(&settings).unwrap();
    unmarked.enroll([6; 32], &device("dev-g", 7), 1).unwrap();
    assert_eq!(
        unmarked.append_feedback("dev-g", &[sample(3)], 7).unwrap(),
        [1]
    );
    let items = r[1].feedback_after("dev-g", 0, 10).unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [1]);
    let before = r[0].mlflow_calls();
    assert!(r[0].feedback_after("dev-g", 1, 10).unwrap().is_empty());
    assert_eq!(r[0].mlflow_calls(), before);
}

#[test]
fn a_key_enrolls_exactly_its_uses_when_more_devices_enroll_at_once_through_two_replicas() {
    let Some(r) = replicas("enroll-many") else {
        return;
    };
    let uses = 12;
    r[0].add_enrollment_key(&key([9; 32], uses)).unwrap();
    let outcomes: Vec<EnrollOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20u8)
            .map(|i| {
                let t = r[usize::from(i % 2)].clone();
                s.spawn(move || {
                    t.enroll([9; 32], &device(&format!("dev-m{i}"), 100 + i), 1)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |o: EnrollOutcome| outcomes.iter().filter(|x| **x == o).count();
    assert_eq!(count(EnrollOutcome::Enrolled), 12, "{outcomes:?}");
    assert_eq!(count(EnrollOutcome::KeyUsedUp), 8, "{outcomes:?}");
    let key = &r[1].enrollment_keys().unwrap()[0];
    assert_eq!((key.used, key.remaining), (12, Some(0)));
    assert_eq!(r[0].devices().unwrap().len(), 12);
}

#[test]
fn a_rotated_device_token_stops_working_on_the_other_replica_within_the_announcement_poll() {
    // The server's setting: package store in S3, default cache TTL (a minute with it).
    let Some((r, s3, _)) = replicas_s3("token-announced") else {
        return;
    };
    // An announcement from long ago (a day old), which no listing needs any more.
    let records = S3Blobs::open(&s3.tracking()).unwrap();
    let old_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 86_400_000;
    let old = BlobKey::new(format!("device-changes/{old_ms:013}-dev-old-00")).unwrap();
    records.put(&old, &[]).unwrap();
    r[0].add_enrollment_key(&key([11; 32], 1)).unwrap();
    r[0].enroll([11; 32], &device("dev-t", 11), 1).unwrap();
    assert_eq!(r[1].device("dev-t").unwrap().unwrap().token_hash, [11; 32]);
    assert!(r[0].replace_device_token("dev-t", Some([12; 32])).unwrap());
    // B's cached record is dropped at its next listing of the announcements, long before the
    // cache TTL (and before the 10 s TTL of the version without announcements).
    std::thread::sleep(sphere_lite::adapters::mlflow::tracking::DEVICE_CHANGES_POLL);
    assert_eq!(r[1].device("dev-t").unwrap().unwrap().token_hash, [12; 32]);
    // Revoked the same way.
    assert!(r[1].replace_device_token("dev-t", None).unwrap());
    std::thread::sleep(sphere_lite::adapters::mlflow::tracking::DEVICE_CHANGES_POLL);
    assert_eq!(r[0].device("dev-t").unwrap().unwrap().token_hash, [0; 32]);
    // The replicas' first listings deleted the day-old announcement and kept today's two.
    let left = records.list("device-changes/").unwrap();
    assert!(!left.contains(&old), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
}
