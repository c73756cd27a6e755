//! Device metrics as time series: a package's `metrics.json` files become numeric points
//! (one per key, at the package's creation time) that the dashboard charts and
//! `GET /api/v2/devices/{id}/metrics` returns.
//!
//! Why: a device sends its operational figures (latency, frame rate, confidence, CPU,
//! temperature) in every package; stored only as blobs nobody could see a trend. The file is
//! device input, so it is bounded and validated once, for both tracking adapters, by the
//! protocol crate's parser (`tinylcm_protocol::device_json::metrics`, fuzzed there):
//!
//! * at most `MAX_METRICS_FILE_BYTES` per file and `MAX_KEYS_PER_PACKAGE` keys per
//!   package; nested objects are flattened with dots (`{"latency_ms": {"p50": 11.8}}` →
//!   `latency_ms.p50`); only finite numbers count (strings, booleans, `null` and lists are
//!   not series);
//! * key names pass `valid_key` (a charset that is safe in HTML, MLflow metric names and
//!   URLs, bounded length, `sphere.` reserved for the server's own metrics);
//! * a file that is not a JSON object, or has keys that are refused, is a *problem* of its
//!   package (shown on the device page), never a failure: the rest of the package is kept;
//! * the time of every point is the package's `created_unix_ms` (device clock), pulled back to
//!   the accept time when it is more than [`MAX_FUTURE_MS`] ahead of it, so a device with a
//!   wrong clock cannot push points into the far future; the accept time is stored, so
//!   re-processing after a crash computes the same time and stores nothing twice.

use serde::{Deserialize, Serialize};
// The parser of the metrics files lives in the protocol crate, where the fuzz target
// `metrics` runs it without the server's dependency tree.
pub(super) use tinylcm_protocol::device_json::metrics::metrics_of;
use tinylcm_protocol::device_json::metrics::valid_key;

use super::{DomainError, Sphere};

/// How far a package's creation time may be ahead of its accept time (1 hour of clock skew).
pub const MAX_FUTURE_MS: u64 = 3_600_000;

/// Most points of one series returned at once (`limit`).
pub const MAX_SERIES_POINTS: usize = 2000;

/// Points of one series returned when no `limit` is given.
pub const DEFAULT_SERIES_POINTS: usize = 500;

/// Most keys listed for one device.
pub const MAX_LISTED_KEYS: usize = 1000;

/// The time of a package's points: its creation time, or its accept time when the creation
/// time is more than [`MAX_FUTURE_MS`] ahead of it.
pub fn point_time(created_unix_ms: u64, accepted_unix_ms: u64) -> u64 {
    if created_unix_ms > accepted_unix_ms.saturating_add(MAX_FUTURE_MS) {
        accepted_unix_ms
    } else {
        created_unix_ms
    }
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
    use super::*;

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
