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
//! `max-threshold-factor`, and a label applied through carried features teaches one sample).
//!
//! Verdicts that came from sphere-lite carry their feedback item ids ([`SourceItems`]). What
//! became of each (applied, or refused with the device's reason: [`Outcome`]) is written, once
//! durable, as a small JSON file of [`FeedbackResult`]s into `inbox/results/`, which the sync
//! client reports to sphere-lite ([`pending_results`], [`remove_results`]).
//!
//! A label for a quarantined sample that has left the quarantine (evicted or expired) still
//! applies when the sync client kept a copy of the features it sent with the sample's drift
//! event ([`crate::quarantine::review`]): the KNN learns the label from those features.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use tinylcm_protocol::api::{FeedbackOutcome, FeedbackResult};

use super::event::{EventKind, RuntimeEvent};
use crate::drift::DriftEvent;
use crate::knn::Knn;
use crate::quarantine::{Quarantine, Status};
use crate::state::{Batch, MAX_EVENTS_PER_READ, Store};

/// Files this process submitted, for unique names.
static SUBMITTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How often the inbox folder is looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// The file format, its bounds and its parser are the protocol crate's: the verdicts come
/// from sphere-lite unchanged, and are fuzzed there.
pub use tinylcm_protocol::feedback_file::{
    ClassVerdict, DriftVerdict, FeedbackFile, InvalidFeedback, MAX_FILE_BYTES, MAX_ITEMS,
    SampleVerdict, SourceItems, Verdict,
};

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

impl From<InvalidFeedback> for FeedbackError {
    fn from(e: InvalidFeedback) -> Self {
        FeedbackError::Invalid {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// Writing a [`FeedbackFile`] into the inbox (a trait: the type is the protocol crate's).
pub trait Submit {
    /// Write it into `inbox` atomically (a new, unique file) and return its path.
    fn submit(&self, inbox: &Path) -> Result<PathBuf, FeedbackError>;
}

impl Submit for FeedbackFile {
    fn submit(&self, inbox: &Path) -> Result<PathBuf, FeedbackError> {
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
    Sample {
        /// The verdict.
        verdict: SampleVerdict,
        /// The features the sample's drift event carried to sphere-lite, when the sync client
        /// kept a copy ([`crate::quarantine::review`]): what a label applies through when the
        /// entry has left the quarantine.
        carried: Option<Vec<f32>>,
    },
    /// A class renamed.
    Class(ClassVerdict),
}

/// What became of one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; how, when that is worth telling (e.g. through carried features).
    Applied(Option<String>),
    /// Not applied: why.
    Refused(String),
}

impl Outcome {
    /// This outcome as the result of sphere-lite feedback item `id`, at `unix_ms`.
    pub fn result(&self, id: u64, unix_ms: u64) -> FeedbackResult {
        match self {
            Outcome::Applied(how) => {
                FeedbackResult::new(id, FeedbackOutcome::Applied, how.as_deref(), unix_ms)
            }
            Outcome::Refused(why) => {
                FeedbackResult::new(id, FeedbackOutcome::Refused, Some(why), unix_ms)
            }
        }
    }
}

/// One inbox file, resolved; acknowledge it once applied.
#[derive(Debug)]
pub struct Delivery {
    /// Its verdicts.
    pub items: Vec<Item>,
    /// Verdicts that named no known event or incident (logged, counted, dropped).
    pub unresolved: usize,
    /// The sphere-lite feedback item of each of `items` (same length), if any.
    sources: Vec<Option<u64>>,
    /// Outcomes per sphere-lite item so far: a refusal of any of an item's verdicts (an
    /// incident verdict resolves to several events) stands for the item.
    outcomes: Vec<(u64, Outcome)>,
    file: PathBuf,
}

impl Delivery {
    /// Records what became of `items[index]` (reported to sphere-lite when it came from there).
    pub fn record(&mut self, index: usize, outcome: Outcome) {
        if let Some(Some(id)) = self.sources.get(index).copied() {
            self.note(id, outcome);
        }
    }

    fn note(&mut self, id: u64, outcome: Outcome) {
        match self.outcomes.iter_mut().find(|(i, _)| *i == id) {
            Some((_, o @ Outcome::Applied(_))) => {
                if matches!(outcome, Outcome::Refused(_)) {
                    *o = outcome;
                }
            }
            Some(_) => {}
            None => self.outcomes.push((id, outcome)),
        }
    }

    /// The results to report for the sphere-lite items of this delivery.
    pub fn results(&self, unix_ms: u64) -> Vec<FeedbackResult> {
        self.outcomes
            .iter()
            .map(|(id, o)| o.result(*id, unix_ms))
            .collect()
    }
}

/// The inbox folder and the thread that reads it.
pub struct Inbox {
    deliveries: Receiver<Delivery>,
    acks: Option<Sender<(PathBuf, Vec<FeedbackResult>)>>,
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
    /// they are durable (after writing the results of its sphere-lite items).
    pub fn ack(&self, delivery: Delivery) {
        if let Some(acks) = &self.acks {
            let results = delivery.results(crate::utc::now_unix_ms());
            let _ = acks.send((delivery.file, results));
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
    acks: &Receiver<(PathBuf, Vec<FeedbackResult>)>,
    mut in_flight: Vec<PathBuf>,
) {
    loop {
        loop {
            match acks.try_recv() {
                Ok((file, results)) => {
                    if let Err(e) = store.flush() {
                        tracing::warn!(
                            "feedback applied but not yet durable ({e}); keeping {}",
                            file.display()
                        );
                        continue;
                    }
                    // Before the file goes: a crash in between applies it again and reports
                    // twice, which sphere-lite takes (the first result stands).
                    if let Err(e) = write_results(dir, &results) {
                        tracing::warn!("cannot keep feedback results for sphere-lite: {e}");
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
    let source = |ids: &[u64], i: usize| ids.get(i).copied();
    let mut delivery = Delivery {
        items: Vec::new(),
        unresolved: 0,
        sources: Vec::new(),
        outcomes: Vec::new(),
        file: file.to_path_buf(),
    };
    for (i, d) in parsed.drift.iter().enumerate() {
        let events = drift_events(store, d);
        let src = source(&parsed.items.drift, i);
        if events.is_empty() {
            tracing::warn!(incident = ?d.incident, event = ?d.event, "feedback names no drift event in the log");
            delivery.unresolved += 1;
            if let Some(id) = src {
                let what = match (d.event, d.incident) {
                    (Some(e), _) => format!("event {e}"),
                    (None, Some(n)) => format!("incident {n}"),
                    (None, None) => "nothing".into(),
                };
                delivery.note(
                    id,
                    Outcome::Refused(format!("no drift {what} in the device's event log")),
                );
            }
        }
        for event in events {
            delivery.items.push(Item::Drift {
                event,
                verdict: d.verdict,
            });
            delivery.sources.push(src);
        }
    }
    // A label is carried through the features sent with the drift event when the entry is
    // gone by the time it is applied.
    let labelled: Vec<u64> = parsed
        .sample
        .iter()
        .filter(|s| s.label.is_some())
        .map(|s| s.id)
        .collect();
    let mut carried = crate::quarantine::review::carried(store, &labelled);
    for (i, verdict) in parsed.sample.into_iter().enumerate() {
        let carried = carried.remove(&verdict.id);
        delivery.items.push(Item::Sample { verdict, carried });
        delivery.sources.push(source(&parsed.items.sample, i));
    }
    for (i, c) in parsed.class.into_iter().enumerate() {
        delivery.items.push(Item::Class(c));
        delivery.sources.push(source(&parsed.items.class, i));
    }
    Ok(delivery)
}

/// What applying a sample verdict did: its outcome, and the event to log when it changed
/// something.
#[derive(Debug)]
pub struct SampleApplied {
    /// Applied or refused, and why.
    pub outcome: Outcome,
    /// `EventKind::SampleFeedback` when the verdict changed something.
    pub event: Option<EventKind>,
}

/// Applies a human's verdict on quarantined sample `verdict.id`: a label is learnt by the KNN
/// and the entry becomes validated; a rejection rejects it. When the entry has left the
/// quarantine, a label applies through `carried` (the features its drift event carried), and
/// a rejection has nothing left to do. Changes are queued into `batch`.
pub fn apply_sample(
    verdict: &SampleVerdict,
    carried: Option<&[f32]>,
    quarantine: Option<&mut Quarantine>,
    knn: Option<&mut Knn>,
    now_ms: u64,
    batch: &mut Batch,
) -> SampleApplied {
    let id = verdict.id;
    let Some(q) = quarantine.filter(|q| q.get(id).is_some()) else {
        return apply_gone(verdict, carried, knn, now_ms);
    };
    let Some(entry) = q.get(id) else {
        return apply_gone(verdict, carried, knn, now_ms);
    };
    let status = match &verdict.label {
        Some(label) => Status::Validated {
            label: label.clone(),
        },
        None => Status::Rejected,
    };
    // A verdict delivered twice (its file outlived a power cut) must not teach the KNN the
    // same sample twice.
    if entry.status == status {
        return SampleApplied {
            outcome: Outcome::Applied(None),
            event: None,
        };
    }
    if !entry.status.may_become(&status) {
        let why = format!(
            "quarantine entry {id} is {} already",
            entry.status.kind().name()
        );
        tracing::warn!(sample = id, "{why}; the verdict is not applied");
        return SampleApplied {
            outcome: Outcome::Refused(why),
            event: None,
        };
    }
    let mut learnt = false;
    let mut outcome = Outcome::Applied(None);
    if let Some(label) = &verdict.label {
        match knn {
            Some(knn) => match knn.add_named(label, &entry.features, now_ms) {
                Ok(_) => learnt = true,
                Err(e) => {
                    tracing::warn!(sample = id, "the KNN cannot learn it: {e}");
                    outcome = Outcome::Refused(format!("the KNN cannot learn it: {e}"));
                }
            },
            None => outcome = Outcome::Refused("the KNN is off on this device".into()),
        }
    }
    if let Err(e) = q.set_status(id, status, batch) {
        tracing::warn!(sample = id, "{e}");
        outcome = Outcome::Refused(e.to_string());
    }
    SampleApplied {
        outcome,
        event: Some(EventKind::SampleFeedback {
            id,
            label: verdict.label.clone(),
            learnt,
        }),
    }
}

/// A sample verdict for an entry that is not in the quarantine (evicted, expired, or the
/// quarantine is off).
fn apply_gone(
    verdict: &SampleVerdict,
    carried: Option<&[f32]>,
    knn: Option<&mut Knn>,
    now_ms: u64,
) -> SampleApplied {
    let id = verdict.id;
    let refused = |why: String| {
        tracing::warn!(sample = id, "{why}");
        SampleApplied {
            outcome: Outcome::Refused(why),
            event: None,
        }
    };
    let Some(label) = &verdict.label else {
        return SampleApplied {
            outcome: Outcome::Applied(Some(format!(
                "sample {id} had left the quarantine already; nothing to reject"
            ))),
            event: None,
        };
    };
    let Some(features) = carried else {
        return refused(format!(
            "sample {id} has left the quarantine (evicted or expired) and no features of it \
             were kept"
        ));
    };
    let Some(knn) = knn else {
        return refused("the KNN is off on this device".into());
    };
    match knn.add_named(label, features, now_ms) {
        Ok(_) => {
            tracing::info!(
                sample = id,
                label = %label,
                "sample verdict applied through the features its drift event carried (the \
                 sample had left the quarantine)"
            );
            SampleApplied {
                outcome: Outcome::Applied(Some(format!(
                    "learnt from the features the drift event carried (sample {id} had left \
                     the quarantine)"
                ))),
                event: Some(EventKind::SampleFeedback {
                    id,
                    label: Some(label.clone()),
                    learnt: true,
                }),
            }
        }
        Err(e) => refused(format!(
            "the KNN cannot learn the features the drift event carried: {e}"
        )),
    }
}

/// Folder of result files inside the inbox.
pub fn results_dir(inbox: &Path) -> PathBuf {
    inbox.join("results")
}

/// Most result files kept (the oldest are dropped beyond, logged): the results of a server
/// that never takes them must not fill the disk.
pub const MAX_RESULT_FILES: usize = 256;

/// Writes `results` (if any) as a new file in `inbox`'s results folder, atomically, and drops
/// the oldest files beyond [`MAX_RESULT_FILES`].
pub fn write_results(inbox: &Path, results: &[FeedbackResult]) -> Result<(), FeedbackError> {
    if results.is_empty() {
        return Ok(());
    }
    let dir = results_dir(inbox);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FeedbackError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let stamp = crate::utc::now_unix_ms();
    let seq = SUBMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(
        "results-{stamp}-{}-{seq:08}.json",
        std::process::id()
    ));
    let json = serde_json::to_vec(results).map_err(|e| FeedbackError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    crate::files::write_atomic(&path, &json, crate::files::Durability::Synced)
        .map_err(io(&path))?;
    let files = result_files(&dir);
    let over = files.len().saturating_sub(MAX_RESULT_FILES);
    for old in &files[..over] {
        tracing::warn!(
            "feedback results {} dropped unreported: more than {MAX_RESULT_FILES} wait",
            old.display()
        );
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// Largest result file read.
const MAX_RESULT_FILE_BYTES: u64 = 256 << 10;

fn result_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("results-"))
        })
        .collect();
    files.sort();
    files
}

/// The result files waiting in `inbox`, oldest first, with their results (at most `max`
/// files). A file that cannot be read as results is removed (logged): it would block nothing
/// but would be retried for ever.
pub fn pending_results(inbox: &Path, max: usize) -> Vec<(PathBuf, Vec<FeedbackResult>)> {
    let mut out = Vec::new();
    for path in result_files(&results_dir(inbox)).into_iter().take(max) {
        let read = std::fs::metadata(&path)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.len() > MAX_RESULT_FILE_BYTES {
                    Err(format!("{} bytes", m.len()))
                } else {
                    std::fs::read(&path).map_err(|e| e.to_string())
                }
            })
            .and_then(|b| {
                serde_json::from_slice::<Vec<FeedbackResult>>(&b).map_err(|e| e.to_string())
            });
        match read {
            Ok(results) => out.push((path, results)),
            Err(e) => {
                tracing::warn!(
                    "feedback results {} unreadable ({e}); removed",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

/// Removes a result file once reported.
pub fn remove_results(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(
            "cannot remove reported feedback results {}: {e}",
            path.display()
        );
    }
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
