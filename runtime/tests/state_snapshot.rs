//! Snapshots: create, list, retention, restore, and refusal of corrupt or foreign files
//! without touching the database.

use std::time::Duration;

use tinylcm::state::{
    Batch, DurabilityPolicy, OLDEST_SNAPSHOT_SCHEMA, RESTORES_COUNTER, SCHEMA_VERSION,
    SNAPSHOT_FORMAT, Snapshots, StateError, Store,
};

fn open(dir: &std::path::Path) -> Store {
    let policy = DurabilityPolicy {
        commit_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    Store::open(dir.join("state.redb"), policy).unwrap()
}

#[test]
fn restore_brings_back_component_states_and_keeps_counters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 3).unwrap();
    store.put_state("knn", &vec![1u32, 2, 3]).unwrap();
    store.put_state("detector/ph", &0.25f64).unwrap();
    store.increment("frames", 10).unwrap();
    // create flushes first: queued writes are in the snapshot.
    let taken = snaps.create(&store).unwrap();
    assert_eq!(snaps.verify(&taken.id).unwrap().id, taken.id);

    store.put_state("knn", &vec![9u32]).unwrap();
    store.put_state("adapter", &"new").unwrap();
    store.increment("frames", 5).unwrap();
    store.flush().unwrap();

    let restored = snaps.restore(&store, &taken.id).unwrap();
    assert_eq!(restored.id, taken.id);
    assert_eq!(
        store.get_state::<Vec<u32>>("knn").unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(store.get_state::<f64>("detector/ph").unwrap(), Some(0.25));
    // States absent from the snapshot are removed: the state is the snapshot's, whole.
    assert_eq!(store.get_state::<String>("adapter").unwrap(), None);
    // Counters count what happened and are not rolled back.
    assert_eq!(store.counter("frames").unwrap(), 15);
    assert_eq!(store.counter(RESTORES_COUNTER).unwrap(), 1);
    store.close().unwrap();

    // Durable: still restored after reopening.
    let store = open(dir.path());
    assert_eq!(
        store.get_state::<Vec<u32>>("knn").unwrap(),
        Some(vec![1, 2, 3])
    );
}

#[test]
fn retention_keeps_the_newest_and_list_is_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 2).unwrap();
    assert!(snaps.list().unwrap().is_empty());
    let mut ids = Vec::new();
    for i in 0..4u32 {
        store.put_state("n", &i).unwrap();
        ids.push(snaps.create(&store).unwrap().id);
    }
    let listed: Vec<String> = snaps.list().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, ids[2..].to_vec());
    for s in snaps.list().unwrap() {
        assert_eq!(s.schema_version, tinylcm::state::SCHEMA_VERSION);
        assert!(s.bytes > 64 && s.created_unix_ms > 0);
    }
    // Ids are ordered by their sequence number, which keeps counting.
    assert!(ids[3].starts_with("000004-"), "{}", ids[3]);
    // Only snapshots remain in the directory (no temporaries).
    assert_eq!(std::fs::read_dir(snaps.dir()).unwrap().count(), 2);
}

/// Every way a snapshot file can be bad is refused before the database is touched.
#[test]
fn corrupt_or_foreign_snapshots_are_refused_and_the_database_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 10).unwrap();
    store.put_state("knn", &"snapshot-time").unwrap();
    let good = snaps.create(&store).unwrap();
    store.put_state("knn", &"current").unwrap();
    store.flush().unwrap();
    let bytes = std::fs::read(&good.path).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "flipped",
            {
                let mut b = bytes.clone();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            },
            "SHA-256",
        ),
        ("truncated", bytes[..bytes.len() - 3].to_vec(), "truncated"),
        ("headerless", bytes[..20].to_vec(), "header"),
        (
            "foreign",
            b"PK\x03\x04 this is a zip file, not a snapshot, honestly. padding padding".to_vec(),
            "magic",
        ),
        (
            "future",
            {
                let mut b = bytes.clone();
                b[8..12].copy_from_slice(&(SNAPSHOT_FORMAT + 1).to_le_bytes());
                b
            },
            "format version",
        ),
    ];
    for (name, content, expect) in cases {
        let id = format!("999000-{name}");
        std::fs::write(snaps.dir().join(format!("{id}.snap")), &content).unwrap();
        let err = snaps.restore(&store, &id).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expect), "{name}: {msg}");
        assert!(msg.contains(&id), "{name}: the error names the file: {msg}");
        assert!(
            matches!(
                err,
                StateError::SnapshotCorrupt { .. } | StateError::SnapshotVersion { .. }
            ),
            "{name}: {err:?}"
        );
        assert_eq!(
            store.get_state::<String>("knn").unwrap().as_deref(),
            Some("current"),
            "{name}: the database changed"
        );
    }
    assert_eq!(store.counter(RESTORES_COUNTER).unwrap(), 0);
}

#[test]
fn ids_cannot_reach_outside_the_snapshots_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 1).unwrap();
    std::fs::write(dir.path().join("outside.snap"), b"x").unwrap();
    for id in ["../outside", "..", "/etc/passwd", "a/b", "x.snap", ""] {
        let err = snaps.restore(&store, id).unwrap_err();
        assert!(
            matches!(err, StateError::InvalidSnapshotId { .. }),
            "{id:?}: {err}"
        );
    }
    let err = snaps.restore(&store, "000001-missing").unwrap_err();
    assert!(matches!(err, StateError::SnapshotNotFound { .. }), "{err}");
    assert!(Snapshots::new(dir.path(), 0).is_err());
}

#[cfg(unix)]
#[test]
fn symlinked_and_oversized_snapshot_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 5).unwrap();
    let good = snaps.create(&store).unwrap();
    std::os::unix::fs::symlink(&good.path, snaps.dir().join("000100-link.snap")).unwrap();
    let err = snaps.restore(&store, "000100-link").unwrap_err();
    assert!(err.to_string().contains("regular file"), "{err}");
    // A sparse file just over the limit: refused by its size, without reading it.
    let big = snaps.dir().join("000101-big.snap");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(tinylcm::state::MAX_SNAPSHOT_BYTES + 1).unwrap();
    let err = snaps.restore(&store, "000101-big").unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
}

/// What a crash in the middle of `create` leaves (a temporary file) is never listed and is
/// cleaned up by the next `create`.
#[test]
fn leftovers_of_an_interrupted_create_are_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 5).unwrap();
    std::fs::create_dir_all(snaps.dir()).unwrap();
    let leftover = snaps.dir().join(".000001-20261126T000000Z.snap.77-1.tmp");
    std::fs::write(&leftover, b"half a snapshot").unwrap();
    std::fs::write(snaps.dir().join("notes.txt"), b"not a snapshot").unwrap();
    assert!(snaps.list().unwrap().is_empty());
    let taken = snaps.create(&store).unwrap();
    assert!(taken.id.starts_with("000001-"), "{}", taken.id);
    assert!(!leftover.exists());
    assert_eq!(snaps.list().unwrap().len(), 1);
}

/// The quarantine is not part of snapshots: restoring leaves its entries exactly as they
/// are, both those added after the snapshot and those deleted after it.
#[test]
fn restore_leaves_the_quarantine_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 3).unwrap();
    let mut b = Batch::new();
    b.put_state("knn", &1u32).unwrap();
    b.put_quarantine(1, &"before").unwrap();
    store.submit(b).unwrap();
    let taken = snaps.create(&store).unwrap();

    let mut b = Batch::new();
    b.put_state("knn", &2u32).unwrap();
    b.delete_quarantine(1);
    b.put_quarantine(2, &"after").unwrap();
    store.submit(b).unwrap();
    snaps.restore(&store, &taken.id).unwrap();
    assert_eq!(store.get_state::<u32>("knn").unwrap(), Some(1));
    assert_eq!(
        store.quarantine_entries::<String>(0, 10).unwrap(),
        vec![(2, "after".to_string())]
    );
}

/// A snapshot taken by the schema-1 runtime (before the quarantine table existed) holds the
/// same contents and still restores after the upgrade: the upgrade keeps rollback points.
#[test]
fn a_snapshot_from_schema_1_restores() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let snaps = Snapshots::new(dir.path().join("snapshots"), 3).unwrap();
    store.put_state("knn", &"old").unwrap();
    let taken = snaps.create(&store).unwrap();
    assert_eq!(taken.schema_version, SCHEMA_VERSION);
    // Bytes 12..16 of the header are the schema version (outside the payload checksum).
    let mut bytes = std::fs::read(&taken.path).unwrap();
    bytes[12..16].copy_from_slice(&OLDEST_SNAPSHOT_SCHEMA.to_le_bytes());
    std::fs::write(&taken.path, &bytes).unwrap();
    store.put_state("knn", &"new").unwrap();
    store.flush().unwrap();
    let info = snaps.restore(&store, &taken.id).unwrap();
    assert_eq!(info.schema_version, 1);
    assert_eq!(
        store.get_state::<String>("knn").unwrap().as_deref(),
        Some("old")
    );
    // One older than that is refused, the database unchanged.
    bytes[12..16].copy_from_slice(&(OLDEST_SNAPSHOT_SCHEMA - 1).to_le_bytes());
    std::fs::write(&taken.path, &bytes).unwrap();
    store.put_state("knn", &"newer").unwrap();
    store.flush().unwrap();
    let err = snaps.restore(&store, &taken.id).unwrap_err();
    assert!(
        matches!(err, StateError::SnapshotVersion { what: "schema", .. }),
        "{err}"
    );
    assert_eq!(
        store.get_state::<String>("knn").unwrap().as_deref(),
        Some("newer")
    );
}
