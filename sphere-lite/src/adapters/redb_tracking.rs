//! The embedded `Tracking` adapter: one redb file (`<data>/sphere.redb`).
//!
//! Why: the embedded default must run alone with no other service and survive kill -9; redb
//! gives ACID transactions in one file with a small footprint (the runtime uses it too). Values
//! are JSON so records can grow fields without a migration.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

use crate::ports::{
    DeviceRecord, EnrollOutcome, PackageRecord, Principal, Recorded, SecretHash, StoreError,
    Tracking,
};

/// device id → JSON [`DeviceRecord`].
const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// token hash → JSON [`Principal`].
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// enrollment key hash → remaining uses (0 = spent, kept so a reuse is told apart from a typo).
const ENROLLMENT_KEYS: TableDefinition<&[u8], u32> = TableDefinition::new("enrollment_keys");
/// `<device>/<package>` → JSON [`PackageRecord`].
const PACKAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("packages");
/// `<accepted ms, 20 digits>/<device>/<package>` → () for accepted, unprocessed packages.
const PENDING: TableDefinition<&str, ()> = TableDefinition::new("pending");

/// Tracking in a redb database.
pub struct RedbTracking {
    db: Database,
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::new("redb", e.into())
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::new("redb", format!("encode: {e}")))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::new("redb", format!("corrupt record: {e}")))
}

fn package_key(device_id: &str, package_id: &str) -> String {
    format!("{device_id}/{package_id}")
}

fn pending_key(record: &PackageRecord) -> String {
    format!(
        "{:020}/{}/{}",
        record.accepted_unix_ms, record.device_id, record.package_id
    )
}

impl RedbTracking {
    /// Open (or create) the database at `path` and make sure all tables exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| {
            StoreError::new(
                "redb",
                format!(
                    "cannot open {}: {e} (is another sphere-lite using the same --data?)",
                    path.display()
                ),
            )
        })?;
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(DEVICES).map_err(err)?;
            tx.open_table(TOKENS).map_err(err)?;
            tx.open_table(ENROLLMENT_KEYS).map_err(err)?;
            tx.open_table(PACKAGES).map_err(err)?;
            tx.open_table(PENDING).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(RedbTracking { db })
    }

    fn read_device(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        device_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        match table.get(device_id).map_err(err)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }
}

impl Tracking for RedbTracking {
    fn add_enrollment_key(&self, key_hash: SecretHash, uses: u32) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(ENROLLMENT_KEYS)
            .map_err(err)?
            .insert(key_hash.as_slice(), uses)
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn enroll(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
    ) -> Result<EnrollOutcome, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut keys = tx.open_table(ENROLLMENT_KEYS).map_err(err)?;
            let remaining = keys
                .get(key_hash.as_slice())
                .map_err(err)?
                .map(|v| v.value());
            match remaining {
                None => return Ok(EnrollOutcome::UnknownKey),
                Some(0) => return Ok(EnrollOutcome::KeyUsedUp),
                Some(n) => {
                    keys.insert(key_hash.as_slice(), n - 1).map_err(err)?;
                }
            }
            let mut devices = tx.open_table(DEVICES).map_err(err)?;
            if devices
                .get(device.device_id.as_str())
                .map_err(err)?
                .is_some()
            {
                return Err(StoreError::new("redb", "device id collision"));
            }
            devices
                .insert(device.device_id.as_str(), to_json(device)?.as_slice())
                .map_err(err)?;
            tx.open_table(TOKENS)
                .map_err(err)?
                .insert(
                    device.token_hash.as_slice(),
                    to_json(&Principal::Device(device.device_id.clone()))?.as_slice(),
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(EnrollOutcome::Enrolled)
    }

    fn add_operator_token(&self, name: &str, token_hash: SecretHash) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(TOKENS)
            .map_err(err)?
            .insert(
                token_hash.as_slice(),
                to_json(&Principal::Operator(name.to_owned()))?.as_slice(),
            )
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn token_owner(&self, token_hash: &SecretHash) -> Result<Option<Principal>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(TOKENS).map_err(err)?;
        match table.get(token_hash.as_slice()).map_err(err)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(DEVICES).map_err(err)?;
        Self::read_device(&table, device_id)
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(DEVICES).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (_, v) = row.map_err(err)?;
            out.push(from_json(v.value())?);
        }
        Ok(out)
    }

    fn touch_device(&self, device_id: &str, now_unix_ms: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(DEVICES).map_err(err)?;
            let Some(mut device) = Self::read_device(&table, device_id)? else {
                return Ok(());
            };
            if now_unix_ms <= device.last_seen_unix_ms {
                return Ok(());
            }
            device.last_seen_unix_ms = now_unix_ms;
            table
                .insert(device_id, to_json(&device)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(PACKAGES).map_err(err)?;
        match table
            .get(package_key(device_id, package_id).as_str())
            .map_err(err)?
        {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError> {
        let key = package_key(&record.device_id, &record.package_id);
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut packages = tx.open_table(PACKAGES).map_err(err)?;
            if packages.get(key.as_str()).map_err(err)?.is_some() {
                return Ok(Recorded::AlreadyKnown);
            }
            packages
                .insert(key.as_str(), to_json(record)?.as_slice())
                .map_err(err)?;
            if record.processed_unix_ms.is_none() {
                tx.open_table(PENDING)
                    .map_err(err)?
                    .insert(pending_key(record).as_str(), ())
                    .map_err(err)?;
            }
            let mut devices = tx.open_table(DEVICES).map_err(err)?;
            if let Some(mut device) = Self::read_device(&devices, &record.device_id)? {
                device.packages += 1;
                device.last_seen_unix_ms = device.last_seen_unix_ms.max(record.accepted_unix_ms);
                devices
                    .insert(record.device_id.as_str(), to_json(&device)?.as_slice())
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(Recorded::New)
    }

    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
    ) -> Result<(), StoreError> {
        let key = package_key(device_id, package_id);
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut packages = tx.open_table(PACKAGES).map_err(err)?;
            let mut record: PackageRecord = match packages.get(key.as_str()).map_err(err)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::new("redb", format!("no package {key}"))),
            };
            tx.open_table(PENDING)
                .map_err(err)?
                .remove(pending_key(&record).as_str())
                .map_err(err)?;
            record.processed_unix_ms = Some(now_unix_ms);
            record.failed = failed;
            packages
                .insert(key.as_str(), to_json(&record)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let pending = tx.open_table(PENDING).map_err(err)?;
        let packages = tx.open_table(PACKAGES).map_err(err)?;
        let mut out = Vec::new();
        for row in pending.iter().map_err(err)? {
            let (k, _) = row.map_err(err)?;
            let key = k.value();
            // `<ms>/<device>/<package>` → `<device>/<package>`
            let Some((_, rest)) = key.split_once('/') else {
                continue;
            };
            if let Some(v) = packages.get(rest).map_err(err)? {
                out.push(from_json(v.value())?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, token: u8) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            name: None,
            hardware: None,
            token_hash: [token; 32],
            enrolled_unix_ms: 1,
            last_seen_unix_ms: 1,
            packages: 0,
        }
    }

    #[test]
    fn enrollment_keys_are_counted_and_packages_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let t = RedbTracking::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(
            t.enroll([1; 32], &device("a", 9)).unwrap(),
            EnrollOutcome::UnknownKey
        );
        t.add_enrollment_key([1; 32], 1).unwrap();
        assert_eq!(
            t.enroll([1; 32], &device("a", 9)).unwrap(),
            EnrollOutcome::Enrolled
        );
        assert_eq!(
            t.enroll([1; 32], &device("b", 8)).unwrap(),
            EnrollOutcome::KeyUsedUp
        );
        assert_eq!(
            t.token_owner(&[9; 32]).unwrap(),
            Some(Principal::Device("a".into()))
        );
        assert!(t.device("b").unwrap().is_none());

        let rec = PackageRecord {
            device_id: "a".into(),
            package_id: "p1".into(),
            raw_key: "incoming/a/p1.tar".into(),
            accepted_unix_ms: 5,
            processed_unix_ms: None,
            failed: None,
        };
        assert_eq!(t.record_accepted(&rec).unwrap(), Recorded::New);
        assert_eq!(t.record_accepted(&rec).unwrap(), Recorded::AlreadyKnown);
        assert_eq!(t.device("a").unwrap().unwrap().packages, 1);
        assert_eq!(t.unprocessed().unwrap(), vec![rec.clone()]);
        t.mark_processed("a", "p1", 7, None).unwrap();
        assert!(t.unprocessed().unwrap().is_empty());
        assert_eq!(
            t.package("a", "p1").unwrap().unwrap().processed_unix_ms,
            Some(7)
        );
    }
}
