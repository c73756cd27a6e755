//! The fleet page (`/ui/fleet`): every device with a health badge (ok, late, offline, alert)
//! judged against its own sync interval, the model it runs, its frame rate and confidence,
//! open drift incidents and the day's drift trend, a page at a time, and the fleet map.

use std::collections::HashMap;

use tinylcm_protocol::ids::valid_device_id;
use warp::http::StatusCode;

use super::fields::Fields;
use super::names::display_name;
use super::pages::{DeviceRow, FleetPage};
use super::reply::{Page, bad_request, domain_error, html, run};
use super::session::{Ctx, require};
use super::sparkline::sparkline;
use super::{PAGE, alerts, map, time};
use crate::domain::health::{self, IntervalSource, Status};
use crate::domain::{DeviceSummary, DomainError, DriftTally, Reported, now_unix_ms};
use crate::ports::DeviceSettings;

/// The badges in the order the page counts them.
const STATUSES: [Status; 4] = [Status::Ok, Status::Late, Status::Alert, Status::Offline];

/// A device's row with what is known without its report (judged against the assumed interval);
/// [`with_health`] completes it.
pub(super) fn device_row(
    d: &DeviceSummary,
    settings: Option<&DeviceSettings>,
    pending: u64,
    total: u64,
    now: u64,
) -> DeviceRow {
    let tally = DriftTally {
        pending,
        total,
        ..DriftTally::default()
    };
    let row = DeviceRow {
        id: d.device_id.clone(),
        name: display_name(d, settings),
        hardware: d.hardware.clone().unwrap_or_else(|| "unknown".into()),
        online: true,
        last_seen: time::format_utc(d.last_seen_unix_ms),
        packages: d.packages,
        model: "—".into(),
        assigned: None,
        sync_alert: None,
        status: Status::Ok.word(),
        reasons: Vec::new(),
        last_sync: String::new(),
        interval: String::new(),
        fps: "—".into(),
        confidence: "—".into(),
        open_incidents: 0,
        trend: Default::default(),
        group: settings.and_then(|s| s.group.clone()),
    };
    with_health(row, d, &Reported::default(), &tally, now)
}

/// The open incidents among `pending` events (a device page's first pending events: at least
/// that many are open).
pub(super) fn open_tally(pending: &[tinylcm_protocol::api::DriftEventView]) -> DriftTally {
    let open: std::collections::HashSet<_> =
        pending.iter().map(crate::domain::IncidentKey::of).collect();
    DriftTally {
        pending: pending.len() as u64,
        open_incidents: open.len() as u64,
        ..DriftTally::default()
    }
}

/// `row` judged against the device's own interval from `reported`, with its model, figures,
/// open incidents and trend (the sync alert must be set before).
pub(super) fn with_health(
    mut row: DeviceRow,
    d: &DeviceSummary,
    reported: &Reported,
    tally: &DriftTally,
    now: u64,
) -> DeviceRow {
    let (interval, source) = health::expected_interval(reported);
    let judged = health::judge(
        d.last_seen_unix_ms,
        now,
        interval,
        tally.open_incidents,
        row.sync_alert.is_some(),
    );
    row.status = judged.status.word();
    row.online = judged.status != Status::Offline;
    row.reasons = judged.reasons;
    row.last_sync = health::human_ms(now.saturating_sub(d.last_seen_unix_ms));
    row.interval = match source {
        IntervalSource::Reported => format!("every {}", health::human_ms(interval)),
        IntervalSource::Cadence => format!("every ~{} (its packages)", health::human_ms(interval)),
        IntervalSource::Assumed => format!("every {} (assumed)", health::human_ms(interval)),
    };
    if let Some(m) = &reported.model {
        row.model = format!("{} {}", m.name, m.version);
    }
    if let Some(v) = reported.fps {
        row.fps = format!("{v:.1}");
    }
    if let Some(v) = reported.confidence {
        row.confidence = format!("{v:.2}");
    }
    row.open_incidents = tally.open_incidents;
    row.trend = sparkline(&tally.per_hour);
    row
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
    let (total, devices, next, tallies, complete, map, (models, blocked, settings, reported)) =
        run(move || {
            let total = sphere.list_devices()?.devices.len();
            let (devices, next) = sphere.devices_page(cursor.as_deref(), PAGE)?;
            let (tallies, complete) = sphere.drift_tallies(now_unix_ms())?;
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
            let mut reported = HashMap::new();
            for d in &devices {
                if let Some(a) = alerts::sync_alert(&sphere, &d.device_id)? {
                    blocked.insert(d.device_id.clone(), a);
                }
                reported.insert(d.device_id.clone(), sphere.reported(&d.device_id)?);
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
                (models, blocked, settings, reported),
            ))
        })
        .await
        .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/fleet"))?;
    let now = now_unix_ms();
    let rows = devices
        .iter()
        .map(|d| {
            let t = tallies.get(&d.device_id).cloned().unwrap_or_default();
            let settings = settings.get(&d.device_id);
            let mut row = device_row(d, settings, t.pending, t.total, now);
            row.sync_alert = blocked.get(&d.device_id).cloned();
            let reported = reported.get(&d.device_id).cloned().unwrap_or_default();
            let mut row = with_health(row, d, &reported, &t, now);
            if let Some((name, version)) = models.get(&d.device_id) {
                let assigned = format!("{name} {version}");
                if reported.model.is_none() {
                    row.model = format!("{assigned} (assigned)");
                } else if row.model != assigned {
                    row.assigned = Some(assigned);
                }
            }
            row
        })
        .collect::<Vec<DeviceRow>>();
    let counts = STATUSES
        .iter()
        .map(|s| {
            (
                s.word(),
                rows.iter().filter(|r| r.status == s.word()).count(),
            )
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &FleetPage {
            nav: Some(nav),
            total,
            rows,
            counts,
            tallies_complete: complete,
            tally_cap: crate::domain::TALLY_SCAN_CAP,
            first_link: after.is_some(),
            next,
            map,
        },
    ))
}
