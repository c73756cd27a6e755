//! Device metrics as time series: a package's `metrics.json` files become numeric points
//! (one per key, at the package's creation time) that the dashboard charts and
//! `GET /api/v2/devices/{id}/metrics` returns.
//!
//! Why: a device sends its operational figures (latency, frame rate, confidence, CPU,
//! temperature) in every package; stored only as blobs nobody could see a trend. The file is
//! device input, so it is bounded and validated here, once, for both tracking adapters:
//!
//! * at most [`MAX_METRICS_FILE_BYTES`] per file and [`MAX_KEYS_PER_PACKAGE`] keys per
//!   package; nested objects are flattened with dots (`{"latency_ms": {"p50": 11.8}}` →
//!   `latency_ms.p50`); only finite numbers count (strings, booleans, `null` and lists are
//!   not series);
//! * key names pass [`valid_key`] (a charset that is safe in HTML, MLflow metric names and
//!   URLs, bounded length, `sphere.` reserved for the server's own metrics);
//! * a file that is not a JSON object, or has keys that are refused, is a *problem* of its
//!   package (shown on the device page), never a failure: the rest of the package is kept;
//! * the time of every point is the package's `created_unix_ms` (device clock), pulled back to
//!   the accept time when it is more than [`MAX_FUTURE_MS`] ahead of it, so a device with a
//!   wrong clock cannot push points into the far future; the accept time is stored, so
//!   re-processing after a crash computes the same time and stores nothing twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tinylcm_protocol::package::{FileKind, Package};

use super::{DomainError, Sphere};

/// Largest metrics file parsed, in bytes.
pub const MAX_METRICS_FILE_BYTES: usize = 256 * 1024;

/// Most metric keys kept from one package (all its metrics files together); MLflow logs them
/// in one `log-batch` call.
pub const MAX_KEYS_PER_PACKAGE: usize = 256;

/// Longest metric key, in bytes.
pub const MAX_KEY_BYTES: usize = 100;

/// How far a package's creation time may be ahead of its accept time (1 hour of clock skew).
pub const MAX_FUTURE_MS: u64 = 3_600_000;

/// Most points of one series returned at once (`limit`).
pub const MAX_SERIES_POINTS: usize = 2000;

/// Points of one series returned when no `limit` is given.
pub const DEFAULT_SERIES_POINTS: usize = 500;

/// Most keys listed for one device.
pub const MAX_LISTED_KEYS: usize = 1000;

/// Prefix reserved for the server's own metrics (MLflow stores them beside the device's).
const RESERVED_PREFIX: &str = "sphere.";

/// Whether `key` can name a metric series: 1..=[`MAX_KEY_BYTES`] bytes, dot-separated parts of
/// `[A-Za-z0-9_-]` (no empty part), not starting with `sphere.`.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_BYTES).contains(&key.len())
        && !key.starts_with(RESERVED_PREFIX)
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// The time of a package's points: its creation time, or its accept time when the creation
/// time is more than [`MAX_FUTURE_MS`] ahead of it.
pub fn point_time(created_unix_ms: u64, accepted_unix_ms: u64) -> u64 {
    if created_unix_ms > accepted_unix_ms.saturating_add(MAX_FUTURE_MS) {
        accepted_unix_ms
    } else {
        created_unix_ms
    }
}

/// What flattening one file found besides the points.
#[derive(Default)]
struct Skipped {
    invalid_names: usize,
    over_cap: usize,
}

/// Flatten `value` under `prefix` into `out` (first value of a key wins), counting refusals.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>, skipped: &mut Skipped) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                // Build the key only while it can still be valid: a hostile 1 MB name is not
                // copied, and deep nesting stops growing the prefix.
                let len = if prefix.is_empty() {
                    k.len()
                } else {
                    prefix.len() + 1 + k.len()
                };
                if len > MAX_KEY_BYTES {
                    skipped.invalid_names += 1;
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out, skipped);
            }
        }
        Value::Number(n) => {
            let Some(v) = n.as_f64().filter(|v| v.is_finite()) else {
                return;
            };
            if !valid_key(prefix) {
                skipped.invalid_names += 1;
            } else if !out.contains_key(prefix) {
                // (A key already there came from an earlier metrics file: the first wins.)
                if out.len() >= MAX_KEYS_PER_PACKAGE {
                    skipped.over_cap += 1;
                } else {
                    out.insert(prefix.to_owned(), v);
                }
            }
        }
        // Strings, booleans, null and lists are not series.
        _ => {}
    }
}

/// The metric points of `package` (sorted by key, unique) and the problems found. Never fails:
/// a bad file is a problem and the other files still count.
pub(super) fn metrics_of(package: &Package) -> (Vec<(String, f64)>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (entry, content) in &package.files {
        if entry.kind != FileKind::Metrics {
            continue;
        }
        let name = &entry.name;
        if content.len() > MAX_METRICS_FILE_BYTES {
            problems.push(format!(
                "metrics file {name:?}: {} bytes, more than {MAX_METRICS_FILE_BYTES}; not charted",
                content.len()
            ));
            continue;
        }
        let doc: Value = match serde_json::from_slice(content) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                problems.push(format!(
                    "metrics file {name:?} is not a JSON object; not charted"
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!(
                    "metrics file {name:?} is not JSON ({e}); not charted"
                ));
                continue;
            }
        };
        let mut skipped = Skipped::default();
        flatten("", &doc, &mut out, &mut skipped);
        if skipped.invalid_names > 0 {
            problems.push(format!(
                "metrics file {name:?}: {} key(s) with invalid names skipped (keys are 1..={MAX_KEY_BYTES} bytes of A-Z a-z 0-9 _ - in dot-separated parts, not starting with \"sphere.\")",
                skipped.invalid_names
            ));
        }
        if skipped.over_cap > 0 {
            problems.push(format!(
                "metrics file {name:?}: {} key(s) over the limit of {MAX_KEYS_PER_PACKAGE} per package skipped",
                skipped.over_cap
            ));
        }
    }
    (out.into_iter().collect(), problems)
}

/// One point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricPoint {
    /// When (device clock of the package, Unix ms).
    pub unix_ms: u64,
    /// The value.
    pub value: f64,
}

/// Body of `GET /api/v2/devices/{id}/metrics?key=…`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricSeries {
    /// The device.
    pub device_id: String,
    /// The metric key.
    pub key: String,
    /// Points in time order; evenly thinned to `limit` when more matched.
    pub points: Vec<MetricPoint>,
}

/// Body of `GET /api/v2/devices/{id}/metrics/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricKeys {
    /// The device.
    pub device_id: String,
    /// Its metric keys, sorted (at most [`MAX_LISTED_KEYS`]).
    pub keys: Vec<String>,
}

/// Query of `GET /api/v2/devices/{id}/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricQuery {
    /// The metric key (required).
    pub key: String,
    /// Points at or after this time (Unix ms).
    #[serde(default)]
    pub since: Option<u64>,
    /// Points before this time (Unix ms).
    #[serde(default)]
    pub until: Option<u64>,
    /// Most points ([`DEFAULT_SERIES_POINTS`] when absent, at most [`MAX_SERIES_POINTS`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn no_device(device_id: &str) -> DomainError {
    DomainError::NotFound {
        error: format!("no device {device_id}"),
        fix: Some("GET /api/v2/devices lists the fleet".into()),
    }
}

impl Sphere {
    /// The metric keys of `device_id`.
    pub fn metric_keys(&self, device_id: &str) -> Result<MetricKeys, DomainError> {
        if self.tracking.device(device_id)?.is_none() {
            return Err(no_device(device_id));
        }
        Ok(MetricKeys {
            device_id: device_id.to_owned(),
            keys: self.tracking.metric_keys(device_id, MAX_LISTED_KEYS)?,
        })
    }

    /// One series of `device_id` as `query` asks.
    pub fn metric_series(
        &self,
        device_id: &str,
        query: &MetricQuery,
    ) -> Result<MetricSeries, DomainError> {
        if !valid_key(&query.key) {
            return Err(DomainError::BadRequest {
                error: "`key` is not a metric key".into(),
                fix: Some("GET /api/v2/devices/{id}/metrics/keys lists the device's keys".into()),
            });
        }
        let limit = query.limit.unwrap_or(DEFAULT_SERIES_POINTS);
        if !(1..=MAX_SERIES_POINTS).contains(&limit) {
            return Err(DomainError::BadRequest {
                error: format!("`limit` must be 1..={MAX_SERIES_POINTS}"),
                fix: None,
            });
        }
        if self.tracking.device(device_id)?.is_none() {
            return Err(no_device(device_id));
        }
        let points = self
            .tracking
            .metric_series(
                device_id,
                &query.key,
                query.since.unwrap_or(0),
                query.until.unwrap_or(u64::MAX),
                limit,
            )?
            .into_iter()
            .map(|(unix_ms, value)| MetricPoint { unix_ms, value })
            .collect();
        Ok(MetricSeries {
            device_id: device_id.to_owned(),
            key: query.key.clone(),
            points,
        })
    }
}

#[cfg(test)]
mod tests {
    use tinylcm_protocol::package::{PackageBuilder, read_package};

    use super::*;

    fn package(files: &[(&str, FileKind, &[u8])]) -> Package {
        let mut b = PackageBuilder::new("p", "d", 1).unwrap();
        for (name, kind, bytes) in files {
            b.add(*name, *kind, bytes.to_vec()).unwrap();
        }
        read_package(b.finish().unwrap().as_slice(), &Default::default()).unwrap()
    }

    #[test]
    fn keys_are_checked() {
        for good in ["fps", "latency_ms.p50", "system.cpu_percent", "a-b_C.9"] {
            assert!(valid_key(good), "{good}");
        }
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "<script>",
            "a\"b",
            "ä",
            "sphere.id",
            long.as_str(),
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn nested_numbers_are_flattened_and_the_rest_ignored() {
        let doc = br#"{"fps": 29.5, "latency_ms": {"p50": 11.8, "p99": 19.7},
            "model": "m", "ok": true, "none": null, "list": [1, 2],
            "deep": {"a": {"b": {"c": 1}}}, "<b>x</b>": 3, "sphere.id": 4}"#;
        let (points, problems) = metrics_of(&package(&[
            ("m.json", FileKind::Metrics, doc),
            ("logs.jsonl", FileKind::Logs, b"{\"fps\": 1}"),
        ]));
        assert_eq!(
            points,
            vec![
                ("deep.a.b.c".to_owned(), 1.0),
                ("fps".to_owned(), 29.5),
                ("latency_ms.p50".to_owned(), 11.8),
                ("latency_ms.p99".to_owned(), 19.7),
            ]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("2 key(s) with invalid names"));
    }

    #[test]
    fn bad_files_are_problems_and_the_key_count_is_bounded() {
        let many: serde_json::Map<String, Value> = (0..MAX_KEYS_PER_PACKAGE + 5)
            .map(|i| (format!("k{i:04}"), Value::from(i)))
            .collect();
        let many = Value::Object(many).to_string();
        let huge = vec![b' '; MAX_METRICS_FILE_BYTES + 1];
        let (points, problems) = metrics_of(&package(&[
            ("a.json", FileKind::Metrics, b"not json"),
            ("b.json", FileKind::Metrics, b"[1, 2]"),
            ("c.json", FileKind::Metrics, &huge),
            ("d.json", FileKind::Metrics, many.as_bytes()),
        ]));
        assert_eq!(points.len(), MAX_KEYS_PER_PACKAGE);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[3].contains("5 key(s) over the limit"));
    }

    #[test]
    fn a_clock_far_ahead_is_pulled_back_to_the_accept_time() {
        assert_eq!(point_time(1_000, 5_000), 1_000);
        assert_eq!(
            point_time(5_000 + MAX_FUTURE_MS, 5_000),
            5_000 + MAX_FUTURE_MS
        );
        assert_eq!(point_time(5_001 + MAX_FUTURE_MS, 5_000), 5_000);
        assert_eq!(point_time(u64::MAX, u64::MAX), u64::MAX);
    }
}
