//! The JSON shapes of the original TinySphere API, as its Python clients send and expect them
//! (`shared/reference/original-server.md` §3–4). Unknown fields are ignored, as the original
//! server did, so newer or older clients keep working.

use serde::{Deserialize, Serialize};

/// `GET /api/status`: the clients only check for a 200.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Always `"OK"`.
    pub status: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// What the original answered; kept for clients that log it.
    pub name: &'static str,
}

/// `POST /api/devices/register` body (only what is used; the rest is accepted and ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterRequest {
    /// The device id the client is configured with.
    pub device_id: String,
}

/// `POST /api/devices/register` answer.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterResponse {
    /// The device.
    pub device_id: String,
    /// `"success"`.
    pub status: &'static str,
    /// Always true: failures are HTTP errors here, never a 200 with `registered: false`.
    pub registered: bool,
    /// What happened.
    pub message: String,
}

/// The `metadata` part of `POST /api/packages/upload`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UploadMetadata {
    /// The sending device (must be the token's device).
    pub device_id: String,
    /// UUID of the package: the idempotency key.
    pub package_id: String,
    /// `metrics`, `drift_event`, `operational_logs`, `prediction_images`, `model`, ...
    #[serde(default)]
    pub package_type: String,
    /// MD5 of the archive, hex (verified when present).
    #[serde(default)]
    pub hash: Option<String>,
    /// When the client built it (Unix seconds, float).
    #[serde(default)]
    pub timestamp: Option<f64>,
}

/// `POST /api/packages/upload` answer: the client needs a 200 with a JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct UploadResponse {
    /// The package id.
    pub package_id: String,
    /// `"success"`.
    pub status: &'static str,
    /// What happened (first upload or a repeat).
    pub message: &'static str,
    /// Always true.
    pub uploaded: bool,
    /// Where the server keeps it: `<device>/<package>`.
    pub server_id: String,
}

/// One item of `GET /api/drift/validations/pending`.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The feedback item's id, as a string (acknowledge with it).
    pub validation_id: String,
    /// The device's drift event number the verdict is about, if it is about one.
    pub drift_event_id: Option<String>,
    /// The quarantine sample the verdict is about, if it is about one.
    pub drift_sample_id: Option<String>,
    /// Whether the drift (or sample) was judged real/useful.
    pub is_valid_drift: bool,
    /// The label the operator gave, if any.
    pub true_label: Option<String>,
    /// Always `"operator"`: the original's field, the name is in the Drift Hub's audit fields.
    pub validated_by: &'static str,
    /// When the server queued the verdict (ISO-8601 UTC).
    pub validated_at: String,
    /// Explains verdicts the original protocol has no field for (e.g. a class rename).
    pub notes: Option<String>,
    /// The device.
    pub device_id: String,
}

/// `POST /api/drift/validations/acknowledge` body.
#[derive(Debug, Clone, Deserialize)]
pub struct AcknowledgeRequest {
    /// Validation ids the client processed.
    pub validation_ids: Vec<String>,
}

/// One entry of the acknowledge answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AcknowledgeResult {
    /// The id as sent.
    pub validation_id: String,
    /// Whether it is acknowledged now (false: unknown id, or an earlier item is still
    /// unacknowledged — the queue is acknowledged in order).
    pub success: bool,
}

/// `POST /api/drift/validations/acknowledge` answer.
#[derive(Debug, Clone, Serialize)]
pub struct AcknowledgeResponse {
    /// One entry per id sent.
    pub results: Vec<AcknowledgeResult>,
}

/// One entry of `GET /api/samples/validation-results/{device_id}`.
#[derive(Debug, Clone, Serialize)]
pub struct SampleResult {
    /// The quarantine sample.
    pub sample_id: String,
    /// Its label.
    pub validated_label: String,
}

/// `GET /api/samples/validation-results/{device_id}` answer.
#[derive(Debug, Clone, Serialize)]
pub struct SampleResults {
    /// Labelled samples not yet acknowledged.
    pub results: Vec<SampleResult>,
}
