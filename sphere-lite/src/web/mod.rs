//! The web dashboard under `/ui/`: server-rendered pages (fleet, device, Drift Hub, Data Hub in
//! `datahub`),
//! an operator login, live updates over server-sent events, and the sample images.
//!
//! Why: operators review drift and watch the fleet in a browser, without a build step or a CDN:
//! the pages are askama templates compiled into the binary (every value HTML-escaped), the CSS
//! and the small script are embedded files. The rules that keep it safe:
//!
//! * **Login**: the operator pastes their operator token; an active one (not expired, not
//!   revoked) starts a server-side session (`domain::credentials`): a new random session id
//!   goes into an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS) scoped to `/ui`,
//!   and only its hash is stored, bound to the token. The cookie is never the token: it is
//!   worthless as a bearer token on the API, and a token put in the cookie is no session.
//!   Logout deletes the session; it also ends after 12 h, after 1 h without a request, and
//!   when its token is revoked or expires. Device tokens are refused. Pages without a valid
//!   session redirect to the login page; images and the live stream answer 401.
//! * **CSRF**: every POST carries a token derived from the session (HMAC-SHA256 keyed by the
//!   session id), compared in constant time; a present `Origin` must be this host and a
//!   present `Sec-Fetch-Site` must be same-origin.
//! * **Headers**: a strict `Content-Security-Policy` (no inline script, nothing from other
//!   origins, no framing), `nosniff`, no referrer to other sites, `no-store`.
//! * **Input**: unknown or malformed query parameters get a 400 page, pages are bounded and use
//!   cursors; only image files of processed packages are served, as images, sandboxed.

mod alerts;
pub mod chart;
mod config_page;
mod datahub;
pub mod map;
mod pages;
pub mod time;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use askama::Template;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tinylcm_protocol::api::{
    DEFAULT_DRIFT_EVENT_PAGE, DriftEventQuery, DriftEventStatus, DriftEventView, DriftVerdict,
    FeedbackItemState, FeedbackVerdict, MAX_DETECTOR_BYTES, RejectRequest, ValidateRequest,
};
use tinylcm_protocol::ids::{valid_device_id, valid_package_id};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::domain::{
    Change, DeviceSummary, DeviceUpdate, DomainError, MAX_DASHBOARD_PAGE, Sphere, is_image_key,
    now_unix_ms,
};
use crate::http::ApiError;
use crate::ports::{DeviceSettings, Location, Role};
use pages::{
    DevicePage, DeviceRow, DriftPage, ErrorPage, EventRow, FleetPage, LoginPage, ModelsPage, Nav,
    PackageRow, ReleaseRow, RolloutRow,
};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sphere_session";

/// How long a login lasts at most (seconds): the cookie's `Max-Age`, equal to the server-side
/// session's lifetime.
pub const SESSION_SECONDS: u64 = crate::domain::SESSION_LIFETIME_MS / 1000;

/// A device counts as online when its last authenticated request is at most this old.
pub const ONLINE_WINDOW_MS: u64 = 10 * 60 * 1000;

/// The `Content-Security-Policy` of every dashboard response.
pub const CSP: &str = "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Devices on one fleet page; packages on one device page; images on one Data Hub page.
const PAGE: usize = 50;

/// Pending events shown on a device page.
const DEVICE_EVENTS: usize = 20;

/// Devices offered in the filter menus at most.
const DEVICE_MENU: usize = 500;

/// Largest form body (bytes).
const MAX_FORM_BYTES: u64 = 64 * 1024;

/// Longest session cookie value accepted (session ids are 47 bytes).
const MAX_TOKEN_BYTES: usize = 256;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// Everything a handler needs from the request besides its path and body.
#[derive(Clone)]
struct Ctx {
    sphere: Arc<Sphere>,
    session: Option<String>,
    origin: Option<String>,
    host: Option<String>,
    fetch_site: Option<String>,
    https: bool,
}

/// A logged-in operator.
struct Session {
    name: String,
    /// What the operator may do: read-only sessions see no forms that change anything.
    role: Role,
    /// The session id (the cookie's value): the CSRF key.
    token: String,
}

impl Session {
    fn nav(&self) -> Nav {
        Nav {
            operator: self.name.clone(),
            csrf: csrf_token(&self.token),
            live_device: None,
        }
    }
}

/// A handler's result: the page, or the refusal to send instead (both complete responses).
type Page = Result<Response, Response>;

/// The CSRF token of a session: HMAC-SHA256 of a fixed label keyed by the session token, hex.
pub fn csrf_token(session_token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(session_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"sphere-lite dashboard csrf v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a cookie value can be a session id at all (short, URL-safe characters).
pub(crate) fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Adds the security headers every dashboard response carries (kept if already set).
fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        // Not `no-referrer`: with it browsers send `Origin: null` on form posts, and the
        // origin check needs the real one. Nothing leaves for other sites either way.
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = warp::reply::with_status(warp::reply::html(body), status).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            warp::reply::with_status("internal server error", StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }
}

fn redirect(to: &str) -> Response {
    let mut r = warp::reply::with_status(warp::reply(), StatusCode::SEE_OTHER).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn error_page(
    nav: Option<Nav>,
    status: StatusCode,
    message: impl Into<String>,
    fix: Option<String>,
    back: &str,
) -> Response {
    html(
        status,
        &ErrorPage {
            nav,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.into(),
            fix,
            outcomes: vec![],
            back: back.to_owned(),
        },
    )
}

fn bad_request(nav: Option<Nav>, message: impl Into<String>, back: &str) -> Response {
    error_page(nav, StatusCode::BAD_REQUEST, message, None, back)
}

/// A domain error as a page (storage details are logged, not shown).
fn domain_error(nav: Option<Nav>, e: DomainError, back: &str) -> Response {
    let api = ApiError::from(e);
    error_page(nav, api.status, api.error, api.fix, back)
}

/// Run a blocking domain call on the blocking pool.
async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DomainError> + Send + 'static,
) -> Result<T, DomainError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(crate::ports::StoreError::new("task", e).into()))
}

/// The operator behind the session cookie, if it names a live session.
async fn session(ctx: &Ctx) -> Result<Option<Session>, Response> {
    let Some(token) = ctx.session.clone().filter(|t| cookie_safe(t)) else {
        return Ok(None);
    };
    let sphere = ctx.sphere.clone();
    let id = token.clone();
    match run(move || sphere.session_operator(&id)).await {
        Ok(Some(operator)) => Ok(Some(Session {
            name: operator.name,
            role: operator.role,
            token,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(domain_error(None, e, "/ui/login")),
    }
}

/// The logged-in operator, or a redirect to the login page.
async fn require(ctx: &Ctx) -> Result<Session, Response> {
    session(ctx).await?.ok_or_else(|| redirect("/ui/login"))
}

/// The logged-in operator, or a bare 401 (images, the live stream: no page to redirect).
async fn require_401(ctx: &Ctx) -> Result<Session, Response> {
    session(ctx).await?.ok_or_else(|| {
        error_page(
            None,
            StatusCode::UNAUTHORIZED,
            "log in first",
            None,
            "/ui/login",
        )
    })
}

/// Whether a state-changing request comes from a page of this server.
fn same_origin(ctx: &Ctx) -> bool {
    same_origin_parts(
        ctx.origin.as_deref(),
        ctx.host.as_deref(),
        ctx.fetch_site.as_deref(),
    )
}

/// A present `Sec-Fetch-Site` must be same-origin (or `none`: typed by the user), and a present
/// `Origin` must be this host (over HTTP or HTTPS).
fn same_origin_parts(origin: Option<&str>, host: Option<&str>, fetch_site: Option<&str>) -> bool {
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return false;
    }
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

/// The fields of a query string or form body; a parameter given twice, or one not in
/// `allowed` (when not `repeatable`), is refused.
struct Fields {
    single: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Fields {
    fn parse(raw: &str, allowed: &[&str], repeatable: Option<&str>) -> Result<Fields, String> {
        let mut single = HashMap::new();
        let mut repeated = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if Some(k.as_ref()) == repeatable {
                repeated.push(v.into_owned());
                continue;
            }
            if !allowed.contains(&k.as_ref()) {
                let shown: String = k.chars().take(40).collect();
                return Err(format!(
                    "unknown parameter {shown:?}; this page takes: {}",
                    allowed.join(", ")
                ));
            }
            if single
                .insert(k.clone().into_owned(), v.into_owned())
                .is_some()
            {
                return Err(format!("parameter {:?} given twice", k.as_ref()));
            }
        }
        Ok(Fields { single, repeated })
    }

    /// A non-empty value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.single
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The `datetime-local` value of `key` (UTC) as Unix ms.
    fn time(&self, key: &str) -> Result<Option<u64>, String> {
        self.get(key)
            .map(|v| {
                time::parse_local_field(v).ok_or_else(|| {
                    format!("`{key}` must be a UTC date and time like 2025-11-26T10:00")
                })
            })
            .transpose()
    }
}

fn is_online(last_seen_unix_ms: u64, now: u64) -> bool {
    now.saturating_sub(last_seen_unix_ms) <= ONLINE_WINDOW_MS
}

/// The first hex digits of a device id (`dev-3f9a1c…` → `3f9a1c`): enough to tell apart
/// devices that share a host name.
fn short_id(device_id: &str) -> &str {
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

fn device_row(
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

fn image_url(key: &str) -> String {
    format!("/ui/img/{key}")
}

fn event_row(e: &DriftEventView, names: &HashMap<String, String>) -> EventRow {
    EventRow {
        id: e.id,
        event_seq: e.event_seq,
        incident: e.incident,
        device_id: e.device_id.clone(),
        device_name: names
            .get(&e.device_id)
            .cloned()
            .unwrap_or_else(|| e.device_id.clone()),
        detector: e.detector.clone(),
        statistic: format!("{:.3}", e.statistic),
        threshold: format!("{:.3}", e.threshold),
        magnitude: format!("{:.3}", e.magnitude),
        when: time::format_utc(e.unix_ms),
        received: time::format_utc(e.received_unix_ms),
        images: e
            .samples
            .iter()
            .filter(|k| is_image_key(k))
            .map(|k| image_url(k))
            .collect(),
        status: e.status.as_str(),
        pending: e.status == DriftEventStatus::Pending,
        label: e.label.clone(),
        feedback: e.feedback.iter().map(feedback_row).collect(),
        note: e.note.clone(),
        decided_by: e.decided_by.clone().unwrap_or_default(),
        decided: e.decided_unix_ms.map(time::format_utc).unwrap_or_default(),
    }
}

/// A decision's feedback item in words (escaped by the template like all text).
fn feedback_row(f: &FeedbackItemState) -> pages::FeedbackRow {
    let what = match &f.verdict {
        FeedbackVerdict::Drift { verdict, .. } => match verdict {
            DriftVerdict::Confirmed => "drift confirmed".to_string(),
            DriftVerdict::FalseAlarm => "false alarm".to_string(),
        },
        FeedbackVerdict::Sample {
            id, label: Some(l), ..
        } => format!("sample {id} is {l}"),
        FeedbackVerdict::Sample { id, .. } => format!("sample {id} rejected"),
        FeedbackVerdict::Class { from, to } => format!("class {from} → {to}"),
        FeedbackVerdict::Config { revision, .. } => format!("configuration {revision}"),
    };
    pages::FeedbackRow {
        id: f.id,
        what,
        progress: f.progress.as_str(),
        reason: f.reason.clone(),
    }
}

/// (id, name) of the first [`DEVICE_MENU`] devices, plus `keep` if it is further on.
fn device_menu(sphere: &Sphere, keep: Option<&str>) -> Result<Vec<(String, String)>, DomainError> {
    let devices = sphere.list_devices()?.devices;
    let name = |d: &DeviceSummary| -> Result<String, DomainError> {
        let settings = match sphere.device_settings(&d.device_id) {
            Ok(s) => Some(s),
            // Removed since the listing: its enrollment name will do.
            Err(DomainError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(display_name(d, settings.as_ref()))
    };
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

fn with_selected(
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

// --- Drift Hub filter ------------------------------------------------------------------------

/// The Drift Hub's filter (from its query string) and cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DriftFilter {
    device: Option<String>,
    detector: Option<String>,
    /// `None`: any status.
    status: Option<DriftEventStatus>,
    since: Option<u64>,
    until: Option<u64>,
    after: Option<u64>,
}

impl Default for DriftFilter {
    fn default() -> Self {
        DriftFilter {
            device: None,
            detector: None,
            status: Some(DriftEventStatus::Pending),
            since: None,
            until: None,
            after: None,
        }
    }
}

const DRIFT_PARAMS: [&str; 6] = ["device", "detector", "status", "since", "until", "after"];

impl DriftFilter {
    fn parse(raw: &str) -> Result<DriftFilter, String> {
        let f = Fields::parse(raw, &DRIFT_PARAMS, None)?;
        let device = f.get("device").map(str::to_owned);
        if device.as_deref().is_some_and(|d| !valid_device_id(d)) {
            return Err("`device` is not a device id".into());
        }
        let detector = f.get("detector").map(str::to_owned);
        if detector
            .as_deref()
            .is_some_and(|d| d.len() > MAX_DETECTOR_BYTES)
        {
            return Err(format!(
                "`detector` is longer than {MAX_DETECTOR_BYTES} bytes"
            ));
        }
        let status = match f.get("status") {
            None | Some("pending") => Some(DriftEventStatus::Pending),
            Some("validated") => Some(DriftEventStatus::Validated),
            Some("rejected") => Some(DriftEventStatus::Rejected),
            Some("any") => None,
            Some(_) => return Err("`status` must be pending, validated, rejected or any".into()),
        };
        let after = f
            .get("after")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| "`after` must be an event id".to_owned())
            })
            .transpose()?;
        Ok(DriftFilter {
            device,
            detector,
            status,
            since: f.time("since")?,
            until: f.time("until")?,
            after,
        })
    }

    /// The filter as a query string, with `after` as the cursor.
    fn query(&self, after: Option<u64>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(d) = &self.device {
            q.append_pair("device", d);
        }
        if let Some(d) = &self.detector {
            q.append_pair("detector", d);
        }
        q.append_pair("status", self.status.map_or("any", |s| s.as_str()));
        if let Some(t) = self.since {
            q.append_pair("since", &time::format_local_field(t));
        }
        if let Some(t) = self.until {
            q.append_pair("until", &time::format_local_field(t));
        }
        if let Some(a) = after {
            q.append_pair("after", &a.to_string());
        }
        q.finish()
    }

    fn link(&self, after: Option<u64>) -> String {
        format!("/ui/drift?{}", self.query(after))
    }
}

// --- Handlers --------------------------------------------------------------------------------

async fn login_form(ctx: Ctx) -> Page {
    if session(&ctx).await?.is_some() {
        return Ok(redirect("/ui/fleet"));
    }
    Ok(html(
        StatusCode::OK,
        &LoginPage {
            nav: None,
            error: None,
        },
    ))
}

async fn login(ctx: Ctx, body: bytes::Bytes) -> Page {
    let refuse = |status: StatusCode, error: &str| {
        html(
            status,
            &LoginPage {
                nav: None,
                error: Some(error.to_owned()),
            },
        )
    };
    if !same_origin(&ctx) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "this login did not come from this server's login page",
        ));
    }
    let raw = String::from_utf8_lossy(&body);
    let fields =
        Fields::parse(&raw, &["token"], None).map_err(|e| refuse(StatusCode::BAD_REQUEST, &e))?;
    let Some(token) = fields.get("token").map(str::to_owned) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "paste your operator token"));
    };
    if !cookie_safe(&token) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "unknown operator token"));
    }
    let sphere = ctx.sphere.clone();
    match run(move || sphere.login(&token)).await {
        Ok((session_id, _operator)) => {
            let mut r = redirect("/ui/fleet");
            let cookie = format!(
                "{SESSION_COOKIE}={session_id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
                if ctx.https { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(DomainError::Forbidden { .. }) => Err(refuse(
            StatusCode::FORBIDDEN,
            "device tokens cannot log in to the dashboard; use an operator token",
        )),
        Err(DomainError::Unauthorized { error, .. }) => {
            Err(refuse(StatusCode::UNAUTHORIZED, &error))
        }
        Err(e) => Err(domain_error(None, e, "/ui/login")),
    }
}

/// Checks a POST (origin, session, CSRF token) and returns the operator and the fields.
async fn post_guard(
    ctx: &Ctx,
    body: &[u8],
    allowed: &[&str],
    repeatable: Option<&str>,
) -> Result<(Session, Fields), Response> {
    if !same_origin(ctx) {
        return Err(error_page(
            None,
            StatusCode::FORBIDDEN,
            "this request did not come from a page of this server",
            None,
            "/ui/fleet",
        ));
    }
    let session = require(ctx).await?;
    let raw = String::from_utf8_lossy(body);
    let fields = Fields::parse(&raw, allowed, repeatable)
        .map_err(|e| bad_request(Some(session.nav()), e, "/ui/fleet"))?;
    let expected = csrf_token(&session.token);
    let given = fields.get("csrf").unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(error_page(
            Some(session.nav()),
            StatusCode::FORBIDDEN,
            "the form's security token is missing or wrong",
            Some("reload the page and submit the form again".into()),
            "/ui/fleet",
        ));
    }
    Ok((session, fields))
}

async fn logout(ctx: Ctx, body: bytes::Bytes) -> Page {
    let (session, _) = post_guard(&ctx, &body, &["csrf"], None).await?;
    let sphere = ctx.sphere.clone();
    let id = session.token;
    run(move || sphere.logout(&id))
        .await
        .map_err(|e| domain_error(None, e, "/ui/fleet"))?;
    let mut r = redirect("/ui/login");
    let cookie = format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn fleet(ctx: Ctx, raw: String) -> Page {
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

async fn device(id: String, ctx: Ctx, raw: String) -> Page {
    let session = require(&ctx).await?;
    let mut nav = session.nav();
    let fields = Fields::parse(&raw, &["after"], Some("key"))
        .and_then(|f| chart::check_keys(&f.repeated).map(|()| f))
        .map_err(|e| bad_request(Some(nav.clone()), e, "/ui/fleet"))?;
    let keys = fields.repeated.clone();
    let after = fields.get("after").map(str::to_owned);
    if after.as_deref().is_some_and(|a| !valid_package_id(a)) {
        return Err(bad_request(
            Some(nav),
            "`after` is not a package id",
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
        Ok(Some((device, packages, events, (metrics, alert, settings))))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/fleet"))?;
    let Some((device, packages, events, (metrics, alert, settings))) = found else {
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
            device: DeviceRow {
                sync_alert: alert,
                ..device_row(&device, Some(&settings), 0, 0, now)
            },
            host_name: device.name.clone(),
            edit: (session.role == Role::Admin).then(|| pages::DeviceEdit::of(&settings, &csrf)),
            group: settings.group.clone(),
            location: settings
                .location
                .map(|l| format!("{:.5}, {:.5}", l.latitude, l.longitude)),
            enrolled: time::format_utc(device.enrolled_unix_ms),
            events_more: events.next_after.is_some(),
            events: events.events.iter().map(|e| event_row(e, &names)).collect(),
            packages: package_rows,
            after_given: after.is_some(),
            next: packages.next_after,
            metrics,
        },
    ))
}

/// Fields of the device page's edit form.
const EDIT_FIELDS: [&str; 5] = ["csrf", "name", "group", "latitude", "longitude"];

/// The edit form's fields as a settings update: an empty name or group clears it, both
/// coordinates empty clear the location.
fn device_update(fields: &Fields) -> Result<DeviceUpdate, String> {
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
        tags: None,
        location: Some(location),
    })
}

/// `POST /ui/devices/{id}/edit`: an admin sets the device's name, group and location.
async fn edit_device(id: String, ctx: Ctx, body: bytes::Bytes) -> Page {
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

async fn drift(ctx: Ctx, raw: String) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let filter =
        DriftFilter::parse(&raw).map_err(|e| bad_request(Some(nav.clone()), e, "/ui/drift"))?;
    let sphere = ctx.sphere.clone();
    let f = filter.clone();
    let (menu, list) = run(move || {
        let menu = device_menu(&sphere, f.device.as_deref())?;
        let list = sphere.list_drift_events(&DriftEventQuery {
            device: f.device.clone(),
            detector: f.detector.clone(),
            status: f.status,
            since: f.since,
            until: f.until,
            after: f.after,
            limit: Some(DEFAULT_DRIFT_EVENT_PAGE),
        })?;
        Ok((menu, list))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/drift"))?;
    let names: HashMap<String, String> = menu.iter().cloned().collect();
    let statuses = ["pending", "validated", "rejected", "any"]
        .into_iter()
        .map(|s| (s, filter.status.map_or("any", |st| st.as_str()) == s))
        .collect();
    Ok(html(
        StatusCode::OK,
        &DriftPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            devices: with_selected(menu, filter.device.as_deref()),
            detector: filter.detector.clone().unwrap_or_default(),
            statuses,
            since: filter
                .since
                .map(time::format_local_field)
                .unwrap_or_default(),
            until: filter
                .until
                .map(time::format_local_field)
                .unwrap_or_default(),
            return_query: filter.query(filter.after),
            events: list.events.iter().map(|e| event_row(e, &names)).collect(),
            after_given: filter.after.is_some(),
            first_link: filter.link(None),
            next_link: list.next_after.map(|a| filter.link(Some(a))),
        },
    ))
}

/// Validate or reject `ids` as `operator`; (id, outcome) per event and the worst failure.
fn decide_all(
    sphere: &Sphere,
    ids: &[u64],
    operator: &str,
    validate: bool,
    label: Option<String>,
    note: Option<String>,
) -> (Vec<(u64, String)>, Option<DomainError>) {
    let mut outcomes = Vec::new();
    let mut failure = None;
    for &id in ids {
        let result = if validate {
            sphere.validate_drift_event(
                id,
                operator,
                &ValidateRequest {
                    label: label.clone(),
                    note: note.clone(),
                },
            )
        } else {
            sphere.reject_drift_event(id, operator, &RejectRequest { note: note.clone() })
        };
        match result {
            Ok(e) => outcomes.push((id, e.status.as_str().to_owned())),
            Err(e) => {
                outcomes.push((id, format!("not changed: {e}")));
                failure.get_or_insert(e);
            }
        }
    }
    (outcomes, failure)
}

const DECIDE_FIELDS: [&str; 5] = ["csrf", "return", "action", "label", "note"];

async fn decide(ids: Option<u64>, ctx: Ctx, body: bytes::Bytes) -> Page {
    let repeatable = if ids.is_none() { Some("id") } else { None };
    let (session, fields) = post_guard(&ctx, &body, &DECIDE_FIELDS, repeatable).await?;
    let nav = session.nav();
    // The view to return to: re-parsed and re-built, so it can only ever be a Drift Hub URL.
    let back = DriftFilter::parse(fields.get("return").unwrap_or(""))
        .unwrap_or_default()
        .link(None);
    let validate = match fields.get("action") {
        Some("validate") => true,
        Some("reject") => false,
        _ => {
            return Err(bad_request(
                Some(nav),
                "`action` must be validate or reject",
                &back,
            ));
        }
    };
    let ids: Vec<u64> = match ids {
        Some(id) => vec![id],
        None => {
            let mut ids = Vec::new();
            for v in &fields.repeated {
                match v.parse::<u64>() {
                    Ok(id) if !ids.contains(&id) => ids.push(id),
                    Ok(_) => {}
                    Err(_) => return Err(bad_request(Some(nav), "`id` must be event ids", &back)),
                }
            }
            if ids.is_empty() {
                return Err(bad_request(Some(nav), "select at least one event", &back));
            }
            if ids.len() > MAX_DASHBOARD_PAGE {
                return Err(bad_request(
                    Some(nav),
                    format!("at most {MAX_DASHBOARD_PAGE} events at once"),
                    &back,
                ));
            }
            ids
        }
    };
    let label = fields.get("label").map(str::to_owned);
    let note = fields.get("note").map(str::to_owned);
    let sphere = ctx.sphere.clone();
    let operator = session.name.clone();
    let list = ids.clone();
    let (outcomes, failure) =
        run(move || Ok(decide_all(&sphere, &list, &operator, validate, label, note)))
            .await
            .map_err(|e| domain_error(Some(nav.clone()), e, &back))?;
    match failure {
        None => Ok(redirect(&back)),
        Some(e) => {
            let api = ApiError::from(e);
            Err(html(
                api.status,
                &ErrorPage {
                    nav: Some(nav),
                    status: api.status.as_u16(),
                    title: api.status.canonical_reason().unwrap_or("Error").to_owned(),
                    message: if ids.len() == 1 {
                        api.error
                    } else {
                        "some of the selected events were not changed".into()
                    },
                    fix: api.fix,
                    outcomes: if ids.len() == 1 { vec![] } else { outcomes },
                    back,
                },
            ))
        }
    }
}

async fn models(ctx: Ctx) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let sphere = ctx.sphere.clone();
    let list = run(move || sphere.list_releases())
        .await
        .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/models"))?;
    let releases = list
        .releases
        .iter()
        .map(|r| ReleaseRow {
            name: r.name.clone(),
            version: r.version.clone(),
            size: format!("{:.1} KiB", r.size as f64 / 1024.0),
            sha_short: r.sha256.chars().take(12).collect(),
            key_id: r.key_id.clone(),
            uploaded_by: r.uploaded_by.clone(),
            uploaded: time::format_utc(r.uploaded_unix_ms),
        })
        .collect();
    let rollouts = list
        .rollouts
        .iter()
        .map(|r| RolloutRow {
            group: r.group.clone(),
            release: format!("{} {}", r.name, r.version),
            percent: r.percent,
            previous: r.previous.as_ref().map(|(n, v)| format!("{n} {v}")),
            by: r.by.clone(),
            when: time::format_utc(r.unix_ms),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &ModelsPage {
            nav: Some(nav),
            releases,
            rollouts,
        },
    ))
}

/// A sample image, for a logged-in operator or a script with an operator token (the
/// embedding export's `sample_url` on the embedded backend points here).
async fn image(tail: warp::path::Tail, ctx: Ctx, authorization: Option<String>) -> Page {
    match authorization {
        Some(auth) => {
            let sphere = ctx.sphere.clone();
            run(move || sphere.authorize_operator(Some(&auth)))
                .await
                .map_err(|e| domain_error(None, e, "/ui/login"))?;
        }
        None => {
            require_401(&ctx).await?;
        }
    }
    let key = tail.as_str().to_owned();
    let sphere = ctx.sphere.clone();
    let k = key.clone();
    let bytes = run(move || sphere.sample_image(&k))
        .await
        .map_err(|e| domain_error(None, e, "/ui/data"))?;
    let Some(bytes) = bytes else {
        return Err(error_page(
            None,
            StatusCode::NOT_FOUND,
            "no such image",
            None,
            "/ui/data",
        ));
    };
    let content_type = if key.to_ascii_lowercase().ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    let mut r = Response::new(bytes.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(r)
}

fn change_event(change: &Change) -> warp::sse::Event {
    let name = match change {
        Change::Package { .. } => "package",
        Change::Decided { .. } => "decided",
        Change::FeedbackResults { .. } => "feedback-results",
    };
    let data = serde_json::to_string(change).unwrap_or_else(|_| "{}".into());
    warp::sse::Event::default().event(name).data(data)
}

async fn live(ctx: Ctx) -> Page {
    require_401(&ctx).await?;
    let changes = ctx.sphere.subscribe();
    let closed = ctx.sphere.live_closed();
    let stream =
        futures_util::stream::unfold((changes, closed), |(mut changes, mut closed)| async move {
            if *closed.borrow() {
                return None;
            }
            let event = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => change_event(&change),
                    // Too far behind: the page reloads everything instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        warp::sse::Event::default().event("lagged").data("{}")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = closed.wait_for(|c| *c) => return None,
            };
            Some((Ok::<_, Infallible>(event), (changes, closed)))
        });
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Both arms of a handler's result are responses.
fn done(page: Page) -> Response {
    page.unwrap_or_else(|r| r)
}

/// The dashboard's routes (`/` redirects to it). Paths outside `/ui` are not matched, so the
/// API's routes and JSON errors are unaffected.
pub fn routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let ctx = warp::any()
        .map(move || sphere.clone())
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and(warp::header::optional::<String>("sec-fetch-site"))
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(warp::ext::optional::<crate::tls::TlsConnection>())
        .map(
            |sphere, session, origin, host, fetch_site, proto: Option<String>, tls: Option<_>| {
                Ctx {
                    sphere,
                    session,
                    origin,
                    host,
                    fetch_site,
                    // Behind a TLS proxy, or over sphere-lite's own TLS.
                    https: proto.is_some_and(|p| p.eq_ignore_ascii_case("https")) || tls.is_some(),
                }
            },
        );
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let form = warp::body::content_length_limit(MAX_FORM_BYTES).and(warp::body::bytes());

    let root = warp::path::end()
        .and(warp::get())
        .map(|| redirect("/ui/fleet"));
    let ui_root = warp::path!("ui")
        .and(warp::get())
        .map(|| redirect("/ui/fleet"));
    let css = warp::path!("ui" / "static" / "app.css")
        .and(warp::get())
        .map(|| asset(APP_CSS, "text/css; charset=utf-8"));
    let js = warp::path!("ui" / "static" / "app.js")
        .and(warp::get())
        .map(|| asset(APP_JS, "text/javascript; charset=utf-8"));
    let login_get = warp::path!("ui" / "login")
        .and(warp::get())
        .and(ctx.clone())
        .then(|ctx| async move { done(login_form(ctx).await) });
    let login_post = warp::path!("ui" / "login")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(login(ctx, body).await) });
    let logout_post = warp::path!("ui" / "logout")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(logout(ctx, body).await) });
    let fleet_get = warp::path!("ui" / "fleet")
        .and(warp::get())
        .and(ctx.clone())
        .and(query)
        .then(|ctx, raw| async move { done(fleet(ctx, raw).await) });
    let device_get = warp::path!("ui" / "devices" / String)
        .and(warp::get())
        .and(ctx.clone())
        .and(query)
        .then(|id, ctx, raw| async move { done(device(id, ctx, raw).await) });
    let device_edit = warp::path!("ui" / "devices" / String / "edit")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|id, ctx, body| async move { done(edit_device(id, ctx, body).await) });
    let drift_get = warp::path!("ui" / "drift")
        .and(warp::get())
        .and(ctx.clone())
        .and(query)
        .then(|ctx, raw| async move { done(drift(ctx, raw).await) });
    let decide_one = warp::path!("ui" / "drift" / u64 / "decide")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|id, ctx, body| async move { done(decide(Some(id), ctx, body).await) });
    let decide_bulk = warp::path!("ui" / "drift" / "bulk")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(decide(None, ctx, body).await) });
    let data_get = datahub::routes(ctx.clone().boxed(), query.boxed());
    let models_get = warp::path!("ui" / "models")
        .and(warp::get())
        .and(ctx.clone())
        .then(|ctx| async move { done(models(ctx).await) });
    let config_get = warp::path!("ui" / "config")
        .and(warp::get())
        .and(ctx.clone())
        .then(|ctx| async move { done(config_page::page(ctx).await) });
    let config_post = warp::path!("ui" / "config")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(config_page::save(ctx, body).await) });
    let image_get = warp::path("ui")
        .and(warp::path("img"))
        .and(warp::get())
        .and(warp::path::tail())
        .and(ctx.clone())
        .and(warp::header::optional::<String>("authorization"))
        .then(|tail, ctx, auth| async move { done(image(tail, ctx, auth).await) });
    let live_get = warp::path!("ui" / "events")
        .and(warp::get())
        .and(ctx)
        .then(|ctx| async move { done(live(ctx).await) });
    let unknown = warp::path("ui").map(|| {
        error_page(
            None,
            StatusCode::NOT_FOUND,
            "no such page",
            None,
            "/ui/fleet",
        )
    });

    // Boxed in groups: one long chain of `or`s makes a type so deep that type-checking it
    // took the compiler minutes per added route.
    let pages = fleet_get
        .or(device_get)
        .unify()
        .or(device_edit)
        .unify()
        .or(drift_get)
        .unify()
        .or(decide_one)
        .unify()
        .or(decide_bulk)
        .unify()
        .boxed();
    let more_pages = data_get
        .or(models_get)
        .unify()
        .or(config_get)
        .unify()
        .or(config_post)
        .unify()
        .or(image_get)
        .unify()
        .or(live_get)
        .unify()
        .boxed();
    root.or(ui_root)
        .unify()
        .or(css)
        .unify()
        .or(js)
        .unify()
        .or(login_get)
        .unify()
        .or(login_post)
        .unify()
        .or(logout_post)
        .unify()
        .or(pages)
        .unify()
        .or(more_pages)
        .unify()
        .or(unknown)
        .unify()
        .map(secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_filters_parse_and_round_trip() {
        let f = DriftFilter::parse("").unwrap();
        assert_eq!(f, DriftFilter::default());
        let f = DriftFilter::parse(
            "device=dev-01&detector=a%26b+%3Cx%3E&status=any&since=2025-11-26T09:00&until=&after=7",
        )
        .unwrap();
        assert_eq!(f.detector.as_deref(), Some("a&b <x>"));
        assert_eq!(f.status, None);
        assert_eq!(f.since, Some(1_764_147_600_000));
        assert_eq!(f.until, None);
        assert_eq!(DriftFilter::parse(&f.query(f.after)).unwrap(), f);
        for bad in [
            "status=open",
            "since=yesterday",
            "after=-1",
            "device=../x",
            "nope=1",
            "status=any&status=pending",
        ] {
            assert!(DriftFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_depend_on_the_session() {
        let a = csrf_token("slo_a");
        assert_eq!(a, csrf_token("slo_a"));
        assert_ne!(a, csrf_token("slo_b"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn origins_are_checked_when_present() {
        let host = Some("127.0.0.1:8470");
        assert!(same_origin_parts(None, host, None));
        assert!(same_origin_parts(
            Some("http://127.0.0.1:8470"),
            host,
            Some("same-origin")
        ));
        assert!(same_origin_parts(
            Some("https://127.0.0.1:8470"),
            host,
            None
        ));
        assert!(!same_origin_parts(Some("http://evil.example"), host, None));
        assert!(!same_origin_parts(Some("null"), host, None));
        assert!(!same_origin_parts(
            Some("http://127.0.0.1:8470"),
            None,
            None
        ));
        assert!(!same_origin_parts(None, host, Some("cross-site")));
        assert!(!same_origin_parts(None, host, Some("same-site")));
    }
}
