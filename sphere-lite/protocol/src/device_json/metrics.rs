//! The metrics a device sends (a package's `metrics` members, JSON objects), flattened into
//! bounded, validated points (`{"latency_ms": {"p50": 11.8}}` → `latency_ms.p50`).
//!
//! Why here: sphere-lite charts and stores what [`metrics_of`] returns (its `domain::metrics`
//! says what the series are for), and the fuzz target `metrics` runs the same function
//! without the server's dependency tree.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::package::{FileKind, Package};

/// Largest metrics file parsed, in bytes.
pub const MAX_METRICS_FILE_BYTES: usize = 256 * 1024;

/// Most metric keys kept from one package (all its metrics files together); MLflow logs them
/// in one `log-batch` call.
pub const MAX_KEYS_PER_PACKAGE: usize = 256;

/// Longest metric key, in bytes.
pub const MAX_KEY_BYTES: usize = 100;

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

/// The member of a metrics file that names the model the device runs: strings, so no series
/// ([`metrics_of`] skips it); [`running_model_of`] reads it.
pub const MODEL_MEMBER: &str = "model";

/// Longest name, version or SHA-256 of a [`RunningModel`] kept, in bytes.
pub const MAX_MODEL_FIELD_BYTES: usize = 200;

/// The model a device runs, as its metrics file names it under [`MODEL_MEMBER`]: the runtime
/// writes this type and the server reads it, so neither can rename a field alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunningModel {
    /// Release name (or the model file's name when it did not come from a release).
    pub name: String,
    /// Release version.
    pub version: String,
    /// The model file's SHA-256 (hex).
    #[serde(default)]
    pub sha256: String,
}

impl RunningModel {
    /// Whether every field is at most [`MAX_MODEL_FIELD_BYTES`] printable bytes and the name
    /// is not empty (it is device input shown on the dashboard).
    pub fn is_valid(&self) -> bool {
        let ok = |s: &str| s.len() <= MAX_MODEL_FIELD_BYTES && !s.chars().any(char::is_control);
        !self.name.trim().is_empty() && ok(&self.name) && ok(&self.version) && ok(&self.sha256)
    }
}

/// The model the first metrics file of `package` that names one (valid, within the size
/// bound) says the device runs; `None` when none does.
pub fn running_model_of(package: &Package) -> Option<RunningModel> {
    bounded_metrics_files(package).find_map(|content| {
        #[derive(serde::Deserialize)]
        struct Doc {
            model: Option<RunningModel>,
        }
        serde_json::from_slice::<Doc>(content)
            .ok()?
            .model
            .filter(RunningModel::is_valid)
    })
}

/// The contents of `package`'s metrics files within [`MAX_METRICS_FILE_BYTES`], in order:
/// what the readers of a single member (running model, refused release) look through.
pub(super) fn bounded_metrics_files(package: &Package) -> impl Iterator<Item = &[u8]> {
    package
        .files
        .iter()
        .filter(|(entry, content)| {
            entry.kind == FileKind::Metrics && content.len() <= MAX_METRICS_FILE_BYTES
        })
        .map(|(_, content)| content.as_slice())
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
pub fn metrics_of(package: &Package) -> (Vec<(String, f64)>, Vec<String>) {
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

#[cfg(test)]
mod tests {
    use crate::package::{PackageBuilder, read_package};

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

    /// Fails before this change: the model a device named in its metrics file was skipped as
    /// a string, so the fleet page showed "—" for every device's model.
    #[test]
    fn the_running_model_is_read_from_the_metrics_file_and_checked() {
        let runs = |doc: &str| {
            running_model_of(&package(&[("m.json", FileKind::Metrics, doc.as_bytes())]))
        };
        let model = RunningModel {
            name: "shapes".into(),
            version: "1.2.0".into(),
            sha256: "ab".repeat(32),
        };
        let doc = serde_json::json!({ MODEL_MEMBER: model, "fps": 3 }).to_string();
        assert_eq!(runs(&doc), Some(model));
        let long = "v".repeat(MAX_MODEL_FIELD_BYTES + 1);
        for bad in [
            r#"{"fps": 3}"#.to_owned(),
            r#"{"model": "shapes"}"#.to_owned(),
            r#"{"model": {"name": "", "version": "1"}}"#.to_owned(),
            r#"{"model": {"name": "a\nb", "version": "1"}}"#.to_owned(),
            format!(r#"{{"model": {{"name": "a", "version": "{long}"}}}}"#),
            "not json".to_owned(),
        ] {
            assert_eq!(runs(&bad), None, "{bad}");
        }
        // Only metrics files count.
        assert_eq!(
            running_model_of(&package(&[("l.json", FileKind::Logs, doc.as_bytes())])),
            None
        );
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
}
