//! Remote configuration: operators set configuration layers for the whole fleet, a group or
//! one device; every device concerned is sent its new effective configuration through its
//! feedback queue, and its acknowledgement of that item is the proof it has it. A device that
//! cannot run a revision reports it ([`Sphere::refuse_config`]); the refusal is kept with the
//! device's settings, shown with its state, and that revision is not delivered to it again.
//!
//! Why here and not in the adapters: which devices a change concerns (groups, decommissioned
//! devices) and when a delivery is due (the effective revision changed) are fleet rules; the
//! stores only keep layers and delivery records. Merging and validation are the protocol
//! crate's ([`tinylcm_protocol::remote_config`]), so the device computes the same thing.

use tinylcm_protocol::api::{
    ConfigDelivery, ConfigLayer, ConfigRefusal, ConfigRefused, DeviceConfigState, FeedbackVerdict,
    MAX_REFUSAL_REASON_BYTES, ScopeConfigResult,
};
use tinylcm_protocol::ids::valid_package_id;
use tinylcm_protocol::remote_config::{self, Effective};

use super::{DomainError, Sphere, now_unix_ms};
use crate::ports::{ALL_DEVICES, DeviceSettings};

/// Scope name of a device's own layer.
pub const DEVICE_SCOPE: &str = "device";

fn refused(e: remote_config::ConfigError) -> DomainError {
    let fix = match &e {
        remote_config::ConfigError::NotAllowed(_) => {
            "remove the key: only the keys of tinylcm_protocol::remote_config::REMOTE_KEYS (drift \
             thresholds, KNN, quarantine and adaptation tuning, within bounds) may be set remotely; \
             paths and other settings belong in the device's own config file"
        }
        remote_config::ConfigError::Value { .. } => {
            "use a value of the type and within the bound named"
        }
        _ => {
            "send a TOML fragment of the runtime's config file, e.g. \"[drift.page-hinkley-distance]\\nlambda = 80.0\""
        }
    };
    DomainError::BadRequest {
        error: e.to_string(),
        fix: Some(fix.into()),
    }
}

/// The layers of `scopes` and `settings` that apply to the device, fleet-wide first; cleared
/// layers are left out.
fn layers_in(scopes: &[ConfigLayer], settings: &DeviceSettings) -> Vec<ConfigLayer> {
    let scope = |name: &str| scopes.iter().find(|l| l.scope == name).cloned();
    [
        scope(ALL_DEVICES),
        settings.group.as_deref().and_then(scope),
        settings.config.clone(),
    ]
    .into_iter()
    .flatten()
    .filter(|l| !l.toml.trim().is_empty())
    .collect()
}

impl Sphere {
    fn effective_of(layers: &[ConfigLayer]) -> Result<Effective, DomainError> {
        remote_config::effective(layers.iter().map(|l| l.toml.as_str())).map_err(refused)
    }

    /// Queue the device's effective configuration if it is not the one delivered last;
    /// returns whether an item was queued. Decommissioned devices get nothing.
    pub(super) fn deliver_config(&self, device_id: &str) -> Result<bool, DomainError> {
        let mut settings = self.device_settings(device_id)?;
        self.deliver_with(device_id, &mut settings, &self.tracking.scope_configs()?)
    }

    /// [`Sphere::deliver_config`] with the device's settings and the scope layers read
    /// already; `settings` ends as stored.
    fn deliver_with(
        &self,
        device_id: &str,
        settings: &mut DeviceSettings,
        scopes: &[ConfigLayer],
    ) -> Result<bool, DomainError> {
        if settings.decommissioned {
            return Ok(false);
        }
        let effective = Self::effective_of(&layers_in(scopes, settings))?;
        let due = match &settings.config_delivered {
            Some(d) => d.revision != effective.revision,
            // Never configured and nothing to configure: the local config file rules.
            None => !effective.toml.is_empty(),
        };
        // The device could not run it: sending it again would only be refused again.
        let refused = settings
            .config_refused
            .as_ref()
            .is_some_and(|r| r.revision == effective.revision);
        if refused {
            return Ok(false);
        }
        if !due {
            return Ok(false);
        }
        let now = now_unix_ms();
        let ids = self.tracking.append_feedback(
            device_id,
            &[FeedbackVerdict::Config {
                revision: effective.revision.clone(),
                toml: effective.toml,
            }],
            now,
        )?;
        let Some(&feedback_id) = ids.first() else {
            return Ok(false);
        };
        settings.config_delivered = Some(ConfigDelivery {
            revision: effective.revision,
            feedback_id,
            unix_ms: now,
        });
        self.tracking.set_device_settings(device_id, settings)?;
        tracing::info!(device = %device_id, feedback_id, "configuration queued");
        Ok(true)
    }

    /// Like [`Sphere::deliver_config`], for callers whose own change already succeeded (a
    /// group change, an enrollment): a failure is logged and shows on the device's
    /// configuration state as not delivered; pushing the layer again retries it.
    pub(super) fn deliver_config_logged(&self, device_id: &str) {
        if let Err(e) = self.deliver_config(device_id) {
            tracing::warn!(device = %device_id, error = %e, "configuration not queued");
        }
    }

    /// A device's layers, effective configuration and whether it acknowledged it.
    pub fn device_config(&self, device_id: &str) -> Result<DeviceConfigState, DomainError> {
        let settings = self.device_settings(device_id)?;
        self.state_with(device_id, &settings, &self.tracking.scope_configs()?)
    }

    /// The states of `device_ids` with their groups, for the configuration page (the scope
    /// layers are read once).
    pub fn config_states(
        &self,
        device_ids: &[&str],
    ) -> Result<Vec<(DeviceConfigState, Option<String>)>, DomainError> {
        let scopes = self.tracking.scope_configs()?;
        device_ids
            .iter()
            .map(|&id| {
                let settings = self.device_settings(id)?;
                Ok((self.state_with(id, &settings, &scopes)?, settings.group))
            })
            .collect()
    }

    /// [`Sphere::device_config`] with the device's settings and the scope layers read already.
    fn state_with(
        &self,
        device_id: &str,
        settings: &DeviceSettings,
        scopes: &[ConfigLayer],
    ) -> Result<DeviceConfigState, DomainError> {
        let layers = layers_in(scopes, settings);
        let effective = Self::effective_of(&layers)?;
        let acknowledged = match &settings.config_delivered {
            Some(d) if d.revision == effective.revision => {
                // Acknowledged items are never listed again: if the item is not in the
                // unacknowledged queue, the device applied it.
                let pending =
                    self.tracking
                        .feedback_after(device_id, d.feedback_id.saturating_sub(1), 1)?;
                pending.first().is_none_or(|i| i.id != d.feedback_id)
            }
            Some(_) => false,
            None => effective.toml.is_empty(),
        };
        // The refusal is news while it concerns the revision in force, or nothing was
        // delivered since (a device that set aside a fragment an older server sent it).
        let refused = settings.config_refused.clone().filter(|r| {
            r.revision == effective.revision
                || settings
                    .config_delivered
                    .as_ref()
                    .is_none_or(|d| d.unix_ms < r.unix_ms)
        });
        Ok(DeviceConfigState {
            device_id: device_id.to_owned(),
            layers,
            effective_toml: effective.toml,
            revision: effective.revision,
            delivered: settings.config_delivered.clone(),
            acknowledged,
            refused,
        })
    }

    /// The device refused a remote configuration (device token checked by the caller): keep
    /// it with its settings, replacing an earlier refusal. Repeats of the same refusal are
    /// answered with the one kept.
    pub fn refuse_config(
        &self,
        device_id: &str,
        refusal: &ConfigRefusal,
    ) -> Result<ConfigRefused, DomainError> {
        let revision_ok = refusal.revision.len() == 16
            && refusal
                .revision
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !revision_ok {
            return Err(DomainError::BadRequest {
                error: format!(
                    "revision {:?} is not a configuration revision",
                    refusal.revision
                ),
                fix: Some("send the 16 hex digits of the refused configuration's revision".into()),
            });
        }
        if refusal.reason.len() > MAX_REFUSAL_REASON_BYTES {
            return Err(DomainError::BadRequest {
                error: format!(
                    "the reason has {} bytes; at most {MAX_REFUSAL_REASON_BYTES} are accepted",
                    refusal.reason.len()
                ),
                fix: Some("shorten the reason".into()),
            });
        }
        let mut settings = self.device_settings(device_id)?;
        if let Some(kept) = &settings.config_refused {
            if kept.revision == refusal.revision {
                return Ok(kept.clone());
            }
        }
        // Shown on the dashboard and in the API: one line, no control characters.
        let reason: String = refusal
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let kept = ConfigRefused {
            revision: refusal.revision.clone(),
            reason,
            unix_ms: now_unix_ms(),
        };
        settings.config_refused = Some(kept.clone());
        self.tracking.set_device_settings(device_id, &settings)?;
        tracing::warn!(
            device = %device_id,
            revision = %kept.revision,
            reason = %kept.reason,
            "the device refused its remote configuration"
        );
        Ok(kept)
    }

    /// Set (or, with an empty `toml`, clear) the device's own layer and deliver the result.
    pub fn set_device_config(
        &self,
        device_id: &str,
        toml: &str,
        by: &str,
    ) -> Result<DeviceConfigState, DomainError> {
        remote_config::parse_fragment(toml).map_err(refused)?;
        let mut settings = self.device_settings(device_id)?;
        settings.config = Some(ConfigLayer {
            scope: DEVICE_SCOPE.into(),
            toml: toml.to_owned(),
            by: by.to_owned(),
            unix_ms: now_unix_ms(),
        });
        // The merge must fit as well: refuse before anything is stored.
        let scopes = self.tracking.scope_configs()?;
        Self::effective_of(&layers_in(&scopes, &settings))?;
        self.tracking.set_device_settings(device_id, &settings)?;
        self.deliver_with(device_id, &mut settings, &scopes)?;
        self.state_with(device_id, &settings, &scopes)
    }

    /// Every fleet-wide and group layer.
    pub fn scope_configs(&self) -> Result<Vec<ConfigLayer>, DomainError> {
        Ok(self.tracking.scope_configs()?)
    }

    /// Set (or clear) the layer of `scope` (`"all"` or a group) and deliver the new effective
    /// configuration to every device it concerns.
    pub fn set_scope_config(
        &self,
        scope: &str,
        toml: &str,
        by: &str,
    ) -> Result<ScopeConfigResult, DomainError> {
        if scope != ALL_DEVICES && (!valid_package_id(scope) || scope == DEVICE_SCOPE) {
            return Err(DomainError::BadRequest {
                error: format!("invalid scope {scope:?}"),
                fix: Some(
                    "use \"all\" or a group name (1 to 64 characters of A-Z a-z 0-9 _ -)".into(),
                ),
            });
        }
        remote_config::parse_fragment(toml).map_err(refused)?;
        let layer = ConfigLayer {
            scope: scope.to_owned(),
            toml: toml.to_owned(),
            by: by.to_owned(),
            unix_ms: now_unix_ms(),
        };
        self.tracking.set_scope_config(&layer)?;
        // A device whose merge no longer fits keeps its last configuration; the others go on.
        let scopes = self.tracking.scope_configs()?;
        let mut devices_updated = 0;
        for device in self.tracking.devices()? {
            let id = &device.device_id;
            let mut settings = self.device_settings(id)?;
            if scope != ALL_DEVICES && settings.group.as_deref() != Some(scope) {
                continue;
            }
            match self.deliver_with(id, &mut settings, &scopes) {
                Ok(true) => devices_updated += 1,
                Ok(false) => {}
                Err(DomainError::BadRequest { error, .. }) => {
                    tracing::warn!(device = %id, %error, "configuration not deliverable");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ScopeConfigResult {
            layer,
            devices_updated,
        })
    }
}
