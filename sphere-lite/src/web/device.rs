//! A device's page (`/ui/devices/{id}`): its state, pending drift events, packages and metric
//! charts, and the admin's form that names, groups and locates it.

use std::collections::HashMap;

use tinylcm_protocol::api::{DriftEventQuery, DriftEventStatus};
use tinylcm_protocol::ids::valid_device_id;
use warp::http::StatusCode;

use super::classes::{self, Back, Classes};
use super::drift::event_row;
use super::fields::Fields;
use super::fleet::{device_row, open_tally, with_health};
use super::names::display_name;
use super::pages::{self, DevicePage, DeviceRow, PackageRow};
use super::reply::{Page, bad_request, domain_error, error_page, html, redirect, run};
use super::session::{Ctx, post_guard, require};
use super::{PAGE, alerts, chart, time, timeline};
use crate::domain::{DeviceUpdate, now_unix_ms};
use crate::ports::{Location, Role};

/// Pending events shown on a device page.
pub(super) const DEVICE_EVENTS: usize = 20;

pub(super) async fn device(id: String, ctx: Ctx, raw: String) -> Page {
    let session = require(&ctx).await?;
    let mut nav = session.nav();
    let fields = Fields::parse(&raw, &["after", "renamed"], Some("key"))
        .and_then(|f| chart::check_keys(&f.repeated).map(|()| f))
        .map_err(|e| bad_request(Some(nav.clone()), e, "/ui/fleet"))?;
    let renamed =
        classes::renamed_of(&fields).map_err(|e| bad_request(Some(nav.clone()), e, "/ui/fleet"))?;
    let keys = fields.repeated.clone();
    let after = fields.get("after").map(str::to_owned);
    if after
        .as_deref()
        .is_some_and(|a| crate::domain::parse_package_cursor(a).is_none())
    {
        return Err(bad_request(
            Some(nav),
            "`after` is not a package cursor",
            "/ui/fleet",
        ));
    }
    let sphere = ctx.sphere.clone();
    let device_id = id.clone();
    let cursor = after.clone();
    let found = run(move || {
        let Some(device) = sphere.device_summary(&device_id)? else {
            return Ok(None);
        };
        let packages = sphere.device_packages(&device_id, cursor.as_deref(), PAGE)?;
        let events = sphere.list_drift_events(&DriftEventQuery {
            device: Some(device_id.clone()),
            status: Some(DriftEventStatus::Pending),
            limit: Some(DEVICE_EVENTS),
            ..DriftEventQuery::default()
        })?;
        let metrics = chart::device_panel(&sphere, &device_id, &keys)?;
        let alert = alerts::sync_alert(&sphere, &device_id)?;
        let settings = sphere.device_settings(&device_id)?;
        let reported = sphere.reported(&device_id)?;
        Ok(Some((
            device,
            packages,
            events,
            (metrics, alert, settings, reported),
        )))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/fleet"))?;
    let Some((device, packages, events, (metrics, alert, settings, reported))) = found else {
        return Err(error_page(
            Some(nav),
            StatusCode::NOT_FOUND,
            "no such device",
            Some("pick a device on the fleet page".into()),
            "/ui/fleet",
        ));
    };
    nav.live_device = Some(device.device_id.clone());
    let csrf = nav.csrf.clone();
    let timeline = {
        let sphere = ctx.sphere.clone();
        let device_id = device.device_id.clone();
        let form_csrf = (session.role == Role::Admin).then(|| csrf.clone());
        run(move || {
            let mut timeline = timeline::timeline(&sphere, &device_id, now_unix_ms())?;
            if let Some(csrf) = form_csrf.as_deref() {
                timeline.form = Classes::of(&sphere, &device_id)?.form(
                    &device_id,
                    csrf,
                    Back::Device,
                    None,
                    renamed,
                );
            }
            Ok(timeline)
        })
        .await
        .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/fleet"))?
    };
    let names = HashMap::from([(
        device.device_id.clone(),
        display_name(&device, Some(&settings)),
    )]);
    let now = now_unix_ms();
    let package_rows = packages
        .packages
        .iter()
        .map(|p| PackageRow {
            id: p.package_id.clone(),
            accepted: time::format_utc(p.accepted_unix_ms),
            processed: p
                .processed_unix_ms
                .map(time::format_utc)
                .unwrap_or_else(|| "not yet".into()),
            outcome: match (&p.failed, p.processed_unix_ms) {
                (Some(f), _) => format!("failed: {f}"),
                (None, Some(_)) => "processed".into(),
                (None, None) => "pending".into(),
            },
            problems: p.problems.clone(),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &DevicePage {
            nav: Some(nav),
            device: with_health(
                DeviceRow {
                    sync_alert: alert,
                    ..device_row(&device, Some(&settings), 0, 0, now)
                },
                &device,
                &reported,
                &open_tally(&events.events),
                now,
            ),
            host_name: device.name.clone(),
            edit: (session.role == Role::Admin).then(|| pages::DeviceEdit::of(&settings, &csrf)),
            group: settings.group.clone(),
            tags: settings.tags.clone(),
            notes: settings.notes.clone(),
            location: settings
                .location
                .map(|l| format!("{:.5}, {:.5}", l.latitude, l.longitude)),
            enrolled: time::format_utc(device.enrolled_unix_ms),
            events_more: events.next_after.is_some(),
            events: events.events.iter().map(|e| event_row(e, &names)).collect(),
            packages: package_rows,
            after_given: after.is_some(),
            next: packages.next_after,
            refused: reported
                .refused_release
                .as_ref()
                .map(|r| (format!("{} {}", r.name, r.version), r.into())),
            metrics,
            timeline,
        },
    ))
}

/// Fields of the device page's edit form.
pub(super) const EDIT_FIELDS: [&str; 7] = [
    "csrf",
    "name",
    "group",
    "latitude",
    "longitude",
    "tags",
    "notes",
];

/// The edit form's fields as a settings update: an empty name or group clears it, both
/// coordinates empty clear the location, tags are comma-separated, empty notes clear them
/// (absent tags or notes, from an older form, leave them as they are).
pub(super) fn device_update(fields: &Fields) -> Result<DeviceUpdate, String> {
    let text = |k: &str| fields.get(k).map(str::trim).unwrap_or("");
    let coordinate = |k: &str| -> Result<Option<f64>, String> {
        match text(k) {
            "" => Ok(None),
            t => t
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a number of degrees, e.g. 52.52")),
        }
    };
    let location = match (coordinate("latitude")?, coordinate("longitude")?) {
        (None, None) => None,
        (Some(latitude), Some(longitude)) => Some(Location {
            latitude,
            longitude,
            accuracy_m: None,
        }),
        _ => return Err("give both latitude and longitude, or neither".into()),
    };
    Ok(DeviceUpdate {
        name: Some(text("name").to_owned()),
        group: Some(Some(text("group").to_owned()).filter(|g| !g.is_empty())),
        tags: fields.get("tags").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        location: Some(location),
        notes: fields.get("notes").map(str::to_owned),
    })
}

/// `POST /ui/devices/{id}/edit`: an admin sets the device's name, group and location.
pub(super) async fn edit_device(id: String, ctx: Ctx, body: bytes::Bytes) -> Page {
    let back = format!("/ui/devices/{id}");
    if !valid_device_id(&id) {
        return Err(error_page(
            None,
            StatusCode::NOT_FOUND,
            "no such device",
            None,
            "/ui/fleet",
        ));
    }
    // A read-only session never gets here: `http::access` refuses its every write.
    let (session, fields) = post_guard(&ctx, &body, &EDIT_FIELDS, None).await?;
    let nav = session.nav();
    let update = device_update(&fields).map_err(|e| bad_request(Some(nav.clone()), e, &back))?;
    let sphere = ctx.sphere.clone();
    let device_id = id.clone();
    run(move || sphere.update_device(&device_id, &update))
        .await
        .map_err(|e| domain_error(Some(nav), e, &back))?;
    tracing::info!(device = %id, operator = %session.name, "device settings changed in the dashboard");
    Ok(redirect(&back))
}
