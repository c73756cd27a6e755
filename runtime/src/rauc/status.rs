//! [`RaucStatus`]: what RAUC says about the OS slots, as plain serialisable data for
//! `tinylcm status` and the sync client's metrics.

use serde::{Deserialize, Serialize};

/// The OS slots as RAUC sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaucStatus {
    /// The system's compatible string.
    pub compatible: String,
    /// Bootname of the slot booted from (e.g. `A`).
    pub booted: String,
    /// Slot the bootloader boots next (e.g. `rootfs.0`).
    pub primary: String,
    /// What RAUC is doing (`idle`, `installing`).
    pub operation: String,
    /// RAUC's last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every slot.
    pub slots: Vec<SlotSummary>,
}

impl RaucStatus {
    /// The booted slot's summary.
    pub fn booted_slot(&self) -> Option<&SlotSummary> {
        self.slots
            .iter()
            .find(|s| s.bootname.as_deref() == Some(self.booted.as_str()))
    }
}

/// One slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSummary {
    /// Slot name, e.g. `rootfs.1`.
    pub name: String,
    /// Slot class, e.g. `rootfs`.
    pub class: String,
    /// Bootloader name, e.g. `B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootname: Option<String>,
    /// `booted`, `active` or `inactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The bootloader's verdict: `good`, `bad` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_status: Option<String>,
    /// Result of the last installation: `ok`, `failed`, `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_status: Option<String>,
    /// Version of the bundle installed into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_version: Option<String>,
    /// When it was installed (RAUC's ISO 8601 text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<String>,
}

impl SlotSummary {
    /// Summarise RAUC's slot record.
    pub(crate) fn new(name: String, info: &rauc::GetSlotStatusInfo) -> Self {
        use rauc::{SlotBootStatus, SlotInstallationStatus, SlotState};
        // RAUC's own words, as `rauc status` prints them.
        let state = |s: &SlotState| match s {
            SlotState::Booted => "booted",
            SlotState::Active => "active",
            SlotState::Inactive => "inactive",
        };
        let boot = |s: &SlotBootStatus| match s {
            SlotBootStatus::Good => "good",
            SlotBootStatus::Bad => "bad",
            SlotBootStatus::Unknown => "unknown",
        };
        let installed = |s: &SlotInstallationStatus| match s {
            SlotInstallationStatus::Ok => "ok",
            SlotInstallationStatus::Failed => "failed",
            SlotInstallationStatus::Pending => "pending",
        };
        SlotSummary {
            name,
            class: info.class.clone(),
            bootname: info.bootname.clone(),
            state: info.state.as_ref().map(|s| state(s).to_string()),
            boot_status: info.boot_status.as_ref().map(|s| boot(s).to_string()),
            installed_status: info.status.as_ref().map(|s| installed(s).to_string()),
            bundle_version: info.bundle_version.clone(),
            installed_at: info.installed_timestamp.clone(),
        }
    }
}
