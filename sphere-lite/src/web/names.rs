//! What an operator calls a device (its display name) and the device menus of the filters.
//!
//! Why a module of its own: the fleet, device, Drift Hub, Data Hub pages and the map all name
//! devices the same way.

use crate::domain::{DeviceSummary, DomainError, Sphere};
use crate::ports::DeviceSettings;

/// Devices offered in the filter menus at most.
pub(super) const DEVICE_MENU: usize = 500;

/// The first hex digits of a device id (`dev-3f9a1c…` → `3f9a1c`): enough to tell apart
/// devices that share a host name.
pub(super) fn short_id(device_id: &str) -> &str {
    let hex = device_id.strip_prefix("dev-").unwrap_or(device_id);
    hex.get(..6).unwrap_or(hex)
}

/// The name an operator sees for a device: the one an operator set, else the name the device
/// gave at enrollment (its host name, which two devices often share: `vm`, `raspberrypi`)
/// with its short id, else its id.
pub(crate) fn display_name(d: &DeviceSummary, settings: Option<&DeviceSettings>) -> String {
    if let Some(name) = settings.and_then(|s| s.name.clone()) {
        return name;
    }
    match &d.name {
        Some(host) => format!("{host} ({})", short_id(&d.device_id)),
        None => d.device_id.clone(),
    }
}

/// [`display_name`] of `d` with its settings read from the store (a device removed since it
/// was listed has none: its enrollment name will do).
pub(super) fn device_name(sphere: &Sphere, d: &DeviceSummary) -> Result<String, DomainError> {
    let settings = match sphere.device_settings(&d.device_id) {
        Ok(s) => Some(s),
        Err(DomainError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(display_name(d, settings.as_ref()))
}

/// (id, name) of the first [`DEVICE_MENU`] devices, plus `keep` if it is further on.
pub(super) fn device_menu(
    sphere: &Sphere,
    keep: Option<&str>,
) -> Result<Vec<(String, String)>, DomainError> {
    let devices = sphere.list_devices()?.devices;
    let name = |d: &DeviceSummary| device_name(sphere, d);
    let mut menu = Vec::new();
    for d in devices.iter().take(DEVICE_MENU) {
        menu.push((d.device_id.clone(), name(d)?));
    }
    if let Some(k) = keep {
        if !menu.iter().any(|(id, _)| id == k) {
            if let Some(d) = devices.iter().find(|d| d.device_id == k) {
                menu.push((d.device_id.clone(), name(d)?));
            }
        }
    }
    Ok(menu)
}

pub(super) fn with_selected(
    menu: Vec<(String, String)>,
    selected: Option<&str>,
) -> Vec<(String, String, bool)> {
    menu.into_iter()
        .map(|(id, name)| {
            let sel = Some(id.as_str()) == selected;
            (id, name, sel)
        })
        .collect()
}
