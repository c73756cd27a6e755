//! The fleet page (`/ui/fleet`): every device with its state, drift tallies, assigned release
//! and sync alert, a page at a time, and the fleet map.

use std::collections::HashMap;

use tinylcm_protocol::ids::valid_device_id;
use warp::http::StatusCode;

use super::fields::Fields;
use super::names::display_name;
use super::pages::{DeviceRow, FleetPage};
use super::reply::{Page, bad_request, domain_error, html, run};
use super::session::{Ctx, require};
use super::{PAGE, alerts, map, time};
use crate::domain::{DeviceSummary, DomainError, now_unix_ms};
use crate::ports::DeviceSettings;

/// A device counts as online when its last authenticated request is at most this old.
pub const ONLINE_WINDOW_MS: u64 = 10 * 60 * 1000;

pub(super) fn is_online(last_seen_unix_ms: u64, now: u64) -> bool {
    now.saturating_sub(last_seen_unix_ms) <= ONLINE_WINDOW_MS
}

pub(super) fn device_row(
    d: &DeviceSummary,
    settings: Option<&DeviceSettings>,
    pending: u64,
    total: u64,
    now: u64,
) -> DeviceRow {
    DeviceRow {
        id: d.device_id.clone(),
        name: display_name(d, settings),
        hardware: d.hardware.clone().unwrap_or_else(|| "unknown".into()),
        online: is_online(d.last_seen_unix_ms, now),
        last_seen: time::format_utc(d.last_seen_unix_ms),
        packages: d.packages,
        pending,
        total,
        model: "—".into(),
        sync_alert: None,
    }
}

pub(super) async fn fleet(ctx: Ctx, raw: String) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let fields = Fields::parse(&raw, &["after"], None)
        .map_err(|e| bad_request(Some(nav.clone()), e, "/ui/fleet"))?;
    let after = fields.get("after").map(str::to_owned);
    if after.as_deref().is_some_and(|a| !valid_device_id(a)) {
        return Err(bad_request(
            Some(nav),
            "`after` is not a device id",
            "/ui/fleet",
        ));
    }
    let sphere = ctx.sphere.clone();
    let cursor = after.clone();
    let (total, devices, next, tallies, complete, map, (models, blocked, settings)) =
        run(move || {
            let total = sphere.list_devices()?.devices.len();
            let (devices, next) = sphere.devices_page(cursor.as_deref(), PAGE)?;
            let (tallies, complete) = sphere.drift_tallies()?;
            // Each device's settings once, for the map and the assigned releases.
            let mut settings = Vec::with_capacity(devices.len());
            for d in &devices {
                match sphere.device_settings(&d.device_id) {
                    Ok(s) => settings.push((d, s)),
                    // Removed between the listing and now: nothing to show for it.
                    Err(DomainError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let map = map::fleet_map(&settings.iter().map(|(d, s)| (*d, s)).collect::<Vec<_>>());
            let models = sphere.assigned_releases(
                &settings
                    .iter()
                    .map(|(d, s)| (d.device_id.as_str(), s))
                    .collect::<Vec<_>>(),
            )?;
            let mut blocked = HashMap::new();
            for d in &devices {
                if let Some(a) = alerts::sync_alert(&sphere, &d.device_id)? {
                    blocked.insert(d.device_id.clone(), a);
                }
            }
            let settings: HashMap<String, DeviceSettings> = settings
                .into_iter()
                .map(|(d, s)| (d.device_id.clone(), s))
                .collect();
            Ok((
                total,
                devices,
                next,
                tallies,
                complete,
                map,
                (models, blocked, settings),
            ))
        })
        .await
        .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/fleet"))?;
    let now = now_unix_ms();
    let rows = devices
        .iter()
        .map(|d| {
            let t = tallies.get(&d.device_id).copied().unwrap_or_default();
            let settings = settings.get(&d.device_id);
            let mut row = device_row(d, settings, t.pending, t.total, now);
            if let Some((name, version)) = models.get(&d.device_id) {
                row.model = format!("{name} {version}");
            }
            row.sync_alert = blocked.get(&d.device_id).cloned();
            row
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &FleetPage {
            nav: Some(nav),
            total,
            rows,
            online_minutes: ONLINE_WINDOW_MS / 60_000,
            tallies_complete: complete,
            tally_cap: crate::domain::TALLY_SCAN_CAP,
            first_link: after.is_some(),
            next,
            map,
        },
    ))
}
