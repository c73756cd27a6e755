//! The dashboard's templates (askama, compiled into the binary) and the rows they show.
//!
//! Why: every value reaches the HTML through an askama `{{ }}` expression in an `.html`
//! template, which HTML-escapes it; device-supplied strings (names, hardware, detector names,
//! sample names) and operator text (labels, notes) are therefore always text, never markup.
//! Rows hold display-ready strings so the templates stay free of logic.

use askama::Template;

/// What the navigation bar needs: who is logged in and their CSRF token.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The operator's name.
    pub operator: String,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// On a device's page: only its changes refresh the page.
    pub live_device: Option<String>,
}

/// The login form.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Never set on the login page.
    pub nav: Option<Nav>,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// Any refusal or failure, as a page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// The bar, when the operator is logged in.
    pub nav: Option<Nav>,
    /// HTTP status.
    pub status: u16,
    /// The status's reason phrase.
    pub title: String,
    /// What went wrong.
    pub message: String,
    /// What to do.
    pub fix: Option<String>,
    /// Per-event outcomes of a bulk action (event id, outcome).
    pub outcomes: Vec<(u64, String)>,
    /// Where "Back" goes (a dashboard path built by the server).
    pub back: String,
}

/// One device on the fleet or device page.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// Its name, or its id when it has none.
    pub name: String,
    /// Hardware, or `unknown`.
    pub hardware: String,
    /// Whether it was seen within the online window.
    pub online: bool,
    /// Last seen, formatted.
    pub last_seen: String,
    /// Packages accepted.
    pub packages: u64,
    /// The model it reports running (`name version`), or `—`.
    pub model: String,
    /// The release it is assigned (`name version`), when that is not the model it runs.
    pub assigned: Option<String>,
    /// Its sync alert: something that is not sphere-lite answers its requests.
    pub sync_alert: Option<super::alerts::SyncAlert>,
    /// Its health badge: `ok`, `late`, `offline` or `alert`.
    pub status: &'static str,
    /// Why it is not ok, worst first.
    pub reasons: Vec<String>,
    /// Age of its last sync, e.g. `12 s`.
    pub last_sync: String,
    /// How often it is expected to sync, and from what, e.g. `every 5 s`.
    pub interval: String,
    /// Frames per second it last reported, or `—`.
    pub fps: String,
    /// Mean confidence it last reported (0..1, two digits), or `—`.
    pub confidence: String,
    /// Incidents with undecided drift events.
    pub open_incidents: u64,
    /// Drift events per hour over the last day.
    pub trend: super::sparkline::Sparkline,
    /// Its group, if any.
    pub group: Option<String>,
}

/// The fleet overview.
#[derive(Template)]
#[template(path = "fleet.html")]
pub struct FleetPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// Number of devices in the fleet.
    pub total: usize,
    /// This page's devices.
    pub rows: Vec<DeviceRow>,
    /// Devices of this page per badge: (`ok`/`late`/`alert`/`offline`, count), none left out.
    pub counts: Vec<(&'static str, usize)>,
    /// Whether every drift event was counted.
    pub tallies_complete: bool,
    /// How many events the counts look at, at most.
    pub tally_cap: usize,
    /// Show a link to the first page.
    pub first_link: bool,
    /// Cursor of the next page.
    pub next: Option<String>,
    /// The located devices of this page, if any.
    pub map: Option<super::map::FleetMap>,
}

/// One feedback item of a decision, as the Drift Hub shows it.
#[derive(Debug, Clone)]
pub struct FeedbackRow {
    /// The item's id in the device's queue.
    pub id: u64,
    /// What it tells the device, in words.
    pub what: String,
    /// `queued`, `delivered`, `applied` or `refused`.
    pub progress: &'static str,
    /// The device's reason (refused) or how it applied it (device text).
    pub reason: Option<String>,
}

/// One drift event on the Drift Hub or a device page.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Server id.
    pub id: u64,
    /// Device event number.
    pub event_seq: u64,
    /// Device incident number.
    pub incident: u64,
    /// Device name (or id).
    pub device_name: String,
    /// Detector name (device-supplied).
    pub detector: String,
    /// Statistic, formatted.
    pub statistic: String,
    /// Threshold, formatted.
    pub threshold: String,
    /// Magnitude, formatted.
    pub magnitude: String,
    /// When it happened (device clock), formatted.
    pub when: String,
    /// When the server stored it, formatted.
    pub received: String,
    /// URLs of its sample images.
    pub images: Vec<String>,
    /// `pending`, `validated` or `rejected`.
    pub status: &'static str,
    /// Whether it can still be decided.
    pub pending: bool,
    /// The label it was validated with.
    pub label: Option<String>,
    /// The decision's feedback items and how far each got.
    pub feedback: Vec<FeedbackRow>,
    /// The operator's note.
    pub note: Option<String>,
    /// Who decided.
    pub decided_by: String,
    /// When, formatted.
    pub decided: String,
}

/// One package on a device page.
#[derive(Debug, Clone)]
pub struct PackageRow {
    /// Package id.
    pub id: String,
    /// Accepted at, formatted.
    pub accepted: String,
    /// Processed at, formatted, or `not yet`.
    pub processed: String,
    /// `processed`, `pending` or `failed: …`.
    pub outcome: String,
    /// Problems with parts of it.
    pub problems: Vec<String>,
}

/// One device's page.
#[derive(Template)]
#[template(path = "device.html")]
pub struct DevicePage {
    /// The bar.
    pub nav: Option<Nav>,
    /// The device.
    pub device: DeviceRow,
    /// Enrolled at, formatted.
    pub enrolled: String,
    /// Its first pending drift events.
    pub events: Vec<EventRow>,
    /// Whether it has more pending events than shown.
    pub events_more: bool,
    /// Its timeline (incidents, adaptation rounds, proposed classes, rollbacks, renames) and
    /// the admin's rename form.
    pub timeline: super::timeline::Timeline,
    /// This page of its packages.
    pub packages: Vec<PackageRow>,
    /// Whether this is not the first page.
    pub after_given: bool,
    /// Cursor of the next page.
    pub next: Option<String>,
    /// Its metric charts and the key chooser.
    pub metrics: super::chart::MetricsPanel,
    /// The name it gave at enrollment (its host name), if any.
    pub host_name: Option<String>,
    /// Its group, if any.
    pub group: Option<String>,
    /// Its location (`latitude, longitude`), if set.
    pub location: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// The operator's notes, if any.
    pub notes: Option<String>,
    /// The edit form's values; `None` for read-only sessions (no form).
    pub edit: Option<DeviceEdit>,
    /// The release it refused (`name version`) and why, as it reports it.
    pub refused: Option<(String, super::rollout::RefusalShown)>,
}

/// The device page's edit form, filled with the current settings.
#[derive(Debug, Clone, Default)]
pub struct DeviceEdit {
    /// The session's CSRF token.
    pub csrf: String,
    /// The name an operator set (empty: the default display name).
    pub name: String,
    /// The group (empty: none).
    pub group: String,
    /// Degrees north (empty: no location).
    pub latitude: String,
    /// Degrees east.
    pub longitude: String,
    /// The tags, comma-separated.
    pub tags: String,
    /// The notes.
    pub notes: String,
}

impl DeviceEdit {
    /// The form for `settings`.
    pub fn of(settings: &crate::ports::DeviceSettings, csrf: &str) -> DeviceEdit {
        DeviceEdit {
            csrf: csrf.to_owned(),
            name: settings.name.clone().unwrap_or_default(),
            group: settings.group.clone().unwrap_or_default(),
            latitude: settings
                .location
                .map(|l| l.latitude.to_string())
                .unwrap_or_default(),
            longitude: settings
                .location
                .map(|l| l.longitude.to_string())
                .unwrap_or_default(),
            tags: settings.tags.join(", "),
            notes: settings.notes.clone().unwrap_or_default(),
        }
    }
}

/// A class the label chooser offers.
#[derive(Debug, Clone)]
pub struct ClassChoice {
    /// The digit that picks it in keyboard review (1–9), if it has one.
    pub key: Option<usize>,
    /// The class name (device-supplied).
    pub name: String,
    /// Whether the device proposed it (`new-…`) rather than knowing it.
    pub proposed: bool,
}

/// One incident: the drift events one device reported for it, reviewed as one.
#[derive(Debug, Clone)]
pub struct IncidentCard {
    /// The id of its first event: its page is `/ui/drift/{id}`.
    pub id: u64,
    /// Device id.
    pub device_id: String,
    /// Device name (or id).
    pub device_name: String,
    /// The device's incident number.
    pub incident: u64,
    /// Its first onset (device clock), formatted.
    pub when: String,
    /// `pending`, `validated`, `rejected` or `partly decided`.
    pub status: &'static str,
    /// Whether some of its events can still be decided.
    pub pending: bool,
    /// Its events, one per detector onset.
    pub events: Vec<EventRow>,
    /// Its distinct detectors, in order of onset.
    pub detectors: Vec<String>,
    /// URLs of its distinct sample images.
    pub images: Vec<String>,
    /// The label chooser's classes: the device's known ones, then the ones it proposed.
    pub classes: Vec<ClassChoice>,
    /// The class the device predicted for the frame of its first onset that says, if any
    /// (devices older than that field say none).
    pub predicted: Option<String>,
    /// That frame's best classes with their scores (two digits), best first.
    pub top_k: Vec<(String, String)>,
    /// Whether its pending onsets can be selected for the page's bulk form.
    pub bulk: bool,
}

/// The Drift Hub: one card per incident.
#[derive(Template)]
#[template(path = "drift.html")]
pub struct DriftPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// The CSRF token of the forms.
    pub csrf: String,
    /// Devices for the filter: (id, name, selected).
    pub devices: Vec<(String, String, bool)>,
    /// The detector filter as typed.
    pub detector: String,
    /// Status choices: (value, selected).
    pub statuses: Vec<(&'static str, bool)>,
    /// The `since` field's value.
    pub since: String,
    /// The `until` field's value.
    pub until: String,
    /// The filter as a query string, so decisions return to the same view.
    pub return_query: String,
    /// The incident just decided, shown with what became of the decision.
    pub decided: Option<IncidentCard>,
    /// This page's incidents.
    pub incidents: Vec<IncidentCard>,
    /// Whether this is not the first page.
    pub after_given: bool,
    /// The first page of this filter.
    pub first_link: String,
    /// The next page of this filter.
    pub next_link: Option<String>,
}

/// One incident's page (`/ui/drift/{id}`).
#[derive(Template)]
#[template(path = "incident.html")]
pub struct IncidentPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// The CSRF token of the form.
    pub csrf: String,
    /// Where a decision returns to (the Drift Hub's pending list).
    pub return_query: String,
    /// The incident.
    pub card: IncidentCard,
}

/// One image on the Data Hub.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// Where the image is served.
    pub url: String,
    /// Device id.
    pub device_id: String,
    /// Its display name.
    pub device_name: String,
    /// Package id.
    pub package_id: String,
    /// File name in the package.
    pub name: String,
    /// Quarantine entry, if it is a quarantine thumbnail.
    pub quarantine_id: Option<u64>,
    /// When its package was accepted, formatted.
    pub accepted: String,
}

/// Every image file of processed packages (the Data Hub's file view).
#[derive(Template)]
#[template(path = "files.html")]
pub struct DataPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// Whether the images are one device's, newest package first (else every device's, by
    /// device, package id and name).
    pub by_time: bool,
    /// Devices for the filter: (id, name, selected).
    pub devices: Vec<(String, String, bool)>,
    /// This page's images.
    pub images: Vec<ImageRow>,
    /// Whether this is not the first page.
    pub after_given: bool,
    /// The first page of this filter.
    pub first_link: String,
    /// The next page of this filter.
    pub next_link: Option<String>,
}

/// One release on the models page.
pub struct ReleaseRow {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Size, readable.
    pub size: String,
    /// SHA-256, first 12 hex digits.
    pub sha_short: String,
    /// Signing key id.
    pub key_id: String,
    /// Who published it.
    pub uploaded_by: String,
    /// When, UTC.
    pub uploaded: String,
}

/// One rollout on the models page.
pub struct RolloutRow {
    /// Device group (`all`: devices without a group rollout).
    pub group: String,
    /// `name version`.
    pub release: String,
    /// Share of the group.
    pub percent: u8,
    /// What the rest of a canary keeps.
    pub previous: Option<String>,
    /// Who set it.
    pub by: String,
    /// When, UTC.
    pub when: String,
}

/// The models page: releases and rollouts.
#[derive(Template)]
#[template(path = "models.html")]
pub struct ModelsPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// Releases by name, then upload time.
    pub releases: Vec<ReleaseRow>,
    /// Rollouts by group.
    pub rollouts: Vec<RolloutRow>,
    /// The CSRF token of the publish and rollout forms (admins only: read-only operators
    /// see no forms).
    pub csrf: Option<String>,
    /// Each rollout's progress per device.
    pub progress: Vec<super::rollout::RolloutProgress>,
}
