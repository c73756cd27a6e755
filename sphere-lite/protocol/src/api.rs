//! JSON bodies of the v2 API.
//!
//! Requests are parsed with `deny_unknown_fields`: a misspelt field is an error the client sees,
//! not a silently ignored setting. Responses tolerate unknown fields so a newer server can add
//! fields without breaking older devices.

use serde::{Deserialize, Serialize};

/// `GET /api/v2/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatusResponse {
    /// Service name, e.g. `"sphere-lite"`.
    pub service: String,
    /// Service version (the crate version).
    pub version: String,
    /// API version, [`crate::API_VERSION`].
    pub api: String,
}

/// `POST /api/v2/devices/enroll` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The fleet's enrollment key, configured on the server by an operator.
    pub enrollment_key: String,
    /// Optional human-readable device name.
    #[serde(default)]
    pub name: Option<String>,
    /// Optional hardware description (e.g. `"Raspberry Pi Zero 2 W"`).
    #[serde(default)]
    pub hardware: Option<String>,
}

/// `POST /api/v2/devices/enroll` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnrollResponse {
    /// The id the server assigned (passes [`crate::ids::valid_device_id`]).
    pub device_id: String,
    /// The device's bearer token; shown once, the server keeps only a hash.
    pub token: String,
}

/// What the server did with an uploaded package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UploadOutcome {
    /// First time this package id was seen; it is stored.
    Accepted,
    /// The package id was already stored; nothing changed. The device treats this as success,
    /// which makes uploads idempotent (a retry after a lost response is harmless).
    Duplicate,
}

/// `POST /api/v2/devices/{id}/packages` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UploadResponse {
    /// The package id from the package's manifest.
    pub package_id: String,
    /// Stored now or already stored before.
    pub outcome: UploadOutcome,
}

/// Body of every 4xx/5xx answer sphere-lite gives.
///
/// # The origin contract
///
/// Every error sphere-lite itself answers carries `"origin": "sphere-lite"`
/// ([`ERROR_ORIGIN`]). A device treats a refusal as final (a package moved aside or dropped,
/// the token taken as revoked) **only** when the body parses as this type with that origin
/// ([`ErrorResponse::is_from_sphere_lite`], [`is_sphere_lite_error`]). Anything else with an
/// error status (an HTML `413 Request Entity Too Large` from a reverse proxy whose body limit
/// is below the device's packages, a bare 400, a 502 or 504 from a gateway, a captive portal)
/// was not sphere-lite's decision about these bytes: the device keeps what it sent, backs off,
/// retries and shows who answered. A body marker rather than a status code, because proxies
/// answer with the same codes; a body field rather than a response header, because the
/// device reads the body anyway (bounded), and a proxy that replaces an upstream error page
/// (nginx `proxy_intercept_errors`) drops the body but may keep upstream headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorResponse {
    /// What is wrong, in one sentence.
    pub error: String,
    /// What the caller can do about it, when the server knows.
    #[serde(default)]
    pub fix: Option<String>,
    /// Who answered: [`ERROR_ORIGIN`] on every error sphere-lite gives (see the origin
    /// contract above). Optional when parsing, so a body without it parses and is *not*
    /// sphere-lite's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The `origin` of every error sphere-lite answers (see [`ErrorResponse`]).
pub const ERROR_ORIGIN: &str = "sphere-lite";

impl ErrorResponse {
    /// An error as sphere-lite answers it: `error`, an optional `fix`, and the
    /// [`ERROR_ORIGIN`] marker.
    pub fn new(error: impl Into<String>, fix: Option<String>) -> Self {
        ErrorResponse {
            error: error.into(),
            fix,
            origin: Some(ERROR_ORIGIN.to_owned()),
        }
    }

    /// Whether sphere-lite gave this error (its `origin` is [`ERROR_ORIGIN`]).
    pub fn is_from_sphere_lite(&self) -> bool {
        self.origin.as_deref() == Some(ERROR_ORIGIN)
    }
}

/// Whether an answer body is an error sphere-lite itself gave: it parses as an
/// [`ErrorResponse`] (or a body that extends it, like [`DecisionConflict`]) whose `origin` is
/// [`ERROR_ORIGIN`]. Cheap: one JSON parse of a body the caller already holds (bounded).
pub fn is_sphere_lite_error(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorResponse>(body).is_ok_and(|e| e.is_from_sphere_lite())
}

/// The metric (in a device's `metrics.json`, flattened from its sync status) holding the HTTP
/// status of the last answer to the device's sync requests that did **not** come from
/// sphere-lite (see [`ErrorResponse`]'s origin contract), or 0 when the device's last sync
/// round went through. The dashboard shows a non-zero latest value as an alert: something
/// between the device and the server (a proxy) answers in its place.
pub const FOREIGN_ANSWER_METRIC: &str = "sync.foreign_answer_status";

// ---------------------------------------------------------------------------------------------
// Drift Hub and feedback.
//
// A device reports drift events in a package member of kind `drift-events` (a JSON array of
// [`DriftEventReport`]); the server keeps each as a pending event; an operator validates or
// rejects it; the verdict becomes [`FeedbackItem`]s the device pulls from its feedback queue and
// acknowledges. Every string a device sends is stored and returned as data, never as markup:
// whoever renders it (the dashboard) must escape it.
// ---------------------------------------------------------------------------------------------

/// Most events in one `drift-events` member.
pub const MAX_DRIFT_EVENTS_PER_MEMBER: usize = 1000;
/// Most sample names one drift event may list.
pub const MAX_SAMPLES_PER_EVENT: usize = 16;
/// Longest detector name in bytes (the runtime's names are short kebab-case words).
pub const MAX_DETECTOR_BYTES: usize = 64;
/// Longest label an operator may give, in bytes (the runtime's KNN label bound).
pub const MAX_LABEL_BYTES: usize = 128;
/// Longest operator note in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Most items on one feedback page.
pub const MAX_FEEDBACK_PAGE: usize = 100;
/// Most events on one drift-event listing page (the default is [`DEFAULT_DRIFT_EVENT_PAGE`]).
pub const MAX_DRIFT_EVENT_PAGE: usize = 500;
/// Events on a listing page when the request gives no `limit`.
pub const DEFAULT_DRIFT_EVENT_PAGE: usize = 50;

/// One drift event as a device reports it, in a package member of kind `drift-events`
/// (the member is a JSON array of these).
///
/// Built from the runtime's event log: `RuntimeEvent { unix_ms, kind: EventKind::Drift {
/// incident, event } }` with `event_seq` = the entry's number in the log (what
/// `tinylcm status` lists and what a `[[drift]] event = N` verdict names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DriftEventReport {
    /// The event's number in the device's event log; unique per device and [`Self::epoch`],
    /// the server's idempotency key with them (re-sent events are stored once).
    pub event_seq: u64,
    /// The life of the device's state database the event belongs to
    /// ([`crate::ids::valid_epoch`]): a random value made with the database, so events
    /// numbered from 1 again after the database was recreated are new events, not
    /// duplicates. Absent in reports of devices older than this field (their events are keyed
    /// by device and `event_seq` alone, as before). A server older than this field refuses
    /// the whole member: upgrade sphere-lite before the devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The incident the event belongs to.
    pub incident: u64,
    /// The detector's name, e.g. `"page-hinkley-distance"` (1..=[`MAX_DETECTOR_BYTES`] bytes,
    /// no control characters).
    pub detector: String,
    /// The detector's statistic at the onset.
    pub statistic: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Size of the change (detector-specific unit).
    pub magnitude: f64,
    /// The frame that triggered it.
    pub sample_id: u64,
    /// When it happened on the device (Unix ms).
    pub unix_ms: u64,
    /// Names of `sample` members of the same package that belong to this event (e.g. JPEG
    /// thumbnails; at most [`MAX_SAMPLES_PER_EVENT`]). A name of the form `<...>/<id>.jpg` with
    /// a 20-digit `id` (the runtime's quarantine thumbnail name) stands for quarantine entry `id`.
    #[serde(default)]
    pub samples: Vec<String>,
    /// The embedding of the sample that triggered it, for retraining exports (optional;
    /// 1..=[`crate::datahub::MAX_EMBEDDING_DIMS`] finite numbers). Kept in the server's blob
    /// store, not in its event records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// The class the device predicted for the frame that triggered it (the model's, or the
    /// KNN's for a model without a head; 1..=[`MAX_LABEL_BYTES`] printable bytes). Absent in
    /// reports of devices older than this field. A server older than it refuses the whole
    /// member: upgrade sphere-lite before the devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<String>,
    /// The best classes for that frame with their scores, best first (at most
    /// [`crate::learning::MAX_TOP_K`]; scores in 0..=1). Empty for devices older than this
    /// field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_k: Vec<crate::learning::ClassScore>,
}

/// Where a drift event is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DriftEventStatus {
    /// Reported, not reviewed yet.
    Pending,
    /// An operator confirmed the drift (optionally with a label).
    Validated,
    /// An operator judged it a false alarm.
    Rejected,
}

impl DriftEventStatus {
    /// The wire name, e.g. `"pending"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftEventStatus::Pending => "pending",
            DriftEventStatus::Validated => "validated",
            DriftEventStatus::Rejected => "rejected",
        }
    }
}

/// One drift event as the server keeps it and shows it to operators
/// (`GET /api/v2/drift-events[/{id}]`).
///
/// `detector`, `label` and `note` are stored as given: render them as text (escape them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DriftEventView {
    /// Server-assigned id, increasing in arrival order.
    pub id: u64,
    /// The reporting device.
    pub device_id: String,
    /// The package it arrived in.
    pub package_id: String,
    /// The device's event log number ([`DriftEventReport::event_seq`]).
    pub event_seq: u64,
    /// The life of the device's state database ([`DriftEventReport::epoch`]); absent for
    /// events of devices older than that field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The device's incident number.
    pub incident: u64,
    /// The detector's name.
    pub detector: String,
    /// The detector's statistic at the onset.
    pub statistic: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Size of the change.
    pub magnitude: f64,
    /// The frame that triggered it.
    pub sample_id: u64,
    /// When it happened on the device (Unix ms).
    pub unix_ms: u64,
    /// When the server stored it (Unix ms).
    pub received_unix_ms: u64,
    /// Blob keys of its samples (`devices/<device>/packages/<package>/<name>`).
    pub samples: Vec<String>,
    /// Review status.
    pub status: DriftEventStatus,
    /// The operator's label, if validated with one.
    #[serde(default)]
    pub label: Option<String>,
    /// The operator's note.
    #[serde(default)]
    pub note: Option<String>,
    /// The operator who decided (the name of their token).
    #[serde(default)]
    pub decided_by: Option<String>,
    /// When it was decided (Unix ms).
    #[serde(default)]
    pub decided_unix_ms: Option<u64>,
    /// The feedback items the decision queued for the device, in order, and how far each got
    /// (queued → delivered → applied, or refused with the device's reason). Empty while
    /// pending, and for decisions of servers older than this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<FeedbackItemState>,
    /// The class the device predicted for the triggering frame
    /// ([`DriftEventReport::predicted`]); absent for events of older devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<String>,
    /// The best classes for that frame with their scores ([`DriftEventReport::top_k`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_k: Vec<crate::learning::ClassScore>,
}

/// How far a feedback item got on its way to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum FeedbackProgress {
    /// Queued; the device has not acknowledged it yet.
    Queued,
    /// The device pulled and acknowledged it (it is durably in the device's inbox) and has not
    /// said yet what became of it (or is older than the results route).
    Delivered,
    /// The device applied it.
    Applied,
    /// The device could not apply it: see the reason.
    Refused,
}

impl FeedbackProgress {
    /// The wire name, e.g. `"delivered"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackProgress::Queued => "queued",
            FeedbackProgress::Delivered => "delivered",
            FeedbackProgress::Applied => "applied",
            FeedbackProgress::Refused => "refused",
        }
    }
}

/// One feedback item of a decision, and how far it got ([`DriftEventView::feedback`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeedbackItemState {
    /// The item's id in its device's feedback queue.
    pub id: u64,
    /// What it tells the device.
    pub verdict: FeedbackVerdict,
    /// How far it got.
    pub progress: FeedbackProgress,
    /// The device's words: why it refused the item, or how it applied it (e.g. through the
    /// features the drift event carried, the sample having left its quarantine). Device text:
    /// render it escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the device reported the result (its clock, Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_unix_ms: Option<u64>,
}

/// `GET /api/v2/drift-events` response: one page, ordered by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DriftEventList {
    /// The events of this page.
    pub events: Vec<DriftEventView>,
    /// Pass as `after` for the next page; `None` when this was the last page.
    #[serde(default)]
    pub next_after: Option<u64>,
}

/// Query of `GET /api/v2/drift-events` (all optional; filters combine with "and").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DriftEventQuery {
    /// Only this device's events.
    #[serde(default)]
    pub device: Option<String>,
    /// Only this detector's events.
    #[serde(default)]
    pub detector: Option<String>,
    /// Only events in this status.
    #[serde(default)]
    pub status: Option<DriftEventStatus>,
    /// Only events that happened at or after this time (device clock, Unix ms).
    #[serde(default)]
    pub since: Option<u64>,
    /// Only events that happened before this time (device clock, Unix ms).
    #[serde(default)]
    pub until: Option<u64>,
    /// Cursor: only events with a larger id (the previous page's `next_after`).
    #[serde(default)]
    pub after: Option<u64>,
    /// Page size, 1..=[`MAX_DRIFT_EVENT_PAGE`] (default [`DEFAULT_DRIFT_EVENT_PAGE`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `POST /api/v2/drift-events/{id}/validate` request (an empty body means no label, no note).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The true class of the event's samples (1..=[`MAX_LABEL_BYTES`] bytes, no control
    /// characters).
    #[serde(default)]
    pub label: Option<String>,
    /// A note for other operators (at most [`MAX_NOTE_BYTES`] bytes).
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /api/v2/drift-events/{id}/reject` request (an empty body means no note).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why it is a false alarm (at most [`MAX_NOTE_BYTES`] bytes).
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of the 409 a second validate/reject of a decided event gets: an [`ErrorResponse`]
/// (same `error` / `fix` fields, so it parses as one) plus the event as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DecisionConflict {
    /// What is wrong.
    pub error: String,
    /// What to do.
    #[serde(default)]
    pub fix: Option<String>,
    /// [`ERROR_ORIGIN`], as on every sphere-lite error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The event's current state.
    pub current: DriftEventView,
}

/// A human verdict on drift, as the device's feedback file writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DriftVerdict {
    /// Nothing changed that matters (the device raises the detector's threshold).
    FalseAlarm,
    /// The drift was real.
    Confirmed,
}

/// What one feedback item tells the device. Each variant is one entry of the device's
/// feedback file ([`crate::feedback_file::FeedbackFile`]), field for field:
///
/// * `Drift { incident, event, verdict }` → `[[drift]] incident = … | event = …, verdict = …`
///   (`event` is the device's event log number, [`DriftEventReport::event_seq`]; exactly one of
///   `incident` / `event` is set);
/// * `Sample { id, label, reject }` → `[[sample]] id = …, label = … | reject = true`
///   (`id` is a quarantine entry id; exactly one of `label` / `reject`);
/// * `Class { from, to }` → `[[class]] from = …, to = …`.
///
/// JSON: internally tagged by `type` (`"drift"`, `"sample"`, `"class"`, `"config"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FeedbackVerdict {
    /// A verdict on a drift event or a whole incident.
    Drift {
        /// Every event of this incident.
        #[serde(default)]
        incident: Option<u64>,
        /// This event of the device's log.
        #[serde(default)]
        event: Option<u64>,
        /// The verdict.
        verdict: DriftVerdict,
    },
    /// A verdict on a quarantined sample.
    Sample {
        /// The quarantine entry id.
        id: u64,
        /// Its true class.
        #[serde(default)]
        label: Option<String>,
        /// Not useful: reject it.
        #[serde(default)]
        reject: bool,
    },
    /// A class renamed (every sample of `from` becomes `to`).
    Class {
        /// The class as the device names it now.
        from: String,
        /// Its true name.
        to: String,
    },
    /// The remote configuration the device should run from now on: the whole effective
    /// fragment (it replaces any earlier one; empty = back to the local config file), see
    /// [`crate::remote_config`]. Not part of the feedback file: the runtime applies it to its
    /// configuration.
    Config {
        /// [`crate::remote_config::Effective::revision`] of `toml`.
        revision: String,
        /// The fragment (sections of [`crate::remote_config::REMOTE_SECTIONS`] only).
        toml: String,
    },
}

/// One item of a device's feedback queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeedbackItem {
    /// Server-assigned, increasing per device (1, 2, …); acknowledge with it.
    pub id: u64,
    /// When the server queued it (Unix ms).
    pub created_unix_ms: u64,
    /// What it says.
    pub verdict: FeedbackVerdict,
}

/// `GET /api/v2/devices/{id}/feedback?after=N` response: unacknowledged items with an id above
/// `after`, oldest first, at most [`MAX_FEEDBACK_PAGE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeedbackPage {
    /// The items.
    pub items: Vec<FeedbackItem>,
    /// The last item's id (or `after` when empty): the next request's `after`.
    pub next_after: u64,
}

/// `POST /api/v2/devices/{id}/feedback/ack` request: every item with id ≤ `up_to` has been
/// applied (durably) and is never delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Highest applied item id.
    pub up_to: u64,
}

/// `POST /api/v2/devices/{id}/feedback/ack` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AckResponse {
    /// Everything up to this id is acknowledged (an `up_to` beyond the last queued item is
    /// clamped to it, so items queued later are not acknowledged in advance).
    pub acknowledged_up_to: u64,
}

// A device says what became of each item it applied on a route of its own, `POST`
// [`crate::paths::feedback_results`] with [`FeedbackResults`]. Why not a field of the ack: the
// ack comes when the items are durably in the device's inbox, before they are applied (on the
// inference thread, seconds later, or after a restart), and [`AckRequest`] refuses unknown
// fields, so older servers would refuse every ack that carried results. An older server answers
// the route with 404; the device then drops its results (logged) and carries on.

/// What the device did with one feedback item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum FeedbackOutcome {
    /// Applied.
    Applied,
    /// Not applied, for the reason given.
    Refused,
}

/// Longest reason a device gives for a result, in bytes (the device cuts longer ones at a
/// character boundary; the server refuses them).
pub const MAX_RESULT_REASON_BYTES: usize = 256;
/// Most results in one [`FeedbackResults`] body (so a body stays far below the server's JSON
/// body limit).
pub const MAX_RESULTS_PER_REPORT: usize = 32;

/// The result of one feedback item on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FeedbackResult {
    /// The feedback item ([`FeedbackItem::id`]).
    pub id: u64,
    /// Applied or refused.
    pub outcome: FeedbackOutcome,
    /// Why it was refused, or how it was applied (at most [`MAX_RESULT_REASON_BYTES`], no
    /// control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the device applied or refused it (its clock, Unix ms).
    pub unix_ms: u64,
}

impl FeedbackResult {
    /// A result with `reason` cut to [`MAX_RESULT_REASON_BYTES`] at a character boundary and
    /// control characters replaced by spaces.
    pub fn new(id: u64, outcome: FeedbackOutcome, reason: Option<&str>, unix_ms: u64) -> Self {
        let reason = reason.map(|r| {
            let clean: String = r
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let mut end = clean.len().min(MAX_RESULT_REASON_BYTES);
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            clean[..end].to_owned()
        });
        FeedbackResult {
            id,
            outcome,
            reason,
            unix_ms,
        }
    }
}

/// `POST /api/v2/devices/{id}/feedback/results` body (device token): what became of feedback
/// items the device acknowledged earlier. Idempotent: the first result given for an item is
/// kept, a repeat changes nothing (the device repeats a report until it is answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FeedbackResults {
    /// 1..=[`MAX_RESULTS_PER_REPORT`] results.
    pub results: Vec<FeedbackResult>,
}

/// `POST /api/v2/devices/{id}/feedback/results` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeedbackResultsAnswer {
    /// Results recorded now (a repeat, or an item the server never queued, is not counted).
    pub recorded: usize,
}

// ---------------------------------------------------------------------------------------------
// Remote configuration: an operator sets a TOML fragment for the fleet, a group or a device;
// each device concerned gets its new effective configuration as a feedback item.
// ---------------------------------------------------------------------------------------------

/// `PUT /api/v2/config/{scope}` and `PUT /api/v2/devices/{id}/config` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// The fragment ([`crate::remote_config`]); empty clears this layer.
    pub toml: String,
}

/// One layer of configuration as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConfigLayer {
    /// `"all"`, a group name, or `"device"`.
    pub scope: String,
    /// The fragment (empty: cleared).
    pub toml: String,
    /// Operator who set it.
    pub by: String,
    /// When (Unix ms).
    pub unix_ms: u64,
}

/// The configuration delivered to a device last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConfigDelivery {
    /// Revision of the effective configuration delivered.
    pub revision: String,
    /// The feedback item that carries it.
    pub feedback_id: u64,
    /// When it was queued (Unix ms).
    pub unix_ms: u64,
}

/// `GET`/`PUT /api/v2/devices/{id}/config` answer: a device's configuration and whether it has
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeviceConfigState {
    /// The device.
    pub device_id: String,
    /// The layers that apply to it, fleet-wide first.
    pub layers: Vec<ConfigLayer>,
    /// Their merge: what the device should run.
    pub effective_toml: String,
    /// Its revision.
    pub revision: String,
    /// The last delivery, if any.
    pub delivered: Option<ConfigDelivery>,
    /// The device acknowledged the last delivery, and it is the effective revision.
    pub acknowledged: bool,
    /// The device refused the effective revision, or refused one after the last delivery
    /// (e.g. a fragment an older server sent), and runs without it: which and why. Absent
    /// when it did not, or a later delivery superseded the refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<ConfigRefused>,
}

// A device reports a remote configuration it will not run (refused on receipt, or its
// generation failed to start or run with it) on a route of its own, `POST`
// [`crate::paths::config_refusal`] with a [`ConfigRefusal`]; the server answers with the
// [`ConfigRefused`] it keeps. Why not a field of the feedback ack: a refusal at generation
// time comes after the item was acknowledged (there may be nothing left to ack), and
// [`AckRequest`] refuses unknown fields, so older servers would refuse every ack that carried
// it; an older server answers this route with 404, and the device only logs that.

/// Longest refusal reason a device sends, in bytes (the device cuts longer ones at a character
/// boundary; the server refuses them). Bounded so the server keeps it with the device's
/// settings (one MLflow tag).
pub const MAX_REFUSAL_REASON_BYTES: usize = 512;

/// `POST /api/v2/devices/{id}/config/refusal` body (device token): the device will not run the
/// remote configuration `revision` and runs its local file (or the fragment it ran before).
/// Idempotent: the device repeats it until it is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigRefusal {
    /// [`crate::remote_config::Effective::revision`] of the refused fragment.
    pub revision: String,
    /// Why, as the device's log says it (at most [`MAX_REFUSAL_REASON_BYTES`]).
    pub reason: String,
}

impl ConfigRefusal {
    /// A refusal of `revision` for `reason`, cut to [`MAX_REFUSAL_REASON_BYTES`] at a character
    /// boundary.
    pub fn new(revision: &str, reason: &str) -> ConfigRefusal {
        let mut end = reason.len().min(MAX_REFUSAL_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        ConfigRefusal {
            revision: revision.to_owned(),
            reason: reason[..end].to_owned(),
        }
    }
}

/// A device's refusal as the server keeps it (per device; a later refusal replaces it) and
/// answers it: that revision is never delivered to that device again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConfigRefused {
    /// The refused revision.
    pub revision: String,
    /// Why.
    pub reason: String,
    /// When the server heard of it (Unix ms).
    pub unix_ms: u64,
}

/// `PUT /api/v2/config/{scope}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScopeConfigResult {
    /// The layer as stored.
    pub layer: ConfigLayer,
    /// Devices that were sent a new effective configuration.
    pub devices_updated: usize,
}

// ---------------------------------------------------------------------------------------------
// Model releases (OTA): an operator publishes a signed release and assigns it to a device group
// (all of it, or a canary share); each device polls which release it should run and downloads
// the file, then verifies the signature itself before installing.
// ---------------------------------------------------------------------------------------------

/// `GET /api/v2/devices/{id}/model` answer: the release this device should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ModelAssignment {
    /// Release name.
    pub name: String,
    /// Release version.
    pub version: String,
    /// Model file size in bytes.
    pub size: u64,
    /// Model file SHA-256 (hex).
    pub sha256: String,
    /// The signed release: verify it with the trusted release keys before installing.
    pub release: crate::release::SignedRelease,
    /// Where to download the file: an absolute presigned URL (no token needed, expires), or a
    /// server path (send the device token; `Range: bytes=N-` resumes).
    pub download_url: String,
}

/// `POST /api/v2/models/{name}/{version}/rollout` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// A device group, or `"all"` (the default): devices without a group rollout of their own.
    #[serde(default)]
    pub group: Option<String>,
    /// Share of the group that gets the release, 1..=100 (default 100); the others keep the
    /// group's previous full release.
    #[serde(default)]
    pub percent: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_kebab_case() {
        let r = UploadResponse {
            package_id: "p1".into(),
            outcome: UploadOutcome::Duplicate,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"package_id":"p1","outcome":"duplicate"}"#);
        assert_eq!(serde_json::from_str::<UploadResponse>(&json).unwrap(), r);
    }

    #[test]
    fn enroll_request_refuses_unknown_fields_and_allows_missing_options() {
        let ok: EnrollRequest = serde_json::from_str(r#"{"enrollment_key":"k"}"#).unwrap();
        assert_eq!(ok.name, None);
        assert!(
            serde_json::from_str::<EnrollRequest>(r#"{"enrollment_key":"k","nmae":"x"}"#).is_err()
        );
    }

    #[test]
    fn error_response_fix_is_optional() {
        let e: ErrorResponse = serde_json::from_str(r#"{"error":"bad"}"#).unwrap();
        assert_eq!(e.fix, None);
    }

    /// The origin contract: only a body marked `"origin": "sphere-lite"` is sphere-lite's
    /// error; a proxy's HTML page, a bare body, an unmarked or differently marked JSON error
    /// is not. Fails before this change: there was no marker, so a device could not tell
    /// sphere-lite's 413 from nginx's.
    #[test]
    fn only_a_marked_error_body_is_sphere_lites() {
        let ours = ErrorResponse::new("request body too large", Some("send less".into()));
        let json = serde_json::to_vec(&ours).unwrap();
        assert!(String::from_utf8_lossy(&json).contains(r#""origin":"sphere-lite""#));
        assert!(is_sphere_lite_error(&json));
        assert!(
            serde_json::from_slice::<ErrorResponse>(&json)
                .unwrap()
                .is_from_sphere_lite()
        );
        let nginx = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
            <body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n\
            <hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n";
        for body in [
            &nginx[..],
            b"",
            b"Bad Request",
            br#"{"error":"bad"}"#,
            br#"{"error":"bad","origin":"nginx"}"#,
            br#"{"origin":"sphere-lite"}"#,
            br#"["sphere-lite"]"#,
        ] {
            assert!(
                !is_sphere_lite_error(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn drift_event_reports_round_trip_and_refuse_bad_input() {
        let json = r#"[{"event_seq":7,"incident":2,"detector":"page-hinkley-distance",
            "statistic":3.5,"threshold":2.0,"magnitude":1.25,"sample_id":900,
            "unix_ms":1764147600000,"samples":["samples/00000000000000000012.jpg"]}]"#;
        let reports: Vec<DriftEventReport> = serde_json::from_str(json).unwrap();
        assert_eq!(reports[0].event_seq, 7);
        assert_eq!(reports[0].samples.len(), 1);
        let again: Vec<DriftEventReport> =
            serde_json::from_str(&serde_json::to_string(&reports).unwrap()).unwrap();
        assert_eq!(again, reports);
        // `samples` may be left out; unknown fields, wrong types and missing fields may not.
        let no_samples = r#"{"event_seq":1,"incident":1,"detector":"adwin","statistic":0,
            "threshold":0,"magnitude":0,"sample_id":0,"unix_ms":0}"#;
        assert!(
            serde_json::from_str::<DriftEventReport>(no_samples)
                .unwrap()
                .samples
                .is_empty()
        );
        for bad in [
            r#"{"event_seq":1}"#,
            r#"{"event_seq":-1,"incident":1,"detector":"a","statistic":0,"threshold":0,"magnitude":0,"sample_id":0,"unix_ms":0}"#,
            r#"{"event_seq":1,"incident":1,"detector":"a","statistic":"x","threshold":0,"magnitude":0,"sample_id":0,"unix_ms":0}"#,
            r#"{"event_seq":1,"incident":1,"detector":"a","statistic":0,"threshold":0,"magnitude":0,"sample_id":0,"unix_ms":0,"extra":1}"#,
            r#"{"event_seq":1,"incident":1,"detector":"a","statistic":1e999,"threshold":0,"magnitude":0,"sample_id":0,"unix_ms":0}"#,
        ] {
            assert!(
                serde_json::from_str::<DriftEventReport>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn feedback_items_are_tagged_and_map_to_the_device_file() {
        let items = vec![
            FeedbackItem {
                id: 1,
                created_unix_ms: 5,
                verdict: FeedbackVerdict::Drift {
                    incident: None,
                    event: Some(7),
                    verdict: DriftVerdict::FalseAlarm,
                },
            },
            FeedbackItem {
                id: 2,
                created_unix_ms: 5,
                verdict: FeedbackVerdict::Sample {
                    id: 12,
                    label: Some("cat".into()),
                    reject: false,
                },
            },
            FeedbackItem {
                id: 3,
                created_unix_ms: 6,
                verdict: FeedbackVerdict::Class {
                    from: "new-1".into(),
                    to: "empty".into(),
                },
            },
        ];
        let page = FeedbackPage {
            items,
            next_after: 3,
        };
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["items"][0]["verdict"]["type"], "drift");
        assert_eq!(json["items"][0]["verdict"]["verdict"], "false-alarm");
        assert_eq!(json["items"][1]["verdict"]["type"], "sample");
        assert_eq!(json["items"][2]["verdict"]["to"], "empty");
        assert_eq!(serde_json::from_value::<FeedbackPage>(json).unwrap(), page);
        for bad in [
            r#"{"type":"drift","event":1,"verdict":"maybe"}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"sample","label":"x"}"#,
            r#"{"type":"class","from":"a","to":"b","x":1}"#,
        ] {
            assert!(
                serde_json::from_str::<FeedbackVerdict>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn operator_and_ack_requests_refuse_unknown_fields() {
        let v: ValidateRequest = serde_json::from_str(r#"{"label":"cat"}"#).unwrap();
        assert_eq!(v.label.as_deref(), Some("cat"));
        assert_eq!(v.note, None);
        assert!(serde_json::from_str::<ValidateRequest>(r#"{"lable":"cat"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<RejectRequest>("{}").unwrap(),
            RejectRequest::default()
        );
        assert_eq!(
            serde_json::from_str::<AckRequest>(r#"{"up_to":4}"#).unwrap(),
            AckRequest { up_to: 4 }
        );
        assert!(serde_json::from_str::<AckRequest>(r#"{}"#).is_err());
        assert!(serde_json::from_str::<AckRequest>(r#"{"up_to":"4"}"#).is_err());
        let q: DriftEventQuery = serde_json::from_str(r#"{"status":"validated"}"#).unwrap();
        assert_eq!(q.status, Some(DriftEventStatus::Validated));
        assert!(serde_json::from_str::<DriftEventQuery>(r#"{"status":"done"}"#).is_err());
    }

    /// A view from a server without decision feedback parses (empty), and results refuse
    /// unknown fields and are cut and cleaned on the device.
    #[test]
    fn feedback_states_and_results_round_trip() {
        let state = FeedbackItemState {
            id: 4,
            verdict: FeedbackVerdict::Sample {
                id: 12,
                label: Some("star".into()),
                reject: false,
            },
            progress: FeedbackProgress::Refused,
            reason: Some("gone".into()),
            reported_unix_ms: Some(9),
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["progress"], "refused");
        assert_eq!(
            serde_json::from_value::<FeedbackItemState>(json).unwrap(),
            state
        );
        let r = FeedbackResult::new(
            3,
            FeedbackOutcome::Refused,
            Some(&format!("a\nb{}", "é".repeat(200))),
            5,
        );
        let reason = r.reason.as_deref().unwrap();
        assert!(reason.starts_with("a b") && reason.len() <= MAX_RESULT_REASON_BYTES);
        let body = FeedbackResults { results: vec![r] };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            serde_json::from_str::<FeedbackResults>(&text).unwrap(),
            body
        );
        assert!(
            serde_json::from_str::<FeedbackResults>(
                r#"{"results":[{"id":1,"outcome":"applied","unix_ms":1,"x":1}]}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<FeedbackResults>(
                r#"{"results":[{"id":1,"outcome":"maybe","unix_ms":1}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn a_decision_conflict_parses_as_an_error_response() {
        let view = DriftEventView {
            id: 1,
            device_id: "d".into(),
            package_id: "p".into(),
            event_seq: 3,
            epoch: None,
            incident: 1,
            detector: "adwin".into(),
            statistic: 1.0,
            threshold: 0.5,
            magnitude: 0.1,
            sample_id: 9,
            unix_ms: 10,
            received_unix_ms: 11,
            samples: vec![],
            status: DriftEventStatus::Rejected,
            label: None,
            note: Some("<b>x</b>".into()),
            decided_by: Some("alice".into()),
            decided_unix_ms: Some(12),
            feedback: vec![],
            predicted: None,
            top_k: Vec::new(),
        };
        let c = DecisionConflict {
            error: "already decided".into(),
            fix: None,
            origin: Some(ERROR_ORIGIN.into()),
            current: view,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<ErrorResponse>(&json).unwrap().error,
            "already decided"
        );
        assert_eq!(serde_json::from_str::<DecisionConflict>(&json).unwrap(), c);
        assert!(is_sphere_lite_error(json.as_bytes()));
    }

    #[test]
    fn a_refusal_reason_is_cut_at_a_character_boundary_and_older_states_parse() {
        let long = "é".repeat(MAX_REFUSAL_REASON_BYTES);
        let r = ConfigRefusal::new("00aa00aa00aa00aa", &long);
        assert!(r.reason.len() <= MAX_REFUSAL_REASON_BYTES);
        assert!(r.reason.len() >= MAX_REFUSAL_REASON_BYTES - 1);
        assert_eq!(ConfigRefusal::new("r", "short").reason, "short");
        assert!(
            serde_json::from_str::<ConfigRefusal>(r#"{"revision":"r","reason":"x","more":1}"#)
                .is_err()
        );
        // A state from a server that knows nothing of refusals.
        let state: DeviceConfigState = serde_json::from_str(
            r#"{"device_id":"d","layers":[],"effective_toml":"","revision":"r","delivered":null,"acknowledged":true}"#,
        )
        .unwrap();
        assert_eq!(state.refused, None);
    }
}
