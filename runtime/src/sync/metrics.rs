//! `metrics.json` for the server's time series: the numbers of the service's `status.json`
//! ([`crate::status::StatusReport`]) flattened into the shape sphere-lite reads (a JSON object
//! whose finite numbers are series named by their `.`-joined path), plus the sync counters and
//! the active model's identity.
//!
//! The server skips keys outside `[A-Za-z0-9_-]` parts, keys over 100 bytes and anything past
//! 256 keys; building to the same rules here keeps every number the device sends (class names
//! become key parts, so their other characters are replaced).
//!
//! The series the dashboard charts by default ([`tinylcm_protocol::metric_keys`]) are set from
//! the report's typed fields under those shared constants, and their room is kept before
//! anything else is counted: a renamed status field fails to compile here instead of leaving
//! a chart empty on the server. So are the sync figures the server reads
//! ([`metric_keys::SYNC_KEYS`]).
//!
//! Beside the numbers, the file names the release the device refused and why
//! ([`REFUSED_RELEASE_MEMBER`], `null` without one, so the server can tell a device that
//! refused nothing from one too old to say).

use serde_json::{Map, Value};
use tinylcm_protocol::device_json::metrics::{MODEL_MEMBER, RunningModel};
use tinylcm_protocol::device_json::refusal::{REFUSED_RELEASE_MEMBER, ReleaseRefusal};
use tinylcm_protocol::metric_keys;

use super::host::ModelIdentity;
use super::status::SyncStatusView;
use crate::status::StatusReport;

/// Most numbers in one metrics file (the server's per-package bound).
pub const MAX_KEYS: usize = 256;
/// Longest dotted key (the server's bound).
pub const MAX_KEY_BYTES: usize = 100;

/// Builds the metrics object; `refused` is the refusal the device reports
/// ([`super::pull::refusal_to_report`]).
pub fn metrics_json(
    report: Option<&StatusReport>,
    sync: &SyncStatusView,
    model: Option<&ModelIdentity>,
    refused: Option<&ReleaseRefusal>,
) -> Value {
    let mut out = Map::new();
    // The protocol's type, which the server reads back; always present (`null` for none).
    out.insert(
        REFUSED_RELEASE_MEMBER.into(),
        serde_json::to_value(refused).unwrap_or(Value::Null),
    );
    let charted = report.map(charted_values).unwrap_or_default();
    // Room for the charted series first, so the key bound never cuts them; the flattening
    // below leaves their keys to them (written once, counted once).
    let mut keys = charted.len();
    if let Some(m) = model {
        // The protocol's type, which the server reads back: a renamed field fails to compile.
        let running = RunningModel {
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: m.sha256.clone(),
        };
        if let Ok(v) = serde_json::to_value(running) {
            out.insert(MODEL_MEMBER.into(), v);
        }
    }
    if let Ok(Value::Object(mut sync)) = serde_json::to_value(sync) {
        // Its numbers (times, Unix ms) are no series; `foreign_answer_status` is the one the
        // dashboard reads ([`tinylcm_protocol::api::FOREIGN_ANSWER_METRIC`]).
        sync.remove("foreign_answer");
        let mut dst = Map::new();
        flatten_into(&mut dst, &sync, "sync", &mut keys);
        out.insert("sync".into(), Value::Object(dst));
    }
    if let Some(r) = report {
        if let Ok(Value::Object(status)) = serde_json::to_value(r) {
            // Plain numbers first, then sections, per-class counts last: when the key bound
            // bites it cuts classes, not the figures every device has.
            let rank = |k: &str, v: &Value| match (k, v) {
                (_, Value::Number(_)) => 0,
                ("classes", _) => 2,
                _ => 1,
            };
            let mut fields: Vec<(String, Value)> = status.into_iter().collect();
            fields.sort_by_key(|(k, v)| rank(k, v));
            for (k, v) in fields {
                // The model block is strings (and `pid`/`format` say nothing over time).
                if matches!(k.as_str(), "model" | "pid" | "format") {
                    continue;
                }
                let key = sanitize(&k);
                if key.is_empty() || out.contains_key(&key) || is_charted(&key) {
                    continue;
                }
                match v {
                    Value::Object(inner) => {
                        let mut dst = Map::new();
                        flatten_into(&mut dst, &inner, &key, &mut keys);
                        if !dst.is_empty() {
                            out.insert(key, Value::Object(dst));
                        }
                    }
                    Value::Number(n) if keys < MAX_KEYS && finite(&n) => {
                        keys += 1;
                        out.insert(key, Value::Number(n));
                    }
                    _ => {}
                }
            }
        }
    }
    for (key, value) in charted {
        set_path(&mut out, key, value);
    }
    if sync.interval_seconds > 0 {
        // Set from the typed field under the shared key (the flattening wrote the same leaf).
        set_path(
            &mut out,
            metric_keys::SYNC_INTERVAL_SECONDS,
            sync.interval_seconds as f64,
        );
    }
    set_path(
        &mut out,
        metric_keys::MODELS_REFUSED,
        sync.models_refused as f64,
    );
    Value::Object(out)
}

/// The default-chart series of `r` that it has a finite figure for, by their shared keys.
fn charted_values(r: &StatusReport) -> Vec<(&'static str, f64)> {
    let total = r.latency.get("total");
    [
        (metric_keys::LATENCY_P50_US, total.map(|p| p.p50_us as f64)),
        (metric_keys::LATENCY_P99_US, total.map(|p| p.p99_us as f64)),
        (metric_keys::FPS, Some(r.fps_interval)),
        (metric_keys::CONFIDENCE_MEAN, r.confidence.mean),
        (
            metric_keys::PROCESS_CPU_PERCENT,
            r.system.process_cpu_percent,
        ),
        (metric_keys::SOC_TEMPERATURE_C, r.system.soc_temperature_c),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| v.is_finite()).map(|v| (k, v)))
    .collect()
}

/// Whether dotted `key` is a default-chart series, which [`charted_values`] writes.
fn is_charted(key: &str) -> bool {
    metric_keys::DEFAULT_CHARTS.contains(&key)
}

/// Sets the leaf at dotted `key` to `value`, creating (or replacing non-object) parents.
fn set_path(out: &mut Map<String, Value>, key: &str, value: f64) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(leaf) = parts.pop() else { return };
    let mut map = out;
    for part in parts {
        let slot = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(inner) = slot else { return };
        map = inner;
    }
    if let Some(n) = serde_json::Number::from_f64(value) {
        map.insert(leaf.to_owned(), Value::Number(n));
    }
}

fn finite(n: &serde_json::Number) -> bool {
    n.as_f64().is_some_and(f64::is_finite)
}

/// Copies the numbers of `src` into `dst` under sanitized keys, within the key bounds.
fn flatten_into(
    dst: &mut Map<String, Value>,
    src: &Map<String, Value>,
    path: &str,
    keys: &mut usize,
) {
    for (k, v) in src {
        let key = sanitize(k);
        if key.is_empty() || dst.contains_key(&key) {
            continue;
        }
        let full = format!("{path}.{key}");
        if full.len() > MAX_KEY_BYTES || is_charted(&full) {
            continue;
        }
        match v {
            Value::Number(n) if *keys < MAX_KEYS && finite(n) => {
                *keys += 1;
                dst.insert(key, Value::Number(n.clone()));
            }
            Value::Bool(b) if *keys < MAX_KEYS => {
                *keys += 1;
                dst.insert(key, Value::from(u8::from(*b)));
            }
            Value::Object(inner) => {
                let mut sub = Map::new();
                flatten_into(&mut sub, inner, &full, keys);
                if !sub.is_empty() {
                    dst.insert(key, Value::Object(sub));
                }
            }
            _ => {}
        }
    }
}

/// A key part the server accepts: `[A-Za-z0-9_-]`, other characters become `_`, at most 40
/// bytes, and never starting a reserved `sphere` part.
fn sanitize(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if s == "sphere" {
        s.push('_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every numeric leaf path the server would accept.
    fn leaves(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(v, &p, out);
                }
            }
            Value::Number(_) => out.push(path.to_string()),
            _ => {}
        }
    }

    #[test]
    fn numbers_are_kept_under_valid_keys_within_bounds() {
        let mut report: StatusReport = serde_json::from_value(serde_json::json!({
            "format": 1, "running": true, "written_unix_ms": 5, "started_unix_ms": 1, "pid": 9,
            "uptime_s": 3.5, "interval_s": 5.0,
            "model": {"origin": "m", "sha256": "ab", "backend": "b", "accelerator": "a", "source": "s"},
            "frames": 42, "fps": 29.5, "fps_interval": 30.0, "latency": {},
            "confidence": {"frames": 1, "mean": 0.9, "min": null, "p10": null},
            "classes": {}, "autonomy": null, "system": {}, "store": null,
            "dropped_reports": 0, "failed_writes": 0
        }))
        .unwrap();
        for i in 0..400 {
            report.classes.insert(
                format!("cls.{i} é"),
                serde_json::from_value(serde_json::json!({"total": i, "interval": 1})).unwrap(),
            );
        }
        let mut sync = SyncStatusView {
            uploaded: 3,
            ..Default::default()
        };
        sync.raise_foreign(
            "upload",
            &crate::sync::http::Foreign {
                status: 413,
                answered_by: "nginx (not sphere-lite)".into(),
                text: "HTTP 413".into(),
            },
            5,
        );
        let model = ModelIdentity {
            name: "shapes".into(),
            version: "2".into(),
            sha256: "ff".into(),
        };
        let v = metrics_json(Some(&report), &sync, Some(&model), None);
        let mut keys = Vec::new();
        leaves(&v, "", &mut keys);
        assert!(keys.len() <= MAX_KEYS, "{}", keys.len());
        assert!(keys.contains(&"fps".to_string()));
        assert!(keys.contains(&"confidence.mean".to_string()));
        assert!(keys.contains(&"sync.uploaded".to_string()));
        // The proxy alert reaches the dashboard as the metric it reads, and nothing else of it.
        assert_eq!(
            v["sync"]["foreign_answer_status"],
            413,
            "{}",
            tinylcm_protocol::api::FOREIGN_ANSWER_METRIC
        );
        assert!(keys.contains(&tinylcm_protocol::api::FOREIGN_ANSWER_METRIC.to_string()));
        assert!(!keys.iter().any(|k| k.starts_with("sync.foreign_answer.")));
        assert!(
            keys.contains(&tinylcm_protocol::metric_keys::class_count_key("cls_0__")),
            "{keys:?}"
        );
        assert!(!keys.iter().any(|k| k == "pid"));
        for k in &keys {
            assert!(k.len() <= MAX_KEY_BYTES);
            assert!(k.split('.').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }));
        }
        assert_eq!(v["model"]["sha256"], "ff");
    }

    /// Fails before this change: the device did not say how often it syncs, so the dashboard
    /// judged every device against one fixed 10-minute window; and the server could not read
    /// the model block back. Both are checked here through the protocol crate's own reader.
    #[test]
    fn the_sync_interval_and_the_running_model_reach_the_servers_readers() {
        let sync = SyncStatusView {
            interval_seconds: 5,
            ..Default::default()
        };
        let model = ModelIdentity {
            name: "shapes".into(),
            version: "3".into(),
            sha256: "ab".into(),
        };
        let v = metrics_json(Some(&StatusReport::sample()), &sync, Some(&model), None);
        let mut b = tinylcm_protocol::package::PackageBuilder::new("p", "d", 1).unwrap();
        b.add(
            "metrics.json",
            tinylcm_protocol::package::FileKind::Metrics,
            serde_json::to_vec(&v).unwrap(),
        )
        .unwrap();
        let package = tinylcm_protocol::package::read_package(
            b.finish().unwrap().as_slice(),
            &Default::default(),
        )
        .unwrap();
        let (points, problems) = tinylcm_protocol::device_json::metrics::metrics_of(&package);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            points.contains(&(metric_keys::SYNC_INTERVAL_SECONDS.to_owned(), 5.0)),
            "{points:?}"
        );
        assert_eq!(
            tinylcm_protocol::device_json::metrics::running_model_of(&package),
            Some(RunningModel {
                name: "shapes".into(),
                version: "3".into(),
                sha256: "ab".into()
            })
        );
    }

    /// Fails before this change: the runtime sent `latency.total.p50_us` and
    /// `system.process_cpu_percent` only by the accident of its field names, and nothing tied
    /// them to the dashboard's default charts; now every default chart key is in the file.
    #[test]
    fn every_default_chart_key_is_sent() {
        let mut report = StatusReport::sample();
        let p = report.latency["invoke"];
        report.latency.insert("total".into(), p);
        report.system.process_cpu_percent = Some(37.5);
        // Enough classes to exhaust the key bound: the charted series keep their room.
        for i in 0..400 {
            report.classes.insert(
                format!("c{i}"),
                serde_json::from_value(serde_json::json!({"total": i, "interval": 1})).unwrap(),
            );
        }
        let v = metrics_json(Some(&report), &SyncStatusView::default(), None, None);
        let mut keys = Vec::new();
        leaves(&v, "", &mut keys);
        assert!(keys.len() <= MAX_KEYS, "{}", keys.len());
        for k in metric_keys::DEFAULT_CHARTS {
            assert!(keys.iter().any(|have| have == k), "{k} missing: {keys:?}");
        }
        // Fails before this change: `sync.models_refused` was sent only by the accident of
        // a status field's name, and the rollout page read it under its own copy of the key.
        let sync = SyncStatusView {
            interval_seconds: 5,
            ..Default::default()
        };
        let v = metrics_json(Some(&report), &sync, None, None);
        let mut keys = Vec::new();
        leaves(&v, "", &mut keys);
        for k in metric_keys::SYNC_KEYS {
            assert!(keys.iter().any(|have| have == k), "{k} missing: {keys:?}");
        }
        assert_eq!(v["system"]["process_cpu_percent"], 37.5);
        assert_eq!(v["confidence"]["mean"], 0.9);
    }
}
