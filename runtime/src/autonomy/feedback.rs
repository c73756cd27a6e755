//! Human verdicts reaching the autonomy layer: "this incident was a false alarm", "this
//! drift was real", "this quarantined sample is a star", "reject this one".
//!
//! Verdicts arrive as small TOML files in an inbox folder beside the state database
//! (`tinylcm feedback` writes them; later the sync client drops the server's there too), so
//! they reach a running service without a second process opening the database, and wait
//! for the service when it is stopped. A background thread reads the inbox, resolves event
//! and incident numbers against the event log, and hands [`Delivery`]s to the inference
//! thread, which applies them between frames. A file is removed only after what it changed
//! is durable in the store, so a power cut at any moment loses no verdict (it may apply one
//! twice; every verdict is idempotent or bounded: false-alarm raises stop at
//! `max-threshold-factor`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::event::{EventKind, RuntimeEvent};
use crate::drift::DriftEvent;
use crate::state::{MAX_EVENTS_PER_READ, Store};

/// Files this process submitted, for unique names.
static SUBMITTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Largest feedback file read (a verdict is a few lines).
pub const MAX_FILE_BYTES: u64 = 64 << 10;
/// Most verdicts in one file.
pub const MAX_ITEMS: usize = 1000;
/// How often the inbox folder is looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// A human's verdict on a drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing changed that matters: accept the condition as normal.
    FalseAlarm,
    /// The drift was real: keep the reference.
    Confirmed,
}

/// One verdict on drift, by incident or by event number (as `tinylcm status` lists them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftVerdict {
    /// Every drift event of this incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<u64>,
    /// This event of the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<u64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// One verdict on a quarantined sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleVerdict {
    /// The quarantine entry.
    pub id: u64,
    /// Its true class (the KNN learns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Not useful: reject it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
}

/// A class the KNN holds gets another name: every sample of `from` becomes `to` (e.g. the
/// device proposed `new-1` and a human says it is `empty`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassVerdict {
    /// The class as the KNN names it now.
    pub from: String,
    /// Its true name (an existing class merges).
    pub to: String,
}

/// The content of one inbox file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackFile {
    /// Verdicts on drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftVerdict>,
    /// Verdicts on quarantined samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<SampleVerdict>,
    /// Class names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<ClassVerdict>,
}

/// Failures reading or writing feedback.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid feedback.
    #[error("{path}: not valid feedback: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl FeedbackFile {
    /// Check what serde cannot: one target per drift verdict, label xor reject, bounds.
    pub fn validate(&self, path: &Path) -> Result<(), FeedbackError> {
        let bad = |reason: String| FeedbackError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if self.drift.len() + self.sample.len() + self.class.len() > MAX_ITEMS {
            return Err(bad(format!("more than {MAX_ITEMS} verdicts")));
        }
        for d in &self.drift {
            if d.incident.is_some() == d.event.is_some() {
                return Err(bad(
                    "each drift verdict names an incident or an event, not both".into(),
                ));
            }
        }
        for s in &self.sample {
            match (&s.label, s.reject) {
                (Some(_), true) | (None, false) => {
                    return Err(bad(format!(
                        "sample {}: give a label or reject = true, not both or neither",
                        s.id
                    )));
                }
                (Some(l), false)
                    if l.trim().is_empty() || l.len() > crate::knn::MAX_LABEL_BYTES =>
                {
                    return Err(bad(format!(
                        "sample {}: label must be 1..={} bytes",
                        s.id,
                        crate::knn::MAX_LABEL_BYTES
                    )));
                }
                _ => {}
            }
        }
        let label_ok = |l: &str| !l.trim().is_empty() && l.len() <= crate::knn::MAX_LABEL_BYTES;
        for c in &self.class {
            if !label_ok(&c.from) || !label_ok(&c.to) {
                return Err(bad(format!(
                    "class {:?} -> {:?}: names must be 1..={} bytes",
                    c.from,
                    c.to,
                    crate::knn::MAX_LABEL_BYTES
                )));
            }
        }
        Ok(())
    }

    /// Parse and validate a file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, FeedbackError> {
        let file: FeedbackFile = toml::from_str(text).map_err(|e| FeedbackError::Invalid {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        file.validate(path)?;
        Ok(file)
    }

    /// Write it into `inbox` atomically (a new, unique file) and return its path.
    pub fn submit(&self, inbox: &Path) -> Result<PathBuf, FeedbackError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FeedbackError::Io { path, source }
        };
        self.validate(inbox)?;
        std::fs::create_dir_all(inbox).map_err(io(inbox))?;
        // Millisecond, process and a per-process sequence: unique even for many submits in
        // one millisecond, and sorted in submission order.
        let stamp = crate::utc::now_unix_ms();
        let seq = SUBMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("feedback-{stamp}-{}-{seq:08}.toml", std::process::id());
        let path = inbox.join(&name);
        let text = toml::to_string(self).map_err(|e| FeedbackError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::files::write_atomic(&path, text.as_bytes(), crate::files::Durability::Synced)
            .map_err(io(&path))?;
        Ok(path)
    }
}

/// A resolved verdict, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A verdict on one drift event.
    Drift {
        /// The event as the detector emitted it.
        event: DriftEvent,
        /// The verdict.
        verdict: Verdict,
    },
    /// A verdict on a quarantined sample.
    Sample(SampleVerdict),
    /// A class renamed.
    Class(ClassVerdict),
}

/// One inbox file, resolved; acknowledge it once applied.
#[derive(Debug)]
pub struct Delivery {
    /// Its verdicts.
    pub items: Vec<Item>,
    /// Verdicts that named no known event or incident (logged, counted, dropped).
    pub unresolved: usize,
    file: PathBuf,
}

/// The inbox folder and the thread that reads it.
pub struct Inbox {
    deliveries: Receiver<Delivery>,
    acks: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// The inbox folder that belongs to the database at `state_path`.
pub fn inbox_dir(state_path: &Path) -> PathBuf {
    state_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("inbox")
}

impl Inbox {
    /// Start reading `dir` (created if missing); event numbers resolve against `store`.
    pub fn start(dir: PathBuf, store: Arc<Store>) -> Result<Inbox, FeedbackError> {
        std::fs::create_dir_all(&dir).map_err(|source| FeedbackError::Io {
            path: dir.clone(),
            source,
        })?;
        let (tx, deliveries) = channel();
        let (acks, ack_rx) = channel();
        // What waits in the inbox is read now, so the first frame applies it.
        let mut in_flight = Vec::new();
        scan(&dir, &store, &tx, &mut in_flight);
        let thread = std::thread::Builder::new()
            .name("tinylcm-inbox".into())
            .spawn(move || watch(&dir, &store, &tx, &ack_rx, in_flight))
            .map_err(|source| FeedbackError::Io {
                path: PathBuf::from("<inbox thread>"),
                source,
            })?;
        Ok(Inbox {
            deliveries,
            acks: Some(acks),
            thread: Some(thread),
        })
    }

    /// The next delivery, if one is waiting (never blocks).
    pub fn try_recv(&self) -> Option<Delivery> {
        self.deliveries.try_recv().ok()
    }

    /// `delivery` was applied and its changes queued to the store: remove its file once
    /// they are durable.
    pub fn ack(&self, delivery: Delivery) {
        if let Some(acks) = &self.acks {
            let _ = acks.send(delivery.file);
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.acks.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The inbox thread: deliver each file once, delete it after its ack and a flush.
fn watch(
    dir: &Path,
    store: &Store,
    tx: &Sender<Delivery>,
    acks: &Receiver<PathBuf>,
    mut in_flight: Vec<PathBuf>,
) {
    loop {
        loop {
            match acks.try_recv() {
                Ok(file) => {
                    if let Err(e) = store.flush() {
                        tracing::warn!(
                            "feedback applied but not yet durable ({e}); keeping {}",
                            file.display()
                        );
                        continue;
                    }
                    if let Err(e) = std::fs::remove_file(&file) {
                        tracing::warn!("cannot remove applied feedback {}: {e}", file.display());
                    }
                    in_flight.retain(|f| f != &file);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if !scan(dir, store, tx, &mut in_flight) {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Deliver every file in `dir` not yet in flight; false when nobody listens any more.
fn scan(dir: &Path, store: &Store, tx: &Sender<Delivery>, in_flight: &mut Vec<PathBuf>) -> bool {
    for file in pending_files(dir) {
        if in_flight.contains(&file) {
            continue;
        }
        let delivery = match read(&file, store) {
            Ok(d) => d,
            Err(e) => {
                let rejected = dir.join("rejected");
                tracing::warn!("{e}; moving it to {}", rejected.display());
                let _ = std::fs::create_dir_all(&rejected);
                if let Some(name) = file.file_name() {
                    let _ = std::fs::rename(&file, rejected.join(name));
                }
                continue;
            }
        };
        in_flight.push(file);
        if tx.send(delivery).is_err() {
            return false;
        }
    }
    true
}

/// Feedback files in `dir`, oldest name first (names start with a timestamp).
fn pending_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "toml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .take(MAX_ITEMS)
        .collect();
    files.sort();
    files
}

/// Read, validate and resolve one file.
fn read(file: &Path, store: &Store) -> Result<Delivery, FeedbackError> {
    let io = |source| FeedbackError::Io {
        path: file.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(file).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(FeedbackError::Invalid {
            path: file.to_path_buf(),
            reason: format!("{size} bytes; feedback files are at most {MAX_FILE_BYTES}"),
        });
    }
    let text = std::fs::read_to_string(file).map_err(io)?;
    let parsed = FeedbackFile::parse(file, &text)?;
    let mut items = Vec::new();
    let mut unresolved = 0;
    for d in &parsed.drift {
        let events = drift_events(store, d);
        if events.is_empty() {
            tracing::warn!(incident = ?d.incident, event = ?d.event, "feedback names no drift event in the log");
            unresolved += 1;
        }
        items.extend(events.into_iter().map(|event| Item::Drift {
            event,
            verdict: d.verdict,
        }));
    }
    items.extend(parsed.sample.into_iter().map(Item::Sample));
    items.extend(parsed.class.into_iter().map(Item::Class));
    Ok(Delivery {
        items,
        unresolved,
        file: file.to_path_buf(),
    })
}

/// The drift events a verdict names, from the event log (bounded reads).
fn drift_events(store: &Store, verdict: &DriftVerdict) -> Vec<DriftEvent> {
    if let Some(seq) = verdict.event {
        return match store.events_after::<RuntimeEvent>(seq.saturating_sub(1), 1) {
            Ok(found) => found
                .into_iter()
                .filter(|(s, _)| *s == seq)
                .filter_map(|(_, e)| match e.kind {
                    EventKind::Drift { event, .. } => Some(event),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::warn!("cannot read event {seq}: {e}");
                Vec::new()
            }
        };
    }
    let Some(incident) = verdict.incident else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let page = match store.events_after::<RuntimeEvent>(after, MAX_EVENTS_PER_READ) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot read the event log: {e}");
                break;
            }
        };
        let Some(last) = page.last().map(|(s, _)| *s) else {
            break;
        };
        for (_, e) in page {
            if let EventKind::Drift { incident: i, event } = e.kind {
                if i == incident && found.len() < MAX_ITEMS {
                    found.push(event);
                }
            }
        }
        after = last;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_and_bad_ones_say_why() {
        let p = Path::new("f.toml");
        let f = FeedbackFile::parse(
            p,
            "[[drift]]\nincident = 3\nverdict = \"false-alarm\"\n[[sample]]\nid = 4\nlabel = \"star\"\n",
        )
        .unwrap();
        assert_eq!(f.drift[0].incident, Some(3));
        assert_eq!(f.sample[0].label.as_deref(), Some("star"));
        for (text, needle) in [
            (
                "[[drift]]\nverdict = \"confirmed\"\n",
                "incident or an event",
            ),
            (
                "[[drift]]\nincident = 1\nevent = 2\nverdict = \"confirmed\"\n",
                "incident or an event",
            ),
            ("[[sample]]\nid = 1\n", "label or reject"),
            (
                "[[sample]]\nid = 1\nlabel = \"a\"\nreject = true\n",
                "label or reject",
            ),
            ("[[drift]]\nincident = 1\nverdict = \"maybe\"\n", "maybe"),
            ("[[oops]]\n", "oops"),
        ] {
            let err = FeedbackFile::parse(p, text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn submits_in_the_same_millisecond_get_distinct_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = FeedbackFile {
            class: vec![ClassVerdict {
                from: "new-1".into(),
                to: "kite".into(),
            }],
            ..FeedbackFile::default()
        };
        let paths: std::collections::BTreeSet<_> =
            (0..50).map(|_| file.submit(dir.path()).unwrap()).collect();
        assert_eq!(paths.len(), 50);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 50);
    }

    #[test]
    fn submit_writes_a_file_the_inbox_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = FeedbackFile {
            sample: vec![SampleVerdict {
                id: 9,
                label: None,
                reject: true,
            }],
            ..FeedbackFile::default()
        };
        let path = f.submit(dir.path()).unwrap();
        assert_eq!(pending_files(dir.path()), vec![path.clone()]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(FeedbackFile::parse(&path, &text).unwrap(), f);
    }
}
