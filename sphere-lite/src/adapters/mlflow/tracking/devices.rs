//! The MLflow adapter: the `DeviceStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::DeviceStore;

impl DeviceStore for MlflowTracking {
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.device_experiment(device_id)?
            .map(|e| device_of(&e))
            .transpose()
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let prefix = self.device_prefix()?;
        let filter = Filter::new()
            .name_like_prefix(&prefix)
            .tag_eq(KIND, &lit_const(KIND_DEVICE))
            .build();
        let mut out = self
            .client
            .search_experiments(&filter, MAX_DEVICES)?
            .iter()
            .filter(|e| e.name.starts_with(prefix.as_str()))
            .map(device_of)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    fn touch_device(&self, device_id: &str, now_unix_ms: u64) -> Result<(), StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(());
        };
        let last = tag_u64(exp.tag(LAST_SEEN), LAST_SEEN).unwrap_or(0);
        if now_unix_ms > last {
            self.client.set_experiment_tag(
                &exp.experiment_id,
                LAST_SEEN,
                &now_unix_ms.to_string(),
            )?;
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
            self.client
                .set_experiment_tag(&exp.experiment_id, DEVICE_CONFIG, &config)?;
        }
        self.client
            .set_experiment_tag(&exp.experiment_id, SETTINGS, &json)?;
        Ok(true)
    }
}
