//! The tables, the schema version and the migrations between versions.
//!
//! The version lives in `meta` under `schema_version`. Opening a database runs the
//! migrations from its version up to [`SCHEMA_VERSION`] in one write transaction (all or
//! nothing); a version newer than this runtime knows is refused and the file is not touched.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition, TableError, WriteTransaction};

use super::error::{DbError, StateError};

/// The schema version this runtime writes.
///
/// * 1: `meta`, `kv`, `events`, `counters`.
/// * 2: adds `quarantine` (suspicious samples, see [`crate::quarantine`]).
/// * 3: adds `outbox` (sync packages waiting for upload) and `sync` (the sync client's
///   cursors), see [`crate::sync`].
pub const SCHEMA_VERSION: u32 = 3;

/// The oldest schema version whose snapshots this runtime restores.
///
/// A snapshot holds only `kv` and `counters`; schemas 2 and 3 added tables without changing what
/// those two hold, so a snapshot taken before the upgrade restores unchanged (refusing it
/// would leave a freshly upgraded device without a rollback point). Raise this when a
/// migration changes the meaning of a component state or a counter.
pub const OLDEST_SNAPSHOT_SCHEMA: u32 = 1;

/// `meta`: store bookkeeping (schema version, next event number).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `kv`: component states by name, postcard-encoded.
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// `events`: the append-only event log by sequence number, postcard-encoded.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `counters`: named monotonic counters.
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// `quarantine`: suspicious samples by entry id, postcard-encoded (schema 2).
pub(crate) const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");
/// `outbox`: sync packages waiting for upload by record id, encoded by [`crate::sync`]
/// (schema 3).
pub(crate) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// `sync`: the sync client's cursors by name, postcard-encoded (schema 3). Not `kv`:
/// restoring a snapshot replaces `kv`, and must not move the cursors back (that would send
/// data again under new package ids).
pub(crate) const SYNC: TableDefinition<&str, &[u8]> = TableDefinition::new("sync");

pub(crate) const VERSION_KEY: &str = "schema_version";
pub(crate) const NEXT_EVENT_KEY: &str = "next_event_seq";
/// `meta` key of the database's epoch (see [`ensure_epoch`]). Not a schema change: a runtime
/// older than it ignores the key, so an OS rollback still opens the database.
pub(crate) const EPOCH_KEY: &str = "epoch";

/// This database's epoch: 16 lowercase hex digits (64 random bits) made the first time a
/// runtime that knows epochs opens it, and kept in `meta` from then on.
///
/// Why: event numbers start again at 1 when the database is recreated (a wiped `/data`, a
/// fresh SD card with the same credentials), and sphere-lite keys drift events by device and
/// event number; the epoch names one life of the database, so the server keys events by
/// (device, epoch, event number) and the new life's events are not dropped as duplicates of
/// the old one's. Snapshots do not hold `meta`, so restoring one keeps the epoch (and the
/// event numbers go on).
pub(crate) fn ensure_epoch(db: &Database, path: &Path) -> Result<String, StateError> {
    let fail = |e: &dyn std::fmt::Display| StateError::Decode {
        path: path.to_path_buf(),
        what: format!("meta/{EPOCH_KEY}"),
        reason: e.to_string(),
    };
    {
        let txn = db
            .begin_read()
            .map_err(|e| StateError::db(path, "reading the epoch", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| StateError::db(path, "reading the epoch", e))?;
        if let Some(v) = meta
            .get(EPOCH_KEY)
            .map_err(|e| StateError::db(path, "reading the epoch", e))?
        {
            let text = std::str::from_utf8(v.value()).map_err(|e| fail(&e))?;
            if !tinylcm_protocol::ids::valid_epoch(text) {
                return Err(fail(&"not 1..=32 characters of 0-9 a-z"));
            }
            return Ok(text.to_owned());
        }
    }
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| fail(&format!("no randomness: {e}")))?;
    let epoch: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut txn = db
        .begin_write()
        .map_err(|e| StateError::db(path, "recording the epoch", e))?;
    txn.set_durability(Durability::Immediate);
    txn.open_table(META)
        .map_err(|e| StateError::db(path, "recording the epoch", e))?
        .insert(EPOCH_KEY, epoch.as_bytes())
        .map_err(|e| StateError::db(path, "recording the epoch", e))?;
    txn.commit()
        .map_err(|e| StateError::db(path, "recording the epoch", e))?;
    tracing::info!("state database {}: new epoch {epoch}", path.display());
    Ok(epoch)
}

/// One step from schema version `from` to `from + 1`.
pub(crate) struct Migration {
    /// The version this step upgrades.
    pub from: u32,
    /// What it does (logged).
    pub what: &'static str,
    /// The step, inside the open transaction.
    pub apply: fn(&WriteTransaction) -> Result<(), DbError>,
}

/// The registered migrations, one per version step.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 0,
        what: "adopt an unversioned (or new) database: create missing tables, record the next \
               event number",
        apply: v0_to_v1,
    },
    Migration {
        from: 1,
        what: "create the quarantine table",
        apply: v1_to_v2,
    },
    Migration {
        from: 2,
        what: "create the sync outbox and cursor tables",
        apply: v2_to_v3,
    },
];

/// Version 0 is a database without `meta` (a new file, or one from before versioning):
/// the tables may or may not exist.
fn v0_to_v1(txn: &WriteTransaction) -> Result<(), DbError> {
    txn.open_table(KV)?;
    txn.open_table(COUNTERS)?;
    let next = {
        let events = txn.open_table(EVENTS)?;
        let last = events.last()?.map(|(k, _)| k.value());
        last.map_or(1, |k| k.saturating_add(1))
    };
    let mut meta = txn.open_table(META)?;
    if meta.get(NEXT_EVENT_KEY)?.is_none() {
        meta.insert(NEXT_EVENT_KEY, next.to_le_bytes().as_slice())?;
    }
    Ok(())
}

/// Version 2 keeps suspicious samples in their own table (not in `kv`), so that they are
/// read in pages, bounded apart from component states, and left out of snapshots.
fn v1_to_v2(txn: &WriteTransaction) -> Result<(), DbError> {
    txn.open_table(QUARANTINE)?;
    Ok(())
}

/// Version 3 keeps sync packages in their own table, so that a package record and the
/// cursors of the data it holds (in `kv`) commit in one transaction, and so that packages
/// stay out of snapshots (rolling the KNN back must not resend or forget uploads).
fn v2_to_v3(txn: &WriteTransaction) -> Result<(), DbError> {
    txn.open_table(OUTBOX)?;
    txn.open_table(SYNC)?;
    Ok(())
}

/// Reads a little-endian integer stored in `meta`; wrong lengths are corruption, not a panic.
pub(crate) fn meta_u64(path: &Path, key: &str, bytes: &[u8]) -> Result<u64, StateError> {
    match bytes.len() {
        4 => Ok(u64::from(u32::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            Ok(u64::from_le_bytes(b))
        }
        n => Err(StateError::Decode {
            path: path.to_path_buf(),
            what: format!("meta/{key}"),
            reason: format!("{n} bytes, expected 4 or 8"),
        }),
    }
}

/// The recorded schema version: 0 when there is no `meta` table or no version in it.
pub(crate) fn read_version(db: &Database, path: &Path) -> Result<u32, StateError> {
    let txn = db
        .begin_read()
        .map_err(|e| StateError::db(path, "reading the schema version", e))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(StateError::db(path, "reading the schema version", e)),
    };
    let Some(v) = meta
        .get(VERSION_KEY)
        .map_err(|e| StateError::db(path, "reading the schema version", e))?
    else {
        return Ok(0);
    };
    let v = meta_u64(path, VERSION_KEY, v.value())?;
    u32::try_from(v).map_err(|_| StateError::SchemaTooNew {
        path: path.to_path_buf(),
        found: u32::MAX,
        supported: SCHEMA_VERSION,
    })
}

/// Brings the database to `target` with `migrations`; returns the version found.
pub(crate) fn migrate(
    db: &Database,
    path: &Path,
    target: u32,
    migrations: &[Migration],
) -> Result<u32, StateError> {
    let found = read_version(db, path)?;
    if found > target {
        return Err(StateError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: target,
        });
    }
    if found == target {
        return Ok(found);
    }
    // Check the whole chain exists before writing anything.
    for v in found..target {
        if !migrations.iter().any(|m| m.from == v) {
            return Err(StateError::NoMigration {
                path: path.to_path_buf(),
                found: v,
            });
        }
    }
    let mut txn = db
        .begin_write()
        .map_err(|e| StateError::db(path, "starting the migration", e))?;
    txn.set_durability(Durability::Immediate);
    for v in found..target {
        if let Some(m) = migrations.iter().find(|m| m.from == v) {
            tracing::info!(
                "state database {}: migrating schema {v} -> {}: {}",
                path.display(),
                v + 1,
                m.what
            );
            (m.apply)(&txn).map_err(|e| StateError::db_boxed(path, "migrating the schema", e))?;
        }
    }
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| StateError::db(path, "migrating the schema", e))?;
        meta.insert(VERSION_KEY, target.to_le_bytes().as_slice())
            .map_err(|e| StateError::db(path, "migrating the schema", e))?;
    }
    txn.commit()
        .map_err(|e| StateError::db(path, "committing the migration", e))?;
    Ok(found)
}

/// The next event sequence number recorded in `meta`.
pub(crate) fn next_event_seq(db: &Database, path: &Path) -> Result<u64, StateError> {
    let txn = db
        .begin_read()
        .map_err(|e| StateError::db(path, "reading the event sequence", e))?;
    let meta = txn
        .open_table(META)
        .map_err(|e| StateError::db(path, "reading the event sequence", e))?;
    let stored = match meta
        .get(NEXT_EVENT_KEY)
        .map_err(|e| StateError::db(path, "reading the event sequence", e))?
    {
        Some(v) => meta_u64(path, NEXT_EVENT_KEY, v.value())?,
        None => 1,
    };
    // Never reuse a number that is in the log, whatever meta says.
    let events = txn
        .open_table(EVENTS)
        .map_err(|e| StateError::db(path, "reading the event sequence", e))?;
    let after_last = events
        .last()
        .map_err(|e| StateError::db(path, "reading the event sequence", e))?
        .map_or(1, |(k, _)| k.value().saturating_add(1));
    Ok(stored.max(after_last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    fn add_marker(txn: &WriteTransaction) -> Result<(), DbError> {
        let mut kv = txn.open_table(KV)?;
        let n = kv.len()?;
        let key = format!("step{n}");
        kv.insert(key.as_str(), [].as_slice())?;
        Ok(())
    }

    /// Fails before this change (there was no epoch): a recreated database numbers its events
    /// from 1 again and nothing told them from the old database's, so sphere-lite dropped
    /// them as duplicates. A database keeps its epoch across reopening, one written by an
    /// older runtime (no epoch in `meta`) gets one, and a recreated one gets a new one.
    #[test]
    fn a_recreated_database_gets_a_new_epoch_and_an_existing_one_keeps_it() {
        use crate::state::{DurabilityPolicy, Store};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let first = Store::open(&path, DurabilityPolicy::default()).unwrap();
        let epoch = first.epoch().to_owned();
        assert!(tinylcm_protocol::ids::valid_epoch(&epoch), "{epoch}");
        assert_eq!(epoch.len(), 16);
        drop(first);
        let again = Store::open(&path, DurabilityPolicy::default()).unwrap();
        assert_eq!(again.epoch(), epoch, "reopening changed the epoch");
        drop(again);

        // An older runtime's database: no epoch in `meta` yet.
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().remove(EPOCH_KEY).unwrap();
            txn.commit().unwrap();
        }
        let upgraded = Store::open(&path, DurabilityPolicy::default()).unwrap();
        let adopted = upgraded.epoch().to_owned();
        assert_ne!(adopted, epoch);
        drop(upgraded);
        let kept = Store::open(&path, DurabilityPolicy::default()).unwrap();
        assert_eq!(kept.epoch(), adopted);
        drop(kept);

        // The file deleted and made again: a new life, a new epoch.
        std::fs::remove_file(&path).unwrap();
        let recreated = Store::open(&path, DurabilityPolicy::default()).unwrap();
        assert_ne!(recreated.epoch(), adopted);
    }

    #[test]
    fn chain_runs_in_order_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let db = Database::create(&path).unwrap();
        let chain = [
            Migration {
                from: 0,
                what: "base",
                apply: v0_to_v1,
            },
            Migration {
                from: 1,
                what: "marker",
                apply: add_marker,
            },
            Migration {
                from: 2,
                what: "marker",
                apply: add_marker,
            },
        ];
        assert_eq!(migrate(&db, &path, 3, &chain).unwrap(), 0);
        assert_eq!(read_version(&db, &path).unwrap(), 3);
        let txn = db.begin_read().unwrap();
        let kv = txn.open_table(KV).unwrap();
        assert_eq!(kv.len().unwrap(), 2);
        drop(kv);
        drop(txn);
        // Nothing to do at the target; a newer database is refused.
        assert_eq!(migrate(&db, &path, 3, &chain).unwrap(), 3);
        let err = migrate(&db, &path, 2, &chain).unwrap_err();
        assert!(
            matches!(err, StateError::SchemaTooNew { found: 3, .. }),
            "{err}"
        );
        // A missing step is refused before anything is written.
        let err = migrate(&db, &path, 5, &chain).unwrap_err();
        assert!(
            matches!(err, StateError::NoMigration { found: 3, .. }),
            "{err}"
        );
        assert_eq!(read_version(&db, &path).unwrap(), 3);
    }

    #[test]
    fn meta_integers_of_wrong_length_are_errors() {
        let p = Path::new("x");
        assert_eq!(meta_u64(p, "k", &7u32.to_le_bytes()).unwrap(), 7);
        assert_eq!(meta_u64(p, "k", &9u64.to_le_bytes()).unwrap(), 9);
        assert!(meta_u64(p, "k", &[1, 2, 3]).is_err());
    }
}
