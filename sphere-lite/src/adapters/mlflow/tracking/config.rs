//! The MLflow adapter: the `ConfigStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::ConfigStore;

impl ConfigStore for MlflowTracking {
    fn set_scope_config(&self, layer: &ConfigLayer) -> Result<(), StoreError> {
        let json = serde_json::to_string(layer).map_err(corrupt)?;
        if json.chars().count() > MAX_TAG_VALUE {
            return Err(StoreError::new(
                "mlflow",
                "configuration too large for an MLflow tag",
            ));
        }
        self.set_experiment_tag(
            &self.releases,
            &format!("{SCOPE_CONFIG_PREFIX}{}", layer.scope),
            &json,
        )?;
        Ok(())
    }

    fn scope_configs(&self) -> Result<Vec<ConfigLayer>, StoreError> {
        self.releases_tags(SCOPE_CONFIG_PREFIX, "configuration")
    }
}
