//! The embedded (redb) adapter: the `DeviceStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::DeviceStore;

impl DeviceStore for RedbTracking {
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

    fn device_settings(&self, device_id: &str) -> Result<Option<DeviceSettings>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        if Self::read_device(&tx.open_table(DEVICES).map_err(err)?, device_id)?.is_none() {
            return Ok(None);
        }
        let table = tx.open_table(DEVICE_SETTINGS).map_err(err)?;
        match table.get(device_id).map_err(err)? {
            Some(v) => from_json(v.value()).map(Some),
            None => Ok(Some(DeviceSettings::default())),
        }
    }

    fn set_device_settings(
        &self,
        device_id: &str,
        settings: &DeviceSettings,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            if Self::read_device(&tx.open_table(DEVICES).map_err(err)?, device_id)?.is_none() {
                return Ok(false);
            }
            tx.open_table(DEVICE_SETTINGS)
                .map_err(err)?
                .insert(device_id, to_json(settings)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }
}
