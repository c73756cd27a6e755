//! The quarantine against a real state store: caps by count, bytes, age and class with the
//! eviction preference; status transitions; persistence across reopening; damaged and
//! over-cap stored entries; thumbnails on disk; no allocation when a sample is not admitted.

use std::path::Path;
use std::time::Duration;

use tinylcm::frame::Frame;
use tinylcm::quarantine::{
    ADMITTED_COUNTER, Candidate, EVICTED_COUNTER, EXPIRED_COUNTER, Entry, Quarantine,
    QuarantineConfig, QuarantineError, Reason, ReasonRef, Status, StatusKind,
};
use tinylcm::state::{Batch, DurabilityPolicy, Store};

#[path = "support/alloc.rs"]
mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::Counting = alloc_support::Counting;

const HOUR_MS: u64 = 3_600_000;
const T0: u64 = 1_800_000_000_000;

fn open_store(dir: &Path) -> Store {
    let policy = DurabilityPolicy {
        commit_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    Store::open(dir.join("state.redb"), policy).unwrap()
}

/// Small caps, no thumbnails (most tests are about entries).
fn small(dir: &Path) -> QuarantineConfig {
    QuarantineConfig {
        max_entries: 4,
        per_class_cap: 4,
        thumbnails: false,
        thumbnail_dir: dir.join("thumbs"),
        ..Default::default()
    }
}

fn frame(w: u32, h: u32, seed: u8) -> Frame {
    let mut f = Frame::default();
    f.reshape(w, h);
    for (i, b) in f.data.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    f
}

fn candidate<'a>(sample: u64, class: &'a str, features: &'a [f32]) -> Candidate<'a> {
    Candidate {
        sample,
        reason: ReasonRef::FarFromKnown,
        predicted: class,
        confidence: 0.3,
        knn_distance: Some(1.25),
        features,
    }
}

/// Admits one sample of `class` (4 features) and submits its batch.
fn admit(q: &mut Quarantine, store: &Store, sample: u64, class: &str, now: u64) -> Option<u64> {
    let features = [sample as f32, 1.0, 2.0, 3.0];
    let mut b = Batch::new();
    let id = q
        .admit(
            candidate(sample, class, &features),
            &frame(8, 8, 0),
            now,
            &mut b,
        )
        .unwrap();
    store.submit(b).unwrap();
    id
}

fn set(q: &mut Quarantine, store: &Store, id: u64, status: Status) {
    let mut b = Batch::new();
    q.set_status(id, status, &mut b).unwrap();
    store.submit(b).unwrap();
}

fn ids(q: &Quarantine) -> Vec<u64> {
    q.iter().map(|e| e.id).collect()
}

/// The store holds exactly the entries the quarantine holds.
fn assert_mirrored(q: &Quarantine, store: &Store) {
    store.flush().unwrap();
    let stored: Vec<(u64, Entry)> = store.quarantine_entries(0, usize::MAX).unwrap();
    let held: Vec<(u64, Entry)> = q.iter().map(|e| (e.id, e.clone())).collect();
    assert_eq!(stored, held);
}

fn validated(label: &str) -> Status {
    Status::Validated {
        label: label.into(),
    }
}

#[test]
fn the_count_cap_evicts_resolved_entries_first_then_the_oldest_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    for s in 1..=4 {
        assert_eq!(admit(&mut q, &store, s, "a", T0), Some(s));
    }
    set(&mut q, &store, 3, validated("a"));
    set(&mut q, &store, 4, Status::Rejected);
    // Full: the oldest resolved entry (3) goes, not the older pending 1 and 2.
    assert_eq!(admit(&mut q, &store, 5, "a", T0), Some(5));
    assert_eq!(ids(&q), [1, 2, 4, 5]);
    assert_eq!(admit(&mut q, &store, 6, "a", T0), Some(6));
    assert_eq!(ids(&q), [1, 2, 5, 6]);
    // No resolved entry left: the oldest pending goes.
    assert_eq!(admit(&mut q, &store, 7, "a", T0), Some(7));
    assert_eq!(ids(&q), [2, 5, 6, 7]);
    assert_mirrored(&q, &store);
    assert_eq!(store.counter(EVICTED_COUNTER).unwrap(), 3);
    assert_eq!(store.counter(ADMITTED_COUNTER).unwrap(), 7);
    let s = q.stats();
    assert_eq!((s.entries, s.pending, s.evicted, s.admitted), (4, 4, 3, 7));
}

#[test]
fn pseudo_labelled_entries_are_not_evicted_for_a_new_sample() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    for s in 1..=4 {
        admit(&mut q, &store, s, "a", T0);
    }
    for id in [1, 2, 4] {
        let label = "b".to_string();
        set(&mut q, &store, id, Status::PseudoLabelled { label });
    }
    // The pending 3 is the only room.
    assert_eq!(admit(&mut q, &store, 5, "a", T0), Some(5));
    assert_eq!(ids(&q), [1, 2, 4, 5]);
    set(
        &mut q,
        &store,
        5,
        Status::PseudoLabelled { label: "b".into() },
    );
    // Only pseudo-labelled entries: the new sample is refused, nothing changes.
    let mut b = Batch::new();
    let features = [0.0f32; 4];
    let got = q
        .admit(candidate(6, "a", &features), &frame(8, 8, 0), T0, &mut b)
        .unwrap();
    assert_eq!(got, None);
    assert!(b.is_empty());
    assert_eq!(ids(&q), [1, 2, 4, 5]);
    assert_eq!(q.stats().refused, 1);
    assert_eq!(q.next_id(), 6, "a refused sample uses no id");
}

#[test]
fn the_per_class_cap_evicts_within_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let config = QuarantineConfig {
        max_entries: 10,
        per_class_cap: 2,
        ..small(dir.path())
    };
    let mut q = Quarantine::open(config, &store).unwrap();
    admit(&mut q, &store, 1, "b", T0);
    admit(&mut q, &store, 2, "a", T0);
    admit(&mut q, &store, 3, "a", T0);
    set(&mut q, &store, 3, Status::Adapted { label: "c".into() });
    // Class a is at its cap: its resolved entry 3 goes; the older b is not touched.
    admit(&mut q, &store, 4, "a", T0);
    assert_eq!(ids(&q), [1, 2, 4]);
    admit(&mut q, &store, 5, "a", T0);
    assert_eq!(ids(&q), [1, 4, 5]);
    assert_eq!((q.class_len("a"), q.class_len("b")), (2, 1));
    // Other classes still have room.
    admit(&mut q, &store, 6, "b", T0);
    assert_eq!(ids(&q), [1, 4, 5, 6]);
    assert_mirrored(&q, &store);
}

#[test]
fn the_byte_cap_bounds_feature_bytes_and_one_oversized_sample_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let config = QuarantineConfig {
        max_entries: 100,
        per_class_cap: 100,
        max_bytes: 4096,
        ..small(dir.path())
    };
    let mut q = Quarantine::open(config, &store).unwrap();
    let features = vec![0.5f32; 256]; // 1 KiB each
    let mut b = Batch::new();
    for s in 1..=6 {
        let id = q
            .admit(candidate(s, "a", &features), &frame(8, 8, 0), T0, &mut b)
            .unwrap();
        assert_eq!(id, Some(s));
        assert!(q.stats().bytes <= 4096);
    }
    assert_eq!(ids(&q), [3, 4, 5, 6]);
    // A sample needing 3 KiB evicts three of the four.
    let big = vec![0.5f32; 768];
    q.admit(candidate(7, "a", &big), &frame(8, 8, 0), T0, &mut b)
        .unwrap();
    assert_eq!(ids(&q), [6, 7]);
    assert_eq!(q.stats().bytes, 4096);
    let huge = vec![0.5f32; 1025];
    let err = q
        .admit(candidate(8, "a", &huge), &frame(8, 8, 0), T0, &mut b)
        .unwrap_err();
    assert!(matches!(err, QuarantineError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("quarantine.max-bytes"), "{err}");
    store.submit(b).unwrap();
    assert_mirrored(&q, &store);
}

#[test]
fn expire_removes_entries_past_the_maximum_age_whatever_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let config = QuarantineConfig {
        max_age_hours: 2,
        ..small(dir.path())
    };
    let mut q = Quarantine::open(config, &store).unwrap();
    admit(&mut q, &store, 1, "a", T0);
    admit(&mut q, &store, 2, "a", T0 + HOUR_MS);
    admit(&mut q, &store, 3, "a", T0 + 2 * HOUR_MS);
    set(
        &mut q,
        &store,
        1,
        Status::PseudoLabelled { label: "a".into() },
    );
    let mut b = Batch::new();
    // Exactly two hours old is not yet too old.
    assert_eq!(q.expire(T0 + 2 * HOUR_MS, &mut b), 0);
    assert_eq!(q.expire(T0 + 3 * HOUR_MS, &mut b), 1);
    assert_eq!(ids(&q), [2, 3]);
    // A clock set back keeps everything.
    assert_eq!(q.expire(T0 - 100 * HOUR_MS, &mut b), 0);
    assert_eq!(q.expire(T0 + 10 * HOUR_MS, &mut b), 2);
    assert!(q.is_empty());
    store.submit(b).unwrap();
    assert_mirrored(&q, &store);
    assert_eq!(store.counter(EXPIRED_COUNTER).unwrap(), 3);
    assert_eq!(q.stats().expired, 3);
}

#[test]
fn status_transitions_follow_the_life_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    let a = admit(&mut q, &store, 1, "a", T0).unwrap();
    let b_id = admit(&mut q, &store, 2, "a", T0).unwrap();
    let mut b = Batch::new();
    q.set_status(a, Status::PseudoLabelled { label: "x".into() }, &mut b)
        .unwrap();
    q.set_status(a, Status::Adapted { label: "x".into() }, &mut b)
        .unwrap();
    // Rolled back: adapted -> pending.
    q.set_status(a, Status::Pending, &mut b).unwrap();
    q.set_status(a, validated("y"), &mut b).unwrap();
    assert_eq!(b.len(), 4);
    // The same status again is a no-op: nothing queued.
    q.set_status(a, validated("y"), &mut b).unwrap();
    assert_eq!(b.len(), 4);
    // Final: neither another label nor another status.
    for to in [validated("z"), Status::Pending, Status::Rejected] {
        let err = q.set_status(a, to, &mut b).unwrap_err();
        assert!(
            matches!(
                err,
                QuarantineError::Transition {
                    from: "validated",
                    ..
                }
            ),
            "{err}"
        );
    }
    // Pseudo-labelled cannot go back to pending; the entry is unchanged by the refusal.
    q.set_status(b_id, Status::PseudoLabelled { label: "x".into() }, &mut b)
        .unwrap();
    let err = q.set_status(b_id, Status::Pending, &mut b).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("quarantine entry {b_id}: cannot go from pseudo-labelled to pending")
    );
    assert_eq!(
        q.get(b_id).unwrap().status.kind(),
        StatusKind::PseudoLabelled
    );
    assert_eq!(b.len(), 5);
    let err = q.set_status(99, Status::Rejected, &mut b).unwrap_err();
    assert!(
        matches!(err, QuarantineError::UnknownEntry { id: 99 }),
        "{err}"
    );
    let err = q
        .set_status(b_id, Status::Validated { label: "".into() }, &mut b)
        .unwrap_err();
    assert!(matches!(err, QuarantineError::Text { .. }), "{err}");
    store.submit(b).unwrap();
    assert_mirrored(&q, &store);
    let s = q.stats();
    assert_eq!((s.validated, s.pseudo_labelled, s.pending), (1, 1, 0));
}

#[test]
fn entries_and_statuses_survive_reopening_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    let mut b = Batch::new();
    let f1 = [0.25f32, -1.5, 3.0];
    let c = Candidate {
        sample: 41,
        reason: ReasonRef::Drift {
            detector: "ph-distance",
        },
        predicted: "ball",
        confidence: 0.41,
        knn_distance: None,
        features: &f1,
    };
    let id = q.admit(c, &frame(8, 8, 0), T0, &mut b).unwrap().unwrap();
    store.submit(b).unwrap();
    admit(&mut q, &store, 42, "cube", T0 + 5);
    set(
        &mut q,
        &store,
        id,
        Status::Adapted {
            label: "ball".into(),
        },
    );
    let before: Vec<Entry> = q.iter().cloned().collect();
    let e = q.get(id).unwrap();
    assert_eq!(
        e.reason,
        Reason::Drift {
            detector: "ph-distance".into()
        }
    );
    assert_eq!(
        (e.sample, e.created_unix_ms, e.features.as_slice()),
        (41, T0, &f1[..])
    );
    drop(q);
    store.close().unwrap();

    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    let after: Vec<Entry> = q.iter().cloned().collect();
    assert_eq!(after, before);
    assert_eq!(q.stats().adapted, 1);
    // Remove everything; the next id still follows the last one ever given.
    let mut b = Batch::new();
    for id in ids(&q) {
        assert!(q.remove(id, &mut b).is_some());
    }
    assert!(q.remove(id, &mut b).is_none());
    store.submit(b).unwrap();
    drop(q);
    store.close().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    assert!(q.is_empty());
    assert_eq!(admit(&mut q, &store, 43, "ball", T0), Some(3));
}

/// A damaged stored entry is dropped at open (not fatal), and deleted by the next expire;
/// lowered caps drop the entries eviction would pick.
#[test]
fn damaged_and_over_cap_stored_entries_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let config = QuarantineConfig {
        max_entries: 10,
        per_class_cap: 10,
        ..small(dir.path())
    };
    let mut q = Quarantine::open(config.clone(), &store).unwrap();
    for s in 1..=6 {
        admit(&mut q, &store, s, "a", T0);
    }
    set(&mut q, &store, 2, Status::Rejected);
    set(
        &mut q,
        &store,
        5,
        Status::PseudoLabelled { label: "a".into() },
    );
    let mut b = Batch::new();
    b.put_quarantine(3, &"not an entry").unwrap();
    store.submit(b).unwrap();
    drop(q);
    store.flush().unwrap();

    let lowered = QuarantineConfig {
        max_entries: 3,
        per_class_cap: 3,
        ..config
    };
    let mut q = Quarantine::open(lowered, &store).unwrap();
    // 3 is damaged; of 1, 2, 4, 5, 6 the rejected 2 and the oldest pending 1 go.
    assert_eq!(ids(&q), [4, 5, 6]);
    assert_eq!(q.stats().damaged, 1);
    assert_eq!(store.quarantine_len().unwrap(), 6, "nothing deleted yet");
    let mut b = Batch::new();
    assert_eq!(q.expire(T0, &mut b), 0);
    store.submit(b).unwrap();
    assert_mirrored(&q, &store);
    assert_eq!(q.next_id(), 7);
}

#[test]
fn bad_candidates_are_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    let mut b = Batch::new();
    let nan = [1.0, f32::NAN];
    let long = vec![0.0f32; tinylcm::quarantine::entry::MAX_FEATURES + 1];
    let f = frame(8, 8, 0);
    let cases = [
        candidate(1, "a", &nan),
        candidate(1, "a", &[]),
        candidate(1, "a", &long),
        Candidate {
            confidence: f32::INFINITY,
            ..candidate(1, "a", &[1.0])
        },
        candidate(1, "", &[1.0]),
    ];
    for c in cases {
        assert!(q.admit(c, &f, T0, &mut b).is_err(), "{c:?}");
    }
    assert!(b.is_empty() && q.is_empty());
    assert_eq!(q.next_id(), 1);
    let err = q
        .admit(candidate(1, "a", &nan), &f, T0, &mut b)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "quarantine: feature 1 is not finite (NaN or infinite); the sample was not admitted"
    );
}

/// The paths where a sample is not admitted allocate nothing: disabled, refused for lack of
/// room, and a bad candidate.
#[test]
fn not_admitting_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let features = [0.5f32; 32];
    let nan = [f32::NAN; 4];
    let f = frame(64, 48, 0);
    let mut b = Batch::new();

    let disabled = QuarantineConfig {
        enabled: false,
        ..small(dir.path())
    };
    let mut q = Quarantine::open(disabled, &store).unwrap();
    let n = alloc_support::allocations(|| {
        for s in 0..100 {
            let c = Candidate {
                reason: ReasonRef::Drift { detector: "ph" },
                ..candidate(s, "a", &features)
            };
            assert_eq!(q.admit(c, &f, T0, &mut b).unwrap(), None);
        }
    });
    assert_eq!(n, 0, "disabled");
    drop(q);

    let mut q = Quarantine::open(small(dir.path()), &store).unwrap();
    for s in 1..=4 {
        q.admit(candidate(s, "a", &features), &f, T0, &mut b)
            .unwrap();
        let label = "p".to_string();
        q.set_status(s, Status::PseudoLabelled { label }, &mut b)
            .unwrap();
    }
    let n = alloc_support::allocations(|| {
        for s in 0..100 {
            assert_eq!(
                q.admit(candidate(s, "a", &features), &f, T0, &mut b)
                    .unwrap(),
                None
            );
            assert!(q.admit(candidate(s, "a", &nan), &f, T0, &mut b).is_err());
        }
    });
    assert_eq!(n, 0, "refused or invalid");
    assert_eq!(q.stats().refused, 100);
}

#[test]
fn thumbnails_are_small_jpegs_removed_with_their_entries_and_kept_under_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let thumbs = dir.path().join("thumbs");
    let config = QuarantineConfig {
        max_entries: 50,
        per_class_cap: 50,
        thumbnails: true,
        thumbnail_size: 48,
        thumbnail_dir: thumbs.clone(),
        max_thumbnail_bytes: 64 << 10,
        ..Default::default()
    };
    let mut q = Quarantine::open(config.clone(), &store).unwrap();
    let features = [1.0f32; 8];
    let mut noisy = frame(640, 480, 0);
    let mut x = 0x9e37_79b9u32;
    for v in &mut noisy.data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *v = x as u8;
    }
    let mut first = None;
    for s in 1..=40u64 {
        let mut b = Batch::new();
        let id = q
            .admit(candidate(s, "a", &features), &noisy, T0, &mut b)
            .unwrap()
            .unwrap();
        first.get_or_insert(id);
        store.submit(b).unwrap();
        // Keep the queue from filling so that every entry gets its thumbnail.
        q.flush_thumbnails();
    }
    let stats = q.stats().thumbnails.unwrap();
    assert_eq!((stats.written, stats.dropped), (40, 0));
    let on_disk: u64 = std::fs::read_dir(&thumbs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= config.max_thumbnail_bytes, "{on_disk}");
    assert!(
        stats.removed_for_budget > 0,
        "the budget was exercised: {stats:?}"
    );
    // The newest are there and are JPEGs no larger than thumbnail-size.
    let path = q.thumbnail_path(40).unwrap();
    let img = image::open(&path).unwrap();
    assert_eq!((img.width(), img.height()), (48, 36));
    assert_eq!(
        image::ImageFormat::from_path(&path).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert_eq!(path.file_name().unwrap(), "00000000000000000040.jpg");

    // Removing an entry removes its thumbnail.
    let mut b = Batch::new();
    q.remove(40, &mut b).unwrap();
    q.flush_thumbnails();
    assert!(!path.exists());
    store.submit(b).unwrap();
    assert_eq!(q.thumbnail_path(40), None);

    // A frame that is not what it says gets no thumbnail, but the entry is admitted.
    let mut bad = frame(10, 10, 0);
    bad.data.truncate(5);
    let mut b = Batch::new();
    let id = q
        .admit(candidate(99, "a", &features), &bad, T0, &mut b)
        .unwrap()
        .unwrap();
    assert_eq!(q.get(id).unwrap().thumbnail, None);
    store.submit(b).unwrap();

    // Reopening removes thumbnails whose entry is gone (here: a stray from a crash).
    std::fs::write(
        thumbs.join(tinylcm::quarantine::thumbnail_name(12_345)),
        b"x",
    )
    .unwrap();
    q.close();
    store.flush().unwrap();
    let q = Quarantine::open(config, &store).unwrap();
    q.flush_thumbnails();
    assert!(!thumbs.join("00000000000000012345.jpg").exists());
    assert!(q.thumbnail_path(39).unwrap().exists());
}

#[test]
fn a_bad_config_is_refused_at_open_naming_the_key() {
    fn sendable<T: Send>() {}
    sendable::<Quarantine>();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let config = QuarantineConfig {
        per_class_cap: 0,
        ..small(dir.path())
    };
    let err = Quarantine::open(config, &store).unwrap_err();
    assert!(matches!(err, QuarantineError::Config(_)), "{err}");
    assert!(
        err.to_string().contains("quarantine.per-class-cap"),
        "{err}"
    );
    // A thumbnails directory that cannot be created is reported at open, not per sample.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let config = QuarantineConfig {
        thumbnails: true,
        thumbnail_dir: file.join("thumbs"),
        ..small(dir.path())
    };
    let err = Quarantine::open(config, &store).unwrap_err();
    assert!(matches!(err, QuarantineError::Io { .. }), "{err}");
    assert!(err.to_string().contains("a-file"), "{err}");
}
