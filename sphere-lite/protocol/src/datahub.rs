//! Data Hub formats: what a device sends besides drift events so operators can see what it
//! predicts, what it logs, and what its drift samples look like to the model.
//!
//! Why: the server's Data Hub filters a gallery of prediction samples by device, class and
//! time, shows a device's operational logs, and exports drift-sample embeddings for
//! retraining. Each needs a wire format both sides agree on, with bounds the server enforces
//! on input it does not trust; those formats and bounds live here, next to the package format.
//!
//! ## Prediction samples (`FileKind::Prediction`)
//!
//! A device periodically sends a few camera frames per predicted class: the images as
//! `prediction` members (`.jpg`, `.jpeg` or `.png`), plus one `prediction` member whose file
//! name is [`PREDICTIONS_FILE`] (in any folder) holding a JSON list of [`PredictionSample`]:
//!
//! ```json
//! [ { "file": "predictions/0001.jpg", "class": "red-cube", "confidence": 0.93,
//!     "unix_ms": 1764147600000 } ]
//! ```
//!
//! `file` names a `prediction` image member of the same package; `class` passes
//! [`valid_class_name`]; `confidence` is in 0..=1; at most [`MAX_PREDICTIONS_PER_PACKAGE`]
//! samples per package and [`MAX_PREDICTIONS_FILE_BYTES`] per metadata file. A sample that
//! breaks a rule is skipped and recorded as a problem of its package; the package is kept.
//!
//! ## Operational logs (`FileKind::Logs`)
//!
//! JSON lines, one [`LogLine`] per line, sent incrementally (each package carries the lines
//! written since the previous one). Unknown fields are ignored; a line that does not parse is
//! shown as raw text. The server shows log files of at most [`MAX_LOG_FILE_BYTES`] (a larger
//! one is stored but not shown, and recorded as a package problem), each line cut to
//! [`MAX_LOG_LINE_BYTES`].
//!
//! ## Drift-sample embeddings
//!
//! A drift event may carry the embedding of the sample that triggered it
//! (`DriftEventReport::embedding`: 1..=[`MAX_EMBEDDING_DIMS`] finite numbers). The server keeps
//! it in the blob store, not in its tracking database, and exports it with the operator's label
//! as NDJSON [`EmbeddingExportLine`]s.

use serde::{Deserialize, Serialize};

use crate::api::DriftEventStatus;

/// File name (last path segment) of the prediction-sample metadata member.
pub const PREDICTIONS_FILE: &str = "predictions.json";
/// Most prediction samples one package may describe (across its metadata files).
pub const MAX_PREDICTIONS_PER_PACKAGE: usize = 256;
/// Largest prediction metadata file parsed, in bytes.
pub const MAX_PREDICTIONS_FILE_BYTES: usize = 256 * 1024;
/// Longest class name in bytes.
pub const MAX_CLASS_BYTES: usize = 64;
/// Most prediction samples on one listing page (default [`DEFAULT_PREDICTION_PAGE`]).
pub const MAX_PREDICTION_PAGE: usize = 500;
/// Prediction samples on a listing page when the request gives no `limit`.
pub const DEFAULT_PREDICTION_PAGE: usize = 50;

/// Largest log file the server shows, in bytes (larger ones are stored, not shown).
pub const MAX_LOG_FILE_BYTES: usize = 1024 * 1024;
/// Longest log line shown, in bytes (longer lines are cut).
pub const MAX_LOG_LINE_BYTES: usize = 2048;
/// Most log lines on one page (default [`DEFAULT_LOG_PAGE`]).
pub const MAX_LOG_PAGE: usize = 500;
/// Log lines on a page when the request gives no `limit`.
pub const DEFAULT_LOG_PAGE: usize = 100;
/// Longest text filter of the log viewer, in bytes.
pub const MAX_LOG_QUERY_BYTES: usize = 200;

/// Most numbers in one embedding.
pub const MAX_EMBEDDING_DIMS: usize = 4096;

/// Whether `s` can be a class name: 1..=[`MAX_CLASS_BYTES`] bytes of `[A-Za-z0-9._-]`, not
/// starting with `.`. Class names end up in filters, URLs and pages; this set needs no escaping
/// in any of them (pages still escape it).
pub fn valid_class_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLASS_BYTES
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `embedding` is acceptable: 1..=[`MAX_EMBEDDING_DIMS`] finite numbers.
pub fn valid_embedding(embedding: &[f32]) -> bool {
    !embedding.is_empty()
        && embedding.len() <= MAX_EMBEDDING_DIMS
        && embedding.iter().all(|v| v.is_finite())
}

/// One prediction sample as the device describes it in [`PREDICTIONS_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PredictionSample {
    /// Name of the `prediction` image member of the same package.
    pub file: String,
    /// The class the model predicted ([`valid_class_name`]).
    pub class: String,
    /// The model's confidence, 0..=1.
    pub confidence: f32,
    /// When the frame was taken (device clock, Unix ms).
    pub unix_ms: u64,
}

/// One prediction sample as the server indexes and lists it (`GET /api/v2/predictions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PredictionView {
    /// The device that sent it.
    pub device_id: String,
    /// The package it came in.
    pub package_id: String,
    /// Its member name in the package.
    pub file: String,
    /// The predicted class.
    pub class: String,
    /// The model's confidence.
    pub confidence: f32,
    /// When the frame was taken (device clock, Unix ms).
    pub unix_ms: u64,
    /// Blob key of the image (`devices/<device>/packages/<package>/<file>`).
    pub key: String,
}

impl PredictionView {
    /// The listing cursor that points at this sample (see [`PredictionQuery::after`]).
    pub fn cursor(&self) -> String {
        format!("{}:{}", self.unix_ms, self.key)
    }
}

/// Query of `GET /api/v2/predictions` (all optional; filters combine with "and").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PredictionQuery {
    /// Only this device's samples.
    #[serde(default)]
    pub device: Option<String>,
    /// Only samples of this class.
    #[serde(default)]
    pub class: Option<String>,
    /// Only samples taken at or after this time (device clock, Unix ms).
    #[serde(default)]
    pub since: Option<u64>,
    /// Only samples taken before this time (device clock, Unix ms).
    #[serde(default)]
    pub until: Option<u64>,
    /// Cursor: only samples after this one in the listing order (newest first); the previous
    /// page's `next_after` (`<unix_ms>:<key>`).
    #[serde(default)]
    pub after: Option<String>,
    /// Page size, 1..=[`MAX_PREDICTION_PAGE`] (default [`DEFAULT_PREDICTION_PAGE`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /api/v2/predictions` response: one page, newest first (device time, then key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PredictionList {
    /// The samples of this page.
    pub predictions: Vec<PredictionView>,
    /// Pass as `after` for the next page; `None` on the last page.
    #[serde(default)]
    pub next_after: Option<String>,
}

/// Severity of a log line, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is off.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for debugging.
    Debug,
    /// Even more detail.
    Trace,
}

impl LogLevel {
    /// Every level, most severe first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The wire name, e.g. `"warn"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The level called `name` (wire name).
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// One line of a `logs` member (JSON lines; unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogLine {
    /// When it was written (device clock, Unix ms).
    pub unix_ms: u64,
    /// Its severity.
    pub level: LogLevel,
    /// Where it came from (e.g. a module path).
    #[serde(default)]
    pub target: Option<String>,
    /// The text.
    pub message: String,
}

/// One log line as the server shows it (`GET /api/v2/devices/{id}/logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogLineView {
    /// The package it came in.
    pub package_id: String,
    /// The log member's name in the package.
    pub file: String,
    /// Its line number in that file (1-based).
    pub line: u64,
    /// When it was written, if the line parsed.
    #[serde(default)]
    pub unix_ms: Option<u64>,
    /// Its level, if the line parsed.
    #[serde(default)]
    pub level: Option<LogLevel>,
    /// Its target, if any.
    #[serde(default)]
    pub target: Option<String>,
    /// The message (the raw line when it did not parse), cut to [`MAX_LOG_LINE_BYTES`].
    pub message: String,
}

/// Query of `GET /api/v2/devices/{id}/logs` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only lines of this level or more severe (`warn` shows warnings and errors; lines that
    /// did not parse are left out).
    #[serde(default)]
    pub level: Option<LogLevel>,
    /// Only lines whose message or target contains this text (ASCII case-insensitive,
    /// at most [`MAX_LOG_QUERY_BYTES`]).
    #[serde(default)]
    pub q: Option<String>,
    /// Cursor: continue after this point (the previous page's `next_after`).
    #[serde(default)]
    pub after: Option<String>,
    /// Page size, 1..=[`MAX_LOG_PAGE`] (default [`DEFAULT_LOG_PAGE`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /api/v2/devices/{id}/logs` response: newest first (packages by the device's build
/// time, lines from the end of each file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogPage {
    /// The lines of this page.
    pub lines: Vec<LogLineView>,
    /// Pass as `after` to continue; `None` when every line was seen. A page can be shorter
    /// than `limit` and still have a `next_after`: the server reads a bounded amount of log
    /// data per request.
    #[serde(default)]
    pub next_after: Option<String>,
}

/// Query of `GET /api/v2/exports/embeddings` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EmbeddingExportQuery {
    /// Only events in this review status (`validated` for training data with labels).
    #[serde(default)]
    pub status: Option<DriftEventStatus>,
    /// Only this device's events.
    #[serde(default)]
    pub device: Option<String>,
    /// Only events that happened at or after this time (device clock, Unix ms).
    #[serde(default)]
    pub since: Option<u64>,
}

/// One line of the NDJSON embedding export: a drift event that carried an embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EmbeddingExportLine {
    /// The drift event's server id.
    pub event_id: u64,
    /// The device that reported it.
    pub device_id: String,
    /// The operator's label (validated events), else `None`.
    #[serde(default)]
    pub label: Option<String>,
    /// The detector that fired.
    pub detector: String,
    /// When it happened (device clock, Unix ms).
    pub unix_ms: u64,
    /// The sample's embedding.
    pub embedding: Vec<f32>,
    /// Where the event's first sample image can be fetched, if it has one: a presigned S3 URL
    /// (valid for an hour) or this server's dashboard path (send the operator token as the
    /// `sphere_session` cookie).
    #[serde(default)]
    pub sample_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_a_safe_set() {
        for good in ["cat", "red-cube", "a.b_c-9", &"x".repeat(MAX_CLASS_BYTES)] {
            assert!(valid_class_name(good), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "a b",
            "<script>",
            "a/b",
            "a'b",
            "ä",
            "a\"b",
            &"x".repeat(MAX_CLASS_BYTES + 1),
        ] {
            assert!(!valid_class_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn embeddings_are_bounded_and_finite() {
        assert!(valid_embedding(&[0.5, -1.0]));
        assert!(!valid_embedding(&[]));
        assert!(!valid_embedding(&[f32::NAN]));
        assert!(!valid_embedding(&vec![0.0; MAX_EMBEDDING_DIMS + 1]));
    }

    #[test]
    fn log_levels_order_by_severity() {
        assert!(LogLevel::Error < LogLevel::Warn);
        assert_eq!(LogLevel::parse("debug"), Some(LogLevel::Debug));
        let line: LogLine =
            serde_json::from_str(r#"{"unix_ms":1,"level":"warn","message":"m","extra":1}"#)
                .unwrap();
        assert_eq!(line.level, LogLevel::Warn);
    }
}
