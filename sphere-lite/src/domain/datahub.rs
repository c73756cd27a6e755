//! Data Hub: prediction samples indexed for the gallery, a device's operational logs, and the
//! drift-sample embeddings exported for retraining (formats in `tinylcm_protocol::datahub`).
//!
//! Why: the gallery filters by device, class and time without opening images, so ingest
//! records an index entry per prediction sample in the `Tracking` port. Logs and embeddings are
//! only read in bulk and in order, so they stay in the blob store (no tracking schema, nothing
//! for MLflow to hold): a small per-package log index blob names a package's log files
//! (`devices/<d>/logs/<created ms>-<package>.json`, sorting by the device's build time), and
//! each embedding is a blob keyed by the device's event number
//! (`devices/<d>/embeddings/<event_seq>.json`). Everything a device sends here is checked
//! against the protocol's bounds; a bad part is a problem of its package, never a failure.
//! Reads are bounded: a page of logs reads at most [`MAX_LOG_SCAN_BYTES`] of log files, and the
//! export streams one page of events at a time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tinylcm_protocol::api::{DriftEventView, MAX_DRIFT_EVENT_PAGE};
use tinylcm_protocol::datahub::{
    DEFAULT_LOG_PAGE, DEFAULT_PREDICTION_PAGE, EmbeddingExportLine, EmbeddingExportQuery, LogLevel,
    LogLineView, LogPage, LogQuery, MAX_LOG_FILE_BYTES, MAX_LOG_PAGE, MAX_LOG_QUERY_BYTES,
    MAX_PREDICTION_PAGE, PredictionList, PredictionQuery, PredictionView, valid_class_name,
};
use tinylcm_protocol::ids::{valid_device_id, valid_package_id};
use tinylcm_protocol::package::{FileKind, Package};

// The parser of the prediction files lives in the protocol crate, where the fuzz target
// `datahub` runs it without the server's dependency tree.
use tinylcm_protocol::device_json::logs::view_line;
use tinylcm_protocol::device_json::predictions::predictions_of;

use super::ingest::file_key;
use super::{DomainError, Sphere};
use crate::ports::{BlobKey, DriftEventFilter, PredictionCursor, PredictionFilter};

/// Most log-file bytes one log page reads; a page that reaches it ends early with a cursor.
pub const MAX_LOG_SCAN_BYTES: usize = 8 * 1024 * 1024;
const _: () = assert!(MAX_LOG_FILE_BYTES < MAX_LOG_SCAN_BYTES);

/// Drift events read per step of the embedding export (one step in memory at a time).
const EXPORT_STEP: usize = 100;

/// How long a presigned sample URL in the export stays valid.
const SAMPLE_URL_EXPIRY: Duration = Duration::from_secs(3600);

/// A package's log files, as its log index blob stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LogIndex {
    package_id: String,
    created_unix_ms: u64,
    /// Names of its `logs` members (each at most [`MAX_LOG_FILE_BYTES`]), in manifest order.
    files: Vec<String>,
}

/// An embedding as stored in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredEmbedding {
    event_seq: u64,
    /// The device database's epoch of the event (absent: a device older than epochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
    package_id: String,
    embedding: Vec<f32>,
}

/// What a processed package adds to the Data Hub.
#[derive(Debug, Default)]
pub(super) struct DataHubParts {
    /// Prediction samples to index.
    pub predictions: Vec<PredictionView>,
    /// The log index blob, when the package has log files to show.
    log_index: Option<(BlobKey, LogIndex)>,
    /// Problems found (the package is kept).
    pub problems: Vec<String>,
}

fn logs_prefix(device_id: &str) -> String {
    format!("devices/{device_id}/logs/")
}

fn key(text: String) -> Result<BlobKey, DomainError> {
    BlobKey::new(text).map_err(|e| crate::ports::StoreError::new("blobs", e).into())
}

/// Blob key of the embedding of drift event (`device_id`, `epoch`, `event_seq`):
/// `<epoch>-<seq>.json`, or `<seq>.json` for events of devices older than epochs (the key
/// such events always had).
pub fn embedding_key(
    device_id: &str,
    epoch: Option<&str>,
    event_seq: u64,
) -> Result<BlobKey, DomainError> {
    match epoch {
        Some(epoch) => key(format!(
            "devices/{device_id}/embeddings/{epoch}-{event_seq:020}.json"
        )),
        None => key(format!(
            "devices/{device_id}/embeddings/{event_seq:020}.json"
        )),
    }
}

fn log_index_key(
    device_id: &str,
    created_unix_ms: u64,
    package_id: &str,
) -> Result<BlobKey, DomainError> {
    key(format!(
        "{}{created_unix_ms:020}-{package_id}.json",
        logs_prefix(device_id)
    ))
}

/// The prediction samples and log files of `package`, and the problems found. Never fails.
pub(super) fn datahub_parts_of(package: &Package) -> DataHubParts {
    let predictions = predictions_of(package);
    let mut parts = DataHubParts {
        predictions: predictions.predictions,
        log_index: None,
        problems: predictions.problems,
    };
    logs_of(package, &mut parts);
    parts
}

fn logs_of(package: &Package, parts: &mut DataHubParts) {
    let m = &package.manifest;
    let mut files = Vec::new();
    for (entry, content) in package
        .files
        .iter()
        .filter(|(e, _)| e.kind == FileKind::Logs)
    {
        if content.len() > MAX_LOG_FILE_BYTES {
            parts.problems.push(format!(
                "log file {:?}: {} bytes, more than the {MAX_LOG_FILE_BYTES} the log viewer shows; stored, not shown (send logs in smaller pieces)",
                entry.name,
                content.len()
            ));
            continue;
        }
        files.push(entry.name.clone());
    }
    if files.is_empty() {
        return;
    }
    match log_index_key(&m.device_id, m.created_unix_ms, &m.package_id) {
        Ok(key) => {
            parts.log_index = Some((
                key,
                LogIndex {
                    package_id: m.package_id.clone(),
                    created_unix_ms: m.created_unix_ms,
                    files,
                },
            ))
        }
        Err(e) => parts.problems.push(format!("log files not indexed: {e}")),
    }
}

fn bad(error: impl Into<String>, fix: &str) -> DomainError {
    DomainError::BadRequest {
        error: error.into(),
        fix: Some(fix.into()),
    }
}

fn page_size(limit: Option<usize>, default: usize, max: usize) -> Result<usize, DomainError> {
    match limit {
        Some(0) => Err(bad(
            "`limit` must be at least 1",
            &format!("leave it out or pass 1..={max}"),
        )),
        Some(n) => Ok(n.min(max)),
        None => Ok(default),
    }
}

fn check_device(device: Option<&str>) -> Result<(), DomainError> {
    if device.is_some_and(|d| !valid_device_id(d)) {
        return Err(bad(
            "`device` is not a device id",
            "pass an id from GET /api/v2/devices",
        ));
    }
    Ok(())
}

/// A position in a device's log listing: lines strictly before line `line` of file `file` of
/// the package whose log index is `stem` (`<created ms, 20 digits>-<package>`), then the
/// earlier files and packages. Written `<stem>/<file>/<line>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogCursor {
    stem: String,
    file: usize,
    line: u64,
}

impl LogCursor {
    fn parse(text: &str) -> Option<LogCursor> {
        let mut parts = text.split('/');
        let (stem, file, line) = (parts.next()?, parts.next()?, parts.next()?);
        let (ms, package) = stem.split_once('-')?;
        if parts.next().is_some()
            || ms.len() != 20
            || !ms.bytes().all(|b| b.is_ascii_digit())
            || !valid_package_id(package)
        {
            return None;
        }
        Some(LogCursor {
            stem: stem.to_owned(),
            file: file.parse().ok()?,
            line: line.parse().ok()?,
        })
    }

    fn text(&self) -> String {
        format!("{}/{}/{}", self.stem, self.file, self.line)
    }
}

fn line_matches(line: &LogLineView, level: Option<LogLevel>, needle: Option<&str>) -> bool {
    let level_ok = level.is_none_or(|min| line.level.is_some_and(|l| l <= min));
    let text_ok = needle.is_none_or(|n| {
        line.message.to_ascii_lowercase().contains(n)
            || line
                .target
                .as_deref()
                .is_some_and(|t| t.to_ascii_lowercase().contains(n))
    });
    level_ok && text_ok
}

impl Sphere {
    /// Store the blobs `package` adds to the Data Hub (embeddings, the log index), unsynced,
    /// adding their keys to `written`; returns its prediction samples (for the index, stored
    /// with the package's processed mark) and the problems found. Called while processing,
    /// after the package's files are stored and before it is marked processed (so a crash
    /// re-runs it; every step is idempotent). `events` are the package's drift events (their
    /// epochs key the embeddings).
    pub(super) fn store_datahub(
        &self,
        package: &Package,
        embeddings: &[(u64, Vec<f32>)],
        events: &[DriftEventView],
        written: &mut Vec<BlobKey>,
    ) -> Result<(Vec<PredictionView>, Vec<String>), DomainError> {
        let device = &package.manifest.device_id;
        let mut problems = Vec::new();
        for (event_seq, embedding) in embeddings {
            let epoch = events
                .iter()
                .find(|e| e.event_seq == *event_seq)
                .and_then(|e| e.epoch.clone());
            let stored = StoredEmbedding {
                event_seq: *event_seq,
                epoch,
                package_id: package.manifest.package_id.clone(),
                embedding: embedding.clone(),
            };
            if let Some(problem) = self.put_embedding_once(device, &stored, written)? {
                problems.push(problem);
            }
        }
        let parts = datahub_parts_of(package);
        problems.extend(parts.problems);
        if let Some((key, index)) = &parts.log_index {
            let bytes =
                serde_json::to_vec(index).map_err(|e| crate::ports::StoreError::new("blobs", e))?;
            self.blobs.put_unsynced(key, &bytes)?;
            written.push(key.clone());
        }
        Ok((parts.predictions, problems))
    }

    /// Store the embedding of one drift event unless one is stored for that event already:
    /// an event's blobs are written once. The same embedding again (a re-run of the package
    /// after a crash, or the device sending the event again) is accepted as it is; a different
    /// one is ignored, logged and returned as a problem of the package, so an event an
    /// operator has already reviewed keeps the embedding the review saw. (MLflow + S3 with
    /// replicas: two replicas processing different packages with the same event at the same
    /// moment may both write; each package is processed by one worker, so one replica alone
    /// cannot race itself.)
    fn put_embedding_once(
        &self,
        device: &str,
        stored: &StoredEmbedding,
        written: &mut Vec<BlobKey>,
    ) -> Result<Option<String>, DomainError> {
        let key = embedding_key(device, stored.epoch.as_deref(), stored.event_seq)?;
        let Some(existing) = self.blobs.get(&key)? else {
            let bytes = serde_json::to_vec(stored)
                .map_err(|e| crate::ports::StoreError::new("blobs", e))?;
            self.blobs.put_unsynced(&key, &bytes)?;
            written.push(key);
            return Ok(None);
        };
        match serde_json::from_slice::<StoredEmbedding>(&existing) {
            Ok(first) if first.package_id == stored.package_id => Ok(None),
            Ok(first) if first.embedding == stored.embedding => Ok(None),
            Ok(first) => {
                tracing::warn!(
                    device, event_seq = stored.event_seq, first = %first.package_id,
                    package = %stored.package_id,
                    "a drift event's embedding arrived again with other values; the first is kept"
                );
                Ok(Some(format!(
                    "drift event {}: its embedding was stored from package {} already; the different one in this package was ignored (an event's data is written once)",
                    stored.event_seq, first.package_id
                )))
            }
            Err(e) => Ok(Some(format!(
                "drift event {}: the stored embedding is unreadable ({e}); left as it is",
                stored.event_seq
            ))),
        }
    }

    /// One page of prediction samples matching `query`, newest first (operators).
    pub fn list_predictions(&self, query: &PredictionQuery) -> Result<PredictionList, DomainError> {
        let limit = page_size(query.limit, DEFAULT_PREDICTION_PAGE, MAX_PREDICTION_PAGE)?;
        check_device(query.device.as_deref())?;
        if query.class.as_deref().is_some_and(|c| !valid_class_name(c)) {
            return Err(bad(
                "`class` is not a class name",
                "class names are 1..=64 bytes of A-Z a-z 0-9 . _ -",
            ));
        }
        let after = match &query.after {
            Some(text) => Some(PredictionCursor::parse(text).ok_or_else(|| {
                bad(
                    "`after` is not a listing cursor",
                    "pass the previous page's `next_after` unchanged",
                )
            })?),
            None => None,
        };
        let filter = PredictionFilter {
            device: query.device.clone(),
            class: query.class.clone(),
            since: query.since,
            until: query.until,
        };
        let predictions = self.tracking.predictions(&filter, after.as_ref(), limit)?;
        let next_after = (predictions.len() == limit)
            .then(|| predictions.last().map(PredictionView::cursor))
            .flatten();
        Ok(PredictionList {
            predictions,
            next_after,
        })
    }

    /// One page of `device_id`'s log lines matching `query`, newest first (operators). Reads
    /// at most [`MAX_LOG_SCAN_BYTES`] of log files; a page that stops there is shorter and
    /// still has a `next_after`.
    pub fn device_logs(&self, device_id: &str, query: &LogQuery) -> Result<LogPage, DomainError> {
        let limit = page_size(query.limit, DEFAULT_LOG_PAGE, MAX_LOG_PAGE)?;
        if self.device_summary(device_id)?.is_none() {
            return Err(DomainError::NotFound {
                error: "no such device".into(),
                fix: Some("pass an id from GET /api/v2/devices".into()),
            });
        }
        let needle = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) if q.len() > MAX_LOG_QUERY_BYTES || q.chars().any(char::is_control) => {
                return Err(bad(
                    format!("`q` must be at most {MAX_LOG_QUERY_BYTES} printable bytes"),
                    "shorten the search text",
                ));
            }
            q => q.map(str::to_ascii_lowercase),
        };
        let cursor = match &query.after {
            Some(text) => Some(LogCursor::parse(text).ok_or_else(|| {
                bad(
                    "`after` is not a log cursor",
                    "pass the previous page's `next_after` unchanged",
                )
            })?),
            None => None,
        };
        let prefix = logs_prefix(device_id);
        let stems: Vec<String> = self
            .blobs
            .list(&prefix)?
            .iter()
            .filter_map(|k| k.as_str().strip_prefix(&prefix)?.strip_suffix(".json"))
            .filter(|stem| cursor.as_ref().is_none_or(|c| *stem <= c.stem.as_str()))
            .map(str::to_owned)
            .collect();
        let mut lines = Vec::new();
        let mut budget = MAX_LOG_SCAN_BYTES;
        for stem in stems.iter().rev() {
            let Some(bytes) = self.blobs.get(&key(format!("{prefix}{stem}.json"))?)? else {
                continue;
            };
            let index: LogIndex = serde_json::from_slice(&bytes).map_err(|e| {
                crate::ports::StoreError::new("blobs", format!("log index {stem}: {e}"))
            })?;
            // Positions strictly before (file, line) of this package are still to show.
            let (start_file, start_line) = match &cursor {
                Some(c) if c.stem == *stem => (c.file, c.line),
                _ => (index.files.len(), 0),
            };
            for (i, name) in index.files.iter().enumerate().rev() {
                if i > start_file || (i == start_file && start_line <= 1) {
                    continue;
                }
                if budget < MAX_LOG_FILE_BYTES {
                    // Out of reading budget (it starts above one file's cap, so every page
                    // reads at least one file): the next page starts with this file.
                    let next = LogCursor {
                        stem: stem.clone(),
                        file: i + 1,
                        line: 0,
                    };
                    return Ok(LogPage {
                        lines,
                        next_after: Some(next.text()),
                    });
                }
                let Some(content) =
                    self.blobs
                        .get(&file_key(device_id, &index.package_id, name)?)?
                else {
                    continue;
                };
                if content.len() > MAX_LOG_FILE_BYTES {
                    continue;
                }
                budget = budget.saturating_sub(content.len());
                let text = String::from_utf8_lossy(&content);
                let numbered: Vec<(u64, &str)> = text
                    .split('\n')
                    .enumerate()
                    .map(|(n, l)| (n as u64 + 1, l.trim_end_matches('\r')))
                    .filter(|(_, l)| !l.trim().is_empty())
                    .collect();
                for (number, raw) in numbered.into_iter().rev() {
                    if i == start_file && number >= start_line {
                        continue;
                    }
                    let line = view_line(&index.package_id, name, number, raw);
                    if !line_matches(&line, query.level, needle.as_deref()) {
                        continue;
                    }
                    lines.push(line);
                    if lines.len() >= limit {
                        let next = LogCursor {
                            stem: stem.clone(),
                            file: i,
                            line: number,
                        };
                        return Ok(LogPage {
                            lines,
                            next_after: Some(next.text()),
                        });
                    }
                }
            }
        }
        Ok(LogPage {
            lines,
            next_after: None,
        })
    }

    /// Refuse an export query with a malformed device id (before a response starts).
    pub fn check_export_query(query: &EmbeddingExportQuery) -> Result<(), DomainError> {
        check_device(query.device.as_deref())
    }

    /// Stream the drift events matching `query` that carry an embedding, oldest first, as
    /// [`EmbeddingExportLine`]s into `sink`, one page of events at a time; stops early when
    /// `sink` returns false (the client went away). Returns how many lines were sent.
    pub fn export_embeddings(
        &self,
        query: &EmbeddingExportQuery,
        mut sink: impl FnMut(EmbeddingExportLine) -> bool,
    ) -> Result<usize, DomainError> {
        Self::check_export_query(query)?;
        let filter = DriftEventFilter {
            device: query.device.clone(),
            status: query.status,
            since: query.since,
            ..Default::default()
        };
        let step = EXPORT_STEP.min(MAX_DRIFT_EVENT_PAGE);
        let mut after = 0;
        let mut sent = 0;
        loop {
            let events = self.tracking.drift_events(&filter, after, step)?;
            for event in &events {
                if let Some(line) = self.export_line(event)? {
                    if !sink(line) {
                        return Ok(sent);
                    }
                    sent += 1;
                }
            }
            match events.last() {
                Some(last) if events.len() == step => after = last.id,
                _ => return Ok(sent),
            }
        }
    }

    fn export_line(
        &self,
        event: &DriftEventView,
    ) -> Result<Option<EmbeddingExportLine>, DomainError> {
        let Some(bytes) = self.blobs.get(&embedding_key(
            &event.device_id,
            event.epoch.as_deref(),
            event.event_seq,
        )?)?
        else {
            return Ok(None);
        };
        let stored: StoredEmbedding = serde_json::from_slice(&bytes)
            .map_err(|e| crate::ports::StoreError::new("blobs", format!("embedding: {e}")))?;
        let sample_url = match event.samples.first().map(|k| BlobKey::new(k.as_str())) {
            Some(Ok(k)) => Some(
                self.blobs
                    .presigned_get(&k, SAMPLE_URL_EXPIRY)?
                    .unwrap_or_else(|| format!("/ui/img/{k}")),
            ),
            _ => None,
        };
        Ok(Some(EmbeddingExportLine {
            event_id: event.id,
            device_id: event.device_id.clone(),
            label: event.label.clone(),
            detector: event.detector.clone(),
            unix_ms: event.unix_ms,
            embedding: stored.embedding,
            sample_url,
        }))
    }
}

#[cfg(test)]
mod tests {
    use tinylcm_protocol::datahub::MAX_LOG_LINE_BYTES;
    use tinylcm_protocol::package::{Limits, PackageBuilder, read_package};

    use super::*;

    #[test]
    fn bad_prediction_samples_are_problems_and_the_rest_is_indexed() {
        let mut b = PackageBuilder::new("p1", "dev-1", 7).unwrap();
        b.add("pred/a.jpg", FileKind::Prediction, vec![1]).unwrap();
        b.add("pred/b.png", FileKind::Prediction, vec![2]).unwrap();
        b.add("s/c.jpg", FileKind::Sample, vec![3]).unwrap();
        let meta = serde_json::json!([
            {"file": "pred/a.jpg", "class": "cat", "confidence": 0.9, "unix_ms": 5},
            {"file": "pred/b.png", "class": "<script>", "confidence": 0.9, "unix_ms": 5},
            {"file": "s/c.jpg", "class": "dog", "confidence": 0.5, "unix_ms": 5},
            {"file": "pred/b.png", "class": "dog", "confidence": 1.5, "unix_ms": 5},
            {"file": "pred/a.jpg", "class": "cat", "confidence": 0.1, "unix_ms": 6}
        ]);
        b.add(
            "pred/predictions.json",
            FileKind::Prediction,
            meta.to_string().into_bytes(),
        )
        .unwrap();
        b.add("predictions.json", FileKind::Prediction, b"{oops".to_vec())
            .unwrap();
        b.add("log.jsonl", FileKind::Logs, b"{}\n".to_vec())
            .unwrap();
        let package = read_package(&b.finish().unwrap()[..], &Limits::default()).unwrap();
        let parts = datahub_parts_of(&package);
        assert_eq!(parts.predictions.len(), 1);
        assert_eq!(
            parts.predictions[0].key,
            "devices/dev-1/packages/p1/pred/a.jpg"
        );
        // hostile class; not a prediction image; confidence; described twice; bad JSON.
        assert_eq!(parts.problems.len(), 5, "{:?}", parts.problems);
        let (key, index) = parts.log_index.unwrap();
        assert_eq!(
            key.as_str(),
            "devices/dev-1/logs/00000000000000000007-p1.json"
        );
        assert_eq!(index.files, ["log.jsonl"]);
    }

    #[test]
    fn log_cursors_round_trip_and_refuse_junk() {
        let c = LogCursor {
            stem: "00000000000000000007-p1".into(),
            file: 2,
            line: 9,
        };
        assert_eq!(LogCursor::parse(&c.text()), Some(c));
        for bad in [
            "",
            "x/1/2",
            "00000000000000000007-p1/1",
            "0000000000000000000a-p/1/2",
            "00000000000000000007-../1/2",
            "00000000000000000007-p/1/2/3",
        ] {
            assert_eq!(LogCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_are_cut_and_filtered_by_level_and_text() {
        let long = format!(
            r#"{{"unix_ms":1,"level":"info","message":"{}é"}}"#,
            "x".repeat(MAX_LOG_LINE_BYTES - 1)
        );
        let line = view_line("p", "f", 1, &long);
        assert!(line.message.len() <= MAX_LOG_LINE_BYTES);
        let warn = view_line(
            "p",
            "f",
            2,
            r#"{"unix_ms":1,"level":"warn","message":"Disk FULL"}"#,
        );
        let raw = view_line("p", "f", 3, "not json");
        assert_eq!(raw.message, "not json");
        assert!(line_matches(&warn, Some(LogLevel::Warn), Some("full")));
        assert!(line_matches(&warn, Some(LogLevel::Info), None));
        assert!(!line_matches(&warn, Some(LogLevel::Error), None));
        assert!(!line_matches(&raw, Some(LogLevel::Trace), None));
        assert!(line_matches(&raw, None, Some("json")));
    }
}
