//! Fleet operations on one device: rename, group, tags, location, notes, token rotation, and
//! decommissioning.
//!
//! Why apart from enrollment: these are the operator's decisions about a device, stored as
//! its [`DeviceSettings`], while the device record keeps what the device said about itself.

use serde::{Deserialize, Serialize};
use tinylcm_protocol::api::EnrollResponse;
use tinylcm_protocol::ids::valid_package_id;

use super::{DomainError, MAX_LABEL_BYTES, Sphere, check_label};
use crate::ports::{DeviceSettings, Location};
use crate::secret::{self, SecretKind};

/// Most tags on one device.
pub const MAX_TAGS: usize = 32;

/// Longest notes on one device, in bytes.
pub const MAX_NOTES_BYTES: usize = 1000;

/// `PATCH /api/v2/devices/{id}` body: the fields to change (absent fields stay; `group` or
/// `location` set to `null` clear them).
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New group (`Some(None)` clears it).
    #[serde(default, with = "serde_with_null")]
    #[schemars(with = "Option<String>")]
    pub group: Option<Option<String>>,
    /// New tag set.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New location (`Some(None)` clears it).
    #[serde(default, with = "serde_with_null")]
    #[schemars(with = "Option<Location>")]
    pub location: Option<Option<Location>>,
    /// New notes (empty clears them).
    #[serde(default)]
    pub notes: Option<String>,
}

/// `Option<Option<T>>` that tells an absent field (`None`) from `null` (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_ref().and_then(Option::as_ref).serialize(s)
    }
}

fn unknown(device_id: &str) -> DomainError {
    DomainError::NotFound {
        error: format!("no device {device_id}"),
        fix: Some("GET /api/v2/devices lists the fleet".into()),
    }
}

fn bad(error: String) -> DomainError {
    DomainError::BadRequest { error, fix: None }
}

impl Sphere {
    /// The operator's settings of `device_id`.
    pub fn device_settings(&self, device_id: &str) -> Result<DeviceSettings, DomainError> {
        self.tracking
            .device_settings(device_id)?
            .ok_or_else(|| unknown(device_id))
    }

    /// Apply `update` to the device's settings; returns them as stored.
    pub fn update_device(
        &self,
        device_id: &str,
        update: &DeviceUpdate,
    ) -> Result<DeviceSettings, DomainError> {
        let mut settings = self.device_settings(device_id)?;
        if let Some(name) = &update.name {
            check_label("name", Some(name))?;
            settings.name = Some(name.clone()).filter(|n| !n.trim().is_empty());
        }
        if let Some(group) = &update.group {
            if let Some(g) = group {
                if !valid_package_id(g) || g == crate::ports::ALL_DEVICES {
                    return Err(bad(format!(
                        "group {g:?} must be 1 to 64 characters of A-Z a-z 0-9 _ - and not \"all\""
                    )));
                }
            }
            settings.group = group.clone();
        }
        if let Some(tags) = &update.tags {
            if tags.len() > MAX_TAGS {
                return Err(bad(format!("at most {MAX_TAGS} tags")));
            }
            for tag in tags {
                if tag.is_empty()
                    || tag.len() > MAX_LABEL_BYTES
                    || tag.chars().any(char::is_control)
                {
                    return Err(bad("tags must be 1 to 200 printable characters".into()));
                }
            }
            settings.tags = tags.clone();
        }
        if let Some(location) = &update.location {
            if let Some(l) = location {
                let valid = (-90.0..=90.0).contains(&l.latitude)
                    && (-180.0..=180.0).contains(&l.longitude)
                    && l.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0);
                if !valid {
                    return Err(bad("latitude must be -90..=90, longitude -180..=180".into()));
                }
            }
            settings.location = *location;
        }
        if let Some(notes) = &update.notes {
            if notes.len() > MAX_NOTES_BYTES
                || notes
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(bad(format!(
                    "notes must be at most {MAX_NOTES_BYTES} bytes of text"
                )));
            }
            settings.notes = Some(notes.trim().to_owned()).filter(|n| !n.is_empty());
        }
        let regrouped = update.group.is_some();
        if !self.tracking.set_device_settings(device_id, &settings)? {
            return Err(unknown(device_id));
        }
        if regrouped {
            // Another group may mean another configuration.
            self.deliver_config_logged(device_id);
            return self.device_settings(device_id);
        }
        Ok(settings)
    }

    /// Give the device a new token (the old one stops working at once); returns it, shown once.
    pub fn rotate_device_token(&self, device_id: &str) -> Result<EnrollResponse, DomainError> {
        if self.device_settings(device_id)?.decommissioned {
            return Err(DomainError::Exists {
                error: format!("device {device_id} is decommissioned"),
                fix: Some("add it again under a new id".into()),
            });
        }
        let token = secret::generate(SecretKind::DeviceToken)?;
        if !self
            .tracking
            .replace_device_token(device_id, Some(secret::hash(&token)))?
        {
            return Err(unknown(device_id));
        }
        tracing::info!(device = %device_id, "device token rotated");
        Ok(EnrollResponse {
            device_id: device_id.to_owned(),
            token,
        })
    }

    /// Take the device out of service: its token is revoked, it gets no model releases, and
    /// its data stays for the record.
    pub fn decommission_device(&self, device_id: &str) -> Result<DeviceSettings, DomainError> {
        let mut settings = self.device_settings(device_id)?;
        if !self.tracking.replace_device_token(device_id, None)? {
            return Err(unknown(device_id));
        }
        settings.decommissioned = true;
        self.tracking.set_device_settings(device_id, &settings)?;
        tracing::info!(device = %device_id, "device decommissioned");
        Ok(settings)
    }
}
