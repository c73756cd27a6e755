//! The embedded (redb) adapter: the `ConfigStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::ConfigStore;

impl ConfigStore for RedbTracking {
    fn set_scope_config(&self, layer: &ConfigLayer) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(SCOPE_CONFIGS)
            .map_err(err)?
            .insert(layer.scope.as_str(), to_json(layer)?.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn scope_configs(&self) -> Result<Vec<ConfigLayer>, StoreError> {
        self.all_json(SCOPE_CONFIGS)
    }
}
