//! The MLflow adapter: the `DeviceStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::DeviceStore;

impl DeviceStore for MlflowTracking {
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(self.cached_device(device_id)?.map(|(_, record)| record))
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let experiments = self.device_experiments()?;
        // Each count is a listing in S3: a few at a time, so a fleet's page is not the sum
        // of its devices' round trips.
        let mut out =
            crate::parallel::each_parallel(&experiments, "mlflow", "a device count", |e| {
                self.device_record(e)
            })?;
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    fn device_count(&self) -> Result<usize, StoreError> {
        Ok(self.device_experiments()?.len())
    }

    fn touch_device(&self, device_id: &str, now_unix_ms: u64) -> Result<(), StoreError> {
        // The cached record is enough to know the experiment and whether the stored time is
        // older: the domain writes last-seen once per interval, so this is one call then.
        let Some((experiment_id, record)) = self.cached_device(device_id)? else {
            return Ok(());
        };
        if now_unix_ms > record.last_seen_unix_ms {
            // Not through `set_experiment_tag`: the cached record stays valid but for this time.
            self.client
                .set_experiment_tag(&experiment_id, LAST_SEEN, &now_unix_ms.to_string())?;
            if let Some(c) = lock(&self.device_cache).get_mut(device_id) {
                c.record.last_seen_unix_ms = c.record.last_seen_unix_ms.max(now_unix_ms);
            }
        }
        Ok(())
    }

    fn device_settings(&self, device_id: &str) -> Result<Option<DeviceSettings>, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(None);
        };
        let mut settings: DeviceSettings = match exp.tag(SETTINGS) {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| corrupt(format!("settings of {device_id}: {e}")))?,
            None => DeviceSettings::default(),
        };
        if let Some(json) = exp.tag(DEVICE_CONFIG) {
            settings.config = serde_json::from_str(json)
                .map_err(|e| corrupt(format!("configuration of {device_id}: {e}")))?;
        }
        Ok(Some(settings))
    }

    fn set_device_settings(
        &self,
        device_id: &str,
        settings: &DeviceSettings,
    ) -> Result<bool, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(false);
        };
        // The configuration layer has a tag of its own: with the tags it would not fit in one.
        let config = serde_json::to_string(&settings.config).map_err(corrupt)?;
        let rest = DeviceSettings {
            config: None,
            ..settings.clone()
        };
        let json = serde_json::to_string(&rest).map_err(corrupt)?;
        if json.chars().count() > MAX_TAG_VALUE || config.chars().count() > MAX_TAG_VALUE {
            return Err(StoreError::new(
                "mlflow",
                "device settings exceed one MLflow tag",
            ));
        }
        if exp.tag(DEVICE_CONFIG).unwrap_or("null") != config {
            self.set_experiment_tag(&exp.experiment_id, DEVICE_CONFIG, &config)?;
        }
        self.set_experiment_tag(&exp.experiment_id, SETTINGS, &json)?;
        Ok(true)
    }
}

impl MlflowTracking {
    /// Every device's experiment: one `experiments/search`, paginated.
    fn device_experiments(&self) -> Result<Vec<Experiment>, StoreError> {
        let prefix = self.device_prefix()?;
        let filter = Filter::new()
            .name_like_prefix(&prefix)
            .tag_eq(KIND, &lit_const(KIND_DEVICE))
            .build();
        Ok(self
            .client
            .search_experiments(&filter, MAX_DEVICES)?
            .into_iter()
            .filter(|e| e.name.starts_with(prefix.as_str()))
            .collect())
    }
}
