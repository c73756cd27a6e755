//! Turning an original client's flat archive into a v2 sync package, so it goes through the
//! one ingest path (durable accept, idempotent on package id, crash-safe processing).
//!
//! Why translate instead of a second ingest: the original server routed files by substring
//! matches on names and lost drift events, images and logs on the way (original-server.md §15).
//! Here every member is kept (nothing an old device sends is dropped), gets a [`FileKind`] from
//! the package type and its name, and a `drift_event.json` additionally becomes a v2 drift
//! event with its images attached, so it shows in the Drift Hub like a new device's.

use crate::api::{DriftEventReport, MAX_DETECTOR_BYTES, MAX_SAMPLES_PER_EVENT};
use crate::package::{FileKind, Limits, PackageBuilder};
use serde_json::Value;

use super::LegacyError;
use super::archive::Member;
use super::wire::UploadMetadata;

/// Name of the member that keeps the upload's metadata part as the client sent it.
pub const METADATA_MEMBER: &str = "legacy/metadata.json";
/// Name of the generated drift-event member.
pub const DRIFT_MEMBER: &str = "legacy/drift-events.json";

/// Build the v2 package for `members` uploaded by `device_id` with `metadata`.
pub fn to_package(
    device_id: &str,
    metadata: &UploadMetadata,
    members: &[Member],
    limits: &Limits,
    now_unix_ms: u64,
) -> Result<Vec<u8>, LegacyError> {
    to_builder(device_id, metadata, members.to_vec(), limits, now_unix_ms)?
        .finish()
        .map_err(|e| LegacyError::BadArchive(e.to_string()))
}

/// As [`to_package`], taking the members' contents over (never copied) and returning the
/// builder, so the caller can write the package to a file with
/// [`PackageBuilder::finish_to`].
pub fn to_builder(
    device_id: &str,
    metadata: &UploadMetadata,
    members: Vec<Member>,
    limits: &Limits,
    now_unix_ms: u64,
) -> Result<PackageBuilder, LegacyError> {
    let created = metadata
        .timestamp
        .filter(|t| t.is_finite() && *t > 0.0)
        .map_or(now_unix_ms, |t| (t * 1000.0) as u64);
    let mut builder = PackageBuilder::new(&metadata.package_id, device_id, created)
        .map_err(|e| LegacyError::BadMetadata(e.to_string()))?
        .with_limits(*limits);
    fn add(
        builder: &mut PackageBuilder,
        name: &str,
        kind: FileKind,
        data: Vec<u8>,
    ) -> Result<(), LegacyError> {
        builder.add(name, kind, data).map(drop).map_err(|e| {
            if e.is_too_large() {
                LegacyError::TooLarge(e.to_string())
            } else {
                LegacyError::BadArchive(e.to_string())
            }
        })
    }

    let meta_json = serde_json::to_vec(metadata).unwrap_or_default();
    add(&mut builder, METADATA_MEMBER, FileKind::Other, meta_json)?;

    let package_type = metadata.package_type.to_ascii_lowercase();
    let mut names = Names::default();
    let mut images = Vec::new();
    let mut drift_records = Vec::new();
    for member in members {
        let kind = kind_of(&package_type, &member.name);
        let name = names.place(kind, &member.name);
        if kind == FileKind::Sample {
            images.push(name.clone());
        }
        if is_drift_json(&member.name) {
            drift_records.extend(drift_values(&member.data));
        }
        add(&mut builder, &name, kind, member.data)?;
    }

    let events: Vec<DriftEventReport> = drift_records
        .into_iter()
        .enumerate()
        .map(|(i, value)| drift_event(&metadata.package_id, i, &value, &images, created))
        .collect();
    if !events.is_empty() {
        let json = serde_json::to_vec(&events).unwrap_or_default();
        add(&mut builder, DRIFT_MEMBER, FileKind::DriftEvents, json)?;
    }
    Ok(builder)
}

const IMAGE_EXTENSIONS: [&str; 4] = [".jpg", ".jpeg", ".png", ".gif"];
const MODEL_EXTENSIONS: [&str; 6] = [".tflite", ".onnx", ".pt", ".pth", ".pkl", ".h5"];

fn is_drift_json(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("drift") && (lower.ends_with(".json") || lower.ends_with(".jsonl"))
}

/// What a member of an original package holds, by the package type and the member's name
/// (the names the original clients write, original-server.md §3.4).
fn kind_of(package_type: &str, name: &str) -> FileKind {
    let lower = name.to_ascii_lowercase();
    let ends = |exts: &[&str]| exts.iter().any(|e| lower.ends_with(e));
    if ends(&IMAGE_EXTENSIONS) {
        return if package_type.contains("prediction") {
            FileKind::Prediction
        } else {
            FileKind::Sample
        };
    }
    if ends(&MODEL_EXTENSIONS) || lower.starts_with("labels") || lower == "model_info.json" {
        return FileKind::Model;
    }
    if lower.starts_with("metrics") && lower.ends_with(".json") {
        return FileKind::Metrics;
    }
    if lower == "prediction_images.json" {
        return FileKind::Prediction;
    }
    if lower.starts_with("operational_log")
        || lower == "logs_metadata.json"
        || ends(&[".jsonl", ".csv", ".log"]) && !is_drift_json(&lower)
    {
        return FileKind::Logs;
    }
    FileKind::Other
}

/// Member names made safe for the v2 name rule, placed in a folder per kind, and unique.
#[derive(Default)]
struct Names {
    taken: std::collections::HashSet<String>,
}

impl Names {
    /// Longest base name kept (the folder and a uniqueness prefix must fit in 100 bytes).
    const MAX_BASE: usize = 64;

    fn place(&mut self, kind: FileKind, original: &str) -> String {
        let mut base: String = original
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if base.starts_with('.') {
            base.replace_range(..1, "_");
        }
        if base.len() > Self::MAX_BASE {
            // Keep the extension: it tells an image from a log.
            let ext = base
                .rfind('.')
                .filter(|&i| base.len() - i <= 8)
                .map(|i| base[i..].to_owned())
                .unwrap_or_default();
            base.truncate(Self::MAX_BASE - ext.len());
            base.push_str(&ext);
        }
        let folder = format!("legacy/{}", kind.as_str());
        let mut name = format!("{folder}/{base}");
        let mut n = 1;
        while !self.taken.insert(name.to_ascii_lowercase()) {
            n += 1;
            name = format!("{folder}/{n}-{base}");
        }
        name
    }
}

/// The drift records of a `drift*.json` (one object, or an array) or `drift*.jsonl` (one per
/// line) member; what does not parse is kept as a plain member only.
fn drift_values(data: &[u8]) -> Vec<Value> {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Array(items)) => items.into_iter().filter(Value::is_object).collect(),
        Ok(v @ Value::Object(_)) => vec![v],
        _ => data
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
            .filter(Value::is_object)
            .collect(),
    }
}

/// A v2 drift event for the original's drift record `value` (`{timestamp, detector_name,
/// reason, drift_type, metrics{...}, sample{sample_id, ...}}`), number `index` in the package.
fn drift_event(
    package_id: &str,
    index: usize,
    value: &Value,
    images: &[String],
    fallback_unix_ms: u64,
) -> DriftEventReport {
    let metrics = value.get("metrics");
    let number = |key: &str| metrics.and_then(|m| m.get(key)).and_then(Value::as_f64);
    // The original's score rule (original-server.md §6.4): the first of these keys, else the
    // first numeric metric that is not about confidence.
    let statistic = ["change_magnitude", "drift_score", "magnitude", "score"]
        .iter()
        .find_map(|k| number(k))
        .or_else(|| {
            metrics.and_then(Value::as_object).and_then(|m| {
                m.iter()
                    .filter(|(k, _)| !k.contains("confidence"))
                    .find_map(|(_, v)| v.as_f64())
            })
        })
        .unwrap_or(0.0);
    let detector = value
        .get("detector_name")
        .and_then(Value::as_str)
        .or_else(|| value.get("drift_type").and_then(Value::as_str))
        .map(printable)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let unix_ms = value
        .get("timestamp")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .map_or(fallback_unix_ms, |t| (t * 1000.0) as u64);
    let sample_id = value
        .get("sample")
        .and_then(|s| s.get("sample_id"))
        .and_then(|id| id.as_u64().or_else(|| id.as_str()?.parse().ok()))
        .unwrap_or(0);
    // The original sends no event number; the package id is unique per upload, so a hash of
    // it (53 bits: exact in JavaScript) is a stable idempotency key across re-uploads.
    let seq = stable_seq(package_id, index);
    DriftEventReport {
        event_seq: seq,
        epoch: None,
        incident: seq,
        detector,
        statistic,
        threshold: number("threshold").unwrap_or(0.0),
        magnitude: number("change_magnitude").unwrap_or(statistic),
        sample_id,
        unix_ms,
        samples: images.iter().take(MAX_SAMPLES_PER_EVENT).cloned().collect(),
        embedding: None,
        predicted: None,
        top_k: Vec::new(),
    }
}

/// A detector name cut to the v2 bound without control characters.
fn printable(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_DETECTOR_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

fn stable_seq(package_id: &str, index: usize) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(package_id.as_bytes())
        .chain_update((index as u64).to_le_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first) & ((1 << 53) - 1)
}

#[cfg(test)]
mod tests {
    use crate::package::read_package;

    use super::*;

    fn member(name: &str, data: &[u8]) -> Member {
        Member {
            name: name.into(),
            data: data.to_vec(),
        }
    }

    fn meta(package_type: &str) -> UploadMetadata {
        UploadMetadata {
            device_id: "pi-1".into(),
            package_id: "6f1c2a9e-8a4b-4c1d-9f00-123456789abc".into(),
            package_type: package_type.into(),
            hash: None,
            timestamp: Some(1_764_147_600.5),
        }
    }

    #[test]
    fn a_drift_package_becomes_a_drift_event_with_its_image() {
        let drift = br#"{"timestamp": 1764147601.25, "detector_name": "KNNDistanceMonitor",
            "reason": "distance up", "drift_type": "knn_distance",
            "metrics": {"confidence_avg": 0.2, "threshold": 1.5, "drift_score": 2.5},
            "sample": {"sample_id": "17", "prediction": "box", "confidence": 0.4}}"#;
        let members = [
            member("drift_event.json", drift),
            member("event_20261126_101010_ab12cd34.jpg", b"\xff\xd8jpeg"),
            member("image_metadata.json", b"{}"),
        ];
        let tar = to_package(
            "pi-1",
            &meta("drift_event"),
            &members,
            &Limits::default(),
            0,
        )
        .unwrap();
        let package = read_package(&tar[..], &Limits::default()).unwrap();
        assert_eq!(package.manifest.device_id, "pi-1");
        assert_eq!(package.manifest.created_unix_ms, 1_764_147_600_500);
        let events: Vec<DriftEventReport> =
            serde_json::from_slice(package.file(DRIFT_MEMBER).unwrap()).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.detector, "KNNDistanceMonitor");
        assert_eq!((e.statistic, e.threshold, e.sample_id), (2.5, 1.5, 17));
        assert_eq!(e.unix_ms, 1_764_147_601_250);
        assert_eq!(
            e.samples,
            ["legacy/sample/event_20261126_101010_ab12cd34.jpg"]
        );
        // Nothing the device sent is lost: every member and the metadata are in the package.
        assert!(package.file("legacy/other/drift_event.json").is_some());
        assert!(package.file(METADATA_MEMBER).is_some());
        // Re-uploading the same package gives the same event number (idempotent).
        assert_eq!(e.event_seq, stable_seq(&meta("x").package_id, 0));
    }

    #[test]
    fn members_are_routed_by_type_and_name() {
        assert_eq!(kind_of("metrics", "metrics.json"), FileKind::Metrics);
        assert_eq!(
            kind_of("operational_logs", "operational_log_1_s.jsonl"),
            FileKind::Logs
        );
        assert_eq!(kind_of("model", "model.tflite"), FileKind::Model);
        assert_eq!(kind_of("model", "labels.txt"), FileKind::Model);
        assert_eq!(
            kind_of("prediction_images", "box_101010_93_0.jpg"),
            FileKind::Prediction
        );
        assert_eq!(kind_of("drift_event", "event_x.jpg"), FileKind::Sample);
        assert_eq!(kind_of("metrics", "tmpab12.json"), FileKind::Other);
        // A device id or label containing "drift" or "metrics" does not change the route.
        assert_eq!(kind_of("operational_logs", "drift.jsonl"), FileKind::Other);
    }

    #[test]
    fn unsafe_and_colliding_names_are_made_safe_and_unique() {
        let mut names = Names::default();
        assert_eq!(
            names.place(FileKind::Prediction, "grüne Kiste_1.jpg"),
            "legacy/prediction/gr_ne_Kiste_1.jpg"
        );
        assert_eq!(
            names.place(FileKind::Other, ".hidden"),
            "legacy/other/_hidden"
        );
        assert_eq!(
            names.place(FileKind::Other, "a.json"),
            "legacy/other/a.json"
        );
        assert_eq!(
            names.place(FileKind::Other, "A.json"),
            "legacy/other/2-A.json"
        );
        let long = format!("{}.jpg", "x".repeat(300));
        let placed = names.place(FileKind::Sample, &long);
        assert!(placed.len() <= 100 && placed.ends_with(".jpg"), "{placed}");
    }

    #[test]
    fn jsonl_drift_files_give_one_event_per_line() {
        let lines = b"{\"detector_name\":\"a\"}\nnot json\n{\"detector_name\":\"b\"}\n";
        let members = [member("drift_events.jsonl", lines)];
        let tar = to_package(
            "pi-1",
            &meta("drift_event"),
            &members,
            &Limits::default(),
            9,
        )
        .unwrap();
        let package = read_package(&tar[..], &Limits::default()).unwrap();
        let events: Vec<DriftEventReport> =
            serde_json::from_slice(package.file(DRIFT_MEMBER).unwrap()).unwrap();
        let detectors: Vec<_> = events.iter().map(|e| e.detector.as_str()).collect();
        assert_eq!(detectors, ["a", "b"]);
        assert_ne!(events[0].event_seq, events[1].event_seq);
    }
}
