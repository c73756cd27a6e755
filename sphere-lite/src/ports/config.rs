//! The `ConfigStore` part of the `Tracking` port.
//!
//! It holds the remote configuration layers (fleet-wide and per group).
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{ConfigLayer, StoreError};

/// The remote configuration layers: fleet-wide and per group.
///
/// MLflow: tags of the releases experiment.
pub trait ConfigStore: Send + Sync {
    /// Set the configuration layer of `layer.scope` (`"all"` or a group), replacing it.
    /// MLflow: tag `sphere.config.<scope>` (JSON) of the releases experiment.
    fn set_scope_config(&self, layer: &ConfigLayer) -> Result<(), StoreError>;

    /// Every fleet-wide and group layer, by scope.
    fn scope_configs(&self) -> Result<Vec<ConfigLayer>, StoreError>;
}
