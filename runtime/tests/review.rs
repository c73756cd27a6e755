//! A human's label must land: the quarantine keeps a sample under review while it fills past
//! its limit, bounds what it keeps for review, and a label for a sample that left the
//! quarantine anyway still teaches the KNN through the features its drift event carried.

use std::path::Path;
use std::time::Duration;

use tinylcm::autonomy::feedback::{
    FeedbackFile, Inbox, Item, Outcome, SampleVerdict, SourceItems, Submit as _, apply_sample,
};
use tinylcm::frame::Frame;
use tinylcm::knn::{Knn, KnnConfig};
use tinylcm::quarantine::review::{self, ReviewCopy};
use tinylcm::quarantine::{Candidate, Quarantine, QuarantineConfig, ReasonRef, Status};
use tinylcm::state::{Batch, DurabilityPolicy, Store};

const HOUR_MS: u64 = 3_600_000;
const T0: u64 = 1_800_000_000_000;

fn open_store(dir: &Path) -> std::sync::Arc<Store> {
    std::sync::Arc::new(Store::open(dir.join("state.redb"), DurabilityPolicy::default()).unwrap())
}

fn config(dir: &Path, max_under_review: usize) -> QuarantineConfig {
    QuarantineConfig {
        max_entries: 8,
        per_class_cap: 8,
        max_under_review,
        review_hours: 2,
        thumbnails: false,
        thumbnail_dir: dir.join("thumbs"),
        ..Default::default()
    }
}

/// Admits frame `sample` (its features start with `sample`) and submits the batch.
fn admit(q: &mut Quarantine, store: &Store, sample: u64, now: u64) -> u64 {
    let features = [sample as f32, 1.0, 0.0, 0.0];
    let mut b = Batch::new();
    let candidate = Candidate {
        sample,
        reason: ReasonRef::Drift { detector: "ph" },
        predicted: "box",
        confidence: 0.3,
        knn_distance: Some(2.0),
        features: &features,
    };
    let id = q
        .admit(candidate, &Frame::default(), now, &mut b)
        .unwrap()
        .expect("admitted");
    store.submit(b).unwrap();
    id
}

fn hold(q: &mut Quarantine, store: &Store, id: u64, now: u64) -> bool {
    let mut b = Batch::new();
    let held = q.hold_for_review(id, now, &mut b).unwrap();
    store.submit(b).unwrap();
    held
}

/// Fails before this change: the quarantine evicted the oldest pending entry whatever it
/// backed, so the sample of a drift event under review was gone after `max-entries` more
/// unusual frames (500 at 30 fps in about three minutes), and its label found nothing.
#[test]
fn a_sample_under_review_outlives_a_quarantine_that_turns_over_and_the_hold_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(config(dir.path(), 2), &store).unwrap();
    let reviewed = admit(&mut q, &store, 1, T0);
    let plain = admit(&mut q, &store, 2, T0);
    assert!(hold(&mut q, &store, reviewed, T0));
    for s in 3..100 {
        admit(&mut q, &store, s, T0 + s);
    }
    assert_eq!(q.len(), 8, "the caps still hold");
    assert!(q.get(reviewed).is_some(), "the sample under review is kept");
    assert!(q.get(plain).is_none(), "the others turn over");
    assert_eq!(q.stats().under_review, 1);

    // The hold survives a restart (it is part of the stored entry).
    store.flush().unwrap();
    q.close();
    let mut q = Quarantine::open(config(dir.path(), 2), &store).unwrap();
    assert_eq!(q.under_review(), [reviewed]);

    // At most max-under-review are held: a third hold releases the oldest.
    let second = admit(&mut q, &store, 200, T0 + 200);
    let third = admit(&mut q, &store, 201, T0 + 201);
    assert!(hold(&mut q, &store, second, T0 + 200));
    assert!(hold(&mut q, &store, third, T0 + 201));
    assert_eq!(q.under_review(), [second, third]);
    assert_eq!(q.stats().released, 1);

    // A verdict ends the hold; so does waiting longer than review-hours.
    let mut b = Batch::new();
    q.set_status(
        second,
        Status::Validated {
            label: "star".into(),
        },
        &mut b,
    )
    .unwrap();
    store.submit(b).unwrap();
    assert_eq!(q.under_review(), [third]);
    admit(&mut q, &store, 300, T0 + 3 * HOUR_MS);
    assert!(q.under_review().is_empty(), "released after review-hours");
    for s in 301..320 {
        admit(&mut q, &store, s, T0 + 3 * HOUR_MS + s);
    }
    assert!(
        q.get(third).is_none(),
        "evicted like any other once released"
    );

    // A drift verdict without a sample verdict releases the frame it named.
    let fourth = admit(&mut q, &store, 400, T0 + 4 * HOUR_MS);
    assert!(hold(&mut q, &store, fourth, T0 + 4 * HOUR_MS));
    let mut b = Batch::new();
    assert_eq!(q.release_review_of_sample(400, &mut b).unwrap(), 1);
    assert!(q.under_review().is_empty());
    store.submit(b).unwrap();
    store.flush().unwrap();
}

/// With holds off (`max-under-review = 0`, as every sample was before this change) a sample
/// of a drift event is evicted by the samples after it. Fails before this change: its label
/// was logged as `no such quarantine entry (evicted or expired?)` and taught nothing; now the
/// inbox finds the features the sync client sent with the event and the KNN learns the label
/// from them.
#[test]
fn a_label_for_an_evicted_sample_teaches_the_knn_through_the_features_its_event_carried() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(config(dir.path(), 0), &store).unwrap();
    let id = admit(&mut q, &store, 7, T0);
    assert!(!hold(&mut q, &store, id, T0), "holds are off");
    let sent = q.get(id).unwrap().features.clone();
    // What the sync client does when it packages the drift event with this sample.
    let mut b = Batch::new();
    review::remember(
        &store,
        vec![ReviewCopy {
            id,
            features: sent.clone(),
        }],
        &mut b,
    )
    .unwrap();
    store.submit(b).unwrap();
    for s in 8..40 {
        admit(&mut q, &store, s, T0 + s);
    }
    assert!(q.get(id).is_none(), "the quarantine turned over");
    store.flush().unwrap();

    // sphere-lite's label arrives as feedback item 5.
    let inbox_dir = dir.path().join("inbox");
    FeedbackFile {
        sample: vec![SampleVerdict {
            id,
            label: Some("star".into()),
            reject: false,
        }],
        items: SourceItems {
            sample: vec![5],
            ..SourceItems::default()
        },
        ..FeedbackFile::default()
    }
    .submit(&inbox_dir)
    .unwrap();
    let inbox = Inbox::start(inbox_dir.clone(), store.clone()).unwrap();
    let mut delivery = None;
    for _ in 0..100 {
        delivery = inbox.try_recv();
        if delivery.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut delivery = delivery.expect("the inbox delivers the file");
    let Item::Sample { verdict, carried } = delivery.items[0].clone() else {
        panic!("a sample verdict: {:?}", delivery.items);
    };
    assert_eq!(carried.as_deref(), Some(&sent[..]));

    let mut knn = Knn::new(sent.len(), KnnConfig::default()).unwrap();
    let mut b = Batch::new();
    let done = apply_sample(
        &verdict,
        carried.as_deref(),
        Some(&mut q),
        Some(&mut knn),
        T0 + 100,
        &mut b,
    );
    assert!(
        matches!(done.outcome, Outcome::Applied(Some(_))),
        "{done:?}"
    );
    assert!(done.event.is_some());
    let star = knn.labels().get("star").expect("the KNN learnt the class");
    assert_eq!(knn.class_count(star), 1);

    // Without the copy the device says why it could not apply it.
    let none = apply_sample(&verdict, None, Some(&mut q), Some(&mut knn), T0, &mut b);
    match none.outcome {
        Outcome::Refused(why) => assert!(why.contains("left the quarantine"), "{why}"),
        other => panic!("{other:?}"),
    }

    // Its result reaches the results folder once the delivery is acknowledged.
    delivery.record(0, done.outcome);
    inbox.ack(delivery);
    let mut results = Vec::new();
    for _ in 0..100 {
        results = tinylcm::autonomy::feedback::pending_results(&inbox_dir, 10);
        if !results.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(results.len(), 1, "one result file");
    let (_, r) = &results[0];
    assert_eq!(r[0].id, 5);
    assert_eq!(
        r[0].outcome,
        tinylcm_protocol::api::FeedbackOutcome::Applied
    );
    assert!(r[0].reason.as_deref().unwrap().contains("features"));
    drop(inbox);
}
