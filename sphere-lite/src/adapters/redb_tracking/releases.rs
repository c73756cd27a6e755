//! The embedded (redb) adapter: the `ReleaseStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::ReleaseStore;

impl ReleaseStore for RedbTracking {
    fn put_release(&self, release: &ReleaseRecord) -> Result<Recorded, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(RELEASES).map_err(err)?;
            let key = (release.name.as_str(), release.version.as_str());
            if table.get(key).map_err(err)?.is_some() {
                return Ok(Recorded::AlreadyKnown);
            }
            table
                .insert(key, to_json(release)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Recorded::New)
    }

    fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(RELEASES).map_err(err)?;
        let value = table.get((name, version)).map_err(err)?;
        value.map(|v| from_json(v.value())).transpose()
    }

    fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(RELEASES).map_err(err)?;
        let mut out: Vec<ReleaseRecord> = Vec::new();
        for row in table.iter().map_err(err)? {
            out.push(from_json(row.map_err(err)?.1.value())?);
        }
        out.sort_by(|a, b| {
            (a.name.as_str(), a.uploaded_unix_ms).cmp(&(b.name.as_str(), b.uploaded_unix_ms))
        });
        Ok(out)
    }

    fn set_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(ROLLOUTS)
            .map_err(err)?
            .insert(rollout.group.as_str(), to_json(rollout)?.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.all_json(ROLLOUTS)
    }

    fn grant_release(&self, device_id: &str, name: &str, version: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(RELEASE_GRANTS).map_err(err)?;
            let key = (device_id, name, version);
            if table.get(key).map_err(err)?.is_some() {
                return Ok(());
            }
            table
                .insert(key, crate::domain::now_unix_ms())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn release_granted(
        &self,
        device_id: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(RELEASE_GRANTS).map_err(err)?;
        Ok(table
            .get((device_id, name, version))
            .map_err(err)?
            .is_some())
    }
}
