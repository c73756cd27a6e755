//! What goes into a package: everything new since the cursors, built once with
//! [`PackageBuilder`] under the package size bound.
//!
//! * **Drift events** from the event log (`EventKind::Drift`) as a `drift-events` member of
//!   [`DriftEventReport`]s, each with the quarantine thumbnails of its triggering frame as
//!   `sample` members named `samples/<20-digit quarantine id>.jpg` (the server maps that name
//!   to a quarantine id, so a validation with a label comes back as a sample verdict) and the
//!   entry's feature vector as the embedding. The features of every sample sent are also
//!   returned ([`Collected::review`]) for the client to keep
//!   ([`crate::quarantine::review`]): a label that comes back after the entry left the
//!   quarantine applies through them.
//!   Each report carries the class the device predicted for that frame and its top-k, from
//!   the `EventKind::DriftSample` entry the autonomy layer writes just before the onsets.
//! * **Learning events** from the same log (adaptation rounds kept or rolled back with the
//!   guard's reason, pseudo-labelled clusters and proposed classes with their member counts,
//!   closed incidents, class renames) as [`LEARNING_MEMBER`], a list of [`LearningReport`]s
//!   (kind `other`, so an older server stores it without refusing the package).
//! * **Metrics** ([`super::metrics`]) when `status.json` was rewritten since the last package.
//! * **Logs** written since the last package ([`super::logs`]).
//! * **Snapshot metadata** when the snapshot list changed.
//! * **Prediction samples** waiting in the [`PredictionSampler`].
//!
//! The cursors returned cover exactly what is in the package: what did not fit stays for the
//! next one.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tinylcm_protocol::api::{DriftEventReport, MAX_SAMPLES_PER_EVENT};
use tinylcm_protocol::datahub::{MAX_LOG_FILE_BYTES, PredictionSample, valid_embedding};
use tinylcm_protocol::learning::{ClassScore, LEARNING_MEMBER, LearningEvent, LearningReport};
use tinylcm_protocol::package::{FileKind, Limits, PackageBuilder, PackageError};

use super::error::SyncError;
use super::host::ModelIdentity;
use super::logs;
use super::metrics::metrics_json;
use super::outbox::{Cursors, NewPackage, Priority, RecordHeader};
use super::predictions::{PendingSample, PredictionSampler};
use super::status::SyncStatusView;
use crate::autonomy::{EventKind, RuntimeEvent};
use crate::quarantine::review::ReviewCopy;
use crate::quarantine::{Entry, thumbnail_name};
use crate::state::{MAX_QUARANTINE_PER_READ, Snapshots, Store};
use crate::status::StatusReport;

/// Most events looked at per package.
pub const MAX_EVENTS_PER_PACKAGE: usize = 500;
/// Most quarantine entries searched for a drift event's samples.
const MAX_QUARANTINE_SCAN: usize = 4096;
/// Largest thumbnail attached.
const MAX_THUMBNAIL_BYTES: u64 = 256 << 10;
/// Most prediction samples per package (the server's bound).
const MAX_PREDICTIONS: usize = tinylcm_protocol::datahub::MAX_PREDICTIONS_PER_PACKAGE;

/// Where the data comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The service's `status.json`, if it writes one.
    pub status_file: Option<PathBuf>,
    /// The quarantine thumbnail folder, if thumbnails are on.
    pub thumbnail_dir: Option<PathBuf>,
    /// The snapshot folder.
    pub snapshots_dir: Option<PathBuf>,
    /// The log folder ([`logs::log_dir`]), if logs are shipped.
    pub log_dir: Option<PathBuf>,
}

/// A collection's result.
#[derive(Debug)]
pub struct Collected {
    /// The package, if anything was new.
    pub package: Option<NewPackage>,
    /// The cursors after it.
    pub cursors: Cursors,
    /// Whether the cursors moved (then they must be stored even without a package).
    pub moved: bool,
    /// Whether log lines were lost to rotation before they were packaged.
    pub logs_lost: bool,
    /// Whether more events wait than fitted (build the next package soon).
    pub more: bool,
    /// The features of the quarantined samples sent with drift events in this package, to
    /// keep once it is queued.
    pub review: Vec<ReviewCopy>,
}

/// TAR bytes a member of `len` bytes takes.
fn tar_cost(len: u64) -> u64 {
    512 + len.div_ceil(512) * 512
}

/// A new random package id (32 hex digits).
pub fn new_package_id() -> Result<String, SyncError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| SyncError::Http(format!("no randomness: {e}")))?;
    Ok(tinylcm_protocol::package::hex(&b))
}

#[derive(Serialize)]
struct SnapshotMeta<'a> {
    id: &'a str,
    bytes: u64,
    schema_version: u32,
    created_unix_ms: u64,
}

/// Builds the next package for `device_id` from everything after `cursors`.
#[allow(clippy::too_many_arguments)]
pub fn collect(
    store: &Store,
    sources: &Sources,
    device_id: &str,
    cursors: &Cursors,
    max_bytes: u64,
    sync: &SyncStatusView,
    model: Option<&ModelIdentity>,
    predictions: Option<&PredictionSampler>,
) -> Result<Collected, SyncError> {
    let now = crate::utc::now_unix_ms();
    let limits = Limits {
        max_package_bytes: max_bytes,
        ..Limits::default()
    };
    let mut builder = PackageBuilder::new(new_package_id()?, device_id, now)?.with_limits(limits);
    let mut next = cursors.clone();
    // Room kept for the manifest and the end marker.
    let mut budget = max_bytes.saturating_sub(64 << 10);
    let mut drift_events = 0u32;
    let mut members = 0usize;

    // Drift events first: they matter most; at most half the package, so routine data
    // always gets through too.
    let raw = store.events_after_raw(cursors.events_after, MAX_EVENTS_PER_PACKAGE)?;
    let mut more = raw.len() == MAX_EVENTS_PER_PACKAGE;
    let mut reports = Vec::new();
    let mut samples: Vec<(String, Vec<u8>)> = Vec::new();
    let mut review = Vec::new();
    let drift_budget = budget / 2;
    let mut drift_cost = 0u64;
    let mut learning = Vec::new();
    if !raw.is_empty() {
        let by_sample = quarantine_by_sample(store);
        let mut taken = HashSet::new();
        // The prediction for the frame of the onsets that follow; the last package may have
        // ended right after it.
        let mut context = previous_drift_sample(store, cursors.events_after);
        for (seq, bytes) in raw {
            let event: RuntimeEvent = match store.decode_event(seq, &bytes) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("sync: skipping event {seq}: {e}");
                    next.events_after = seq;
                    continue;
                }
            };
            let (incident, d) = match event.kind {
                EventKind::Drift { incident, event } => (incident, event),
                EventKind::DriftSample {
                    sample_id,
                    predicted,
                    top_k,
                } => {
                    context = Some(drift_context(sample_id, predicted, top_k));
                    next.events_after = seq;
                    continue;
                }
                other => {
                    if let Some(l) = learning_event(&other) {
                        drift_cost += 300;
                        learning.push(LearningReport {
                            event_seq: seq,
                            epoch: Some(store.epoch().to_owned()),
                            unix_ms: event.unix_ms,
                            event: l,
                        });
                    }
                    next.events_after = seq;
                    continue;
                }
            };
            let (predicted, top_k) = match &context {
                Some((sample, p, t)) if *sample == d.sample_id => (Some(p.clone()), t.clone()),
                _ => (None, Vec::new()),
            };
            let mut report = DriftEventReport {
                event_seq: seq,
                epoch: Some(store.epoch().to_owned()),
                incident,
                detector: d.detector.name().to_string(),
                statistic: finite_or_zero(d.statistic),
                threshold: finite_or_zero(d.threshold),
                magnitude: finite_or_zero(d.magnitude),
                sample_id: d.sample_id,
                unix_ms: event.unix_ms,
                samples: Vec::new(),
                embedding: None,
                predicted,
                top_k,
            };
            let mut cost = 400;
            let mut new_samples = Vec::new();
            let mut copies = Vec::new();
            for (qid, features) in by_sample.get(&d.sample_id).into_iter().flatten() {
                if report.samples.len() >= MAX_SAMPLES_PER_EVENT {
                    break;
                }
                if report.embedding.is_none() && valid_embedding(features) {
                    cost += features.len() as u64 * 12;
                    report.embedding = Some(features.clone());
                }
                let name = format!("samples/{}", thumbnail_name(*qid));
                if taken.contains(&name) {
                    report.samples.push(name);
                    continue;
                }
                let Some(jpeg) = sources
                    .thumbnail_dir
                    .as_ref()
                    .and_then(|d| read_thumbnail(&d.join(thumbnail_name(*qid))))
                else {
                    continue;
                };
                cost += tar_cost(jpeg.len() as u64);
                report.samples.push(name.clone());
                new_samples.push((name, jpeg));
                copies.push(ReviewCopy {
                    id: *qid,
                    features: features.clone(),
                });
            }
            if drift_cost + cost > drift_budget && !reports.is_empty() {
                more = true;
                break;
            }
            drift_cost += cost;
            for (name, _) in &new_samples {
                taken.insert(name.clone());
            }
            samples.extend(new_samples);
            review.extend(copies);
            reports.push(report);
            next.events_after = seq;
        }
    }
    if !reports.is_empty() {
        for (name, jpeg) in samples {
            builder.add(name, FileKind::Sample, jpeg)?;
            members += 1;
        }
        let json = serde_json::to_vec(&reports).map_err(|e| SyncError::Config(e.to_string()))?;
        builder.add("drift-events.json", FileKind::DriftEvents, json)?;
        members += 1;
        drift_events = reports.len() as u32;
    }
    if !learning.is_empty() {
        // The cursor has moved past these events already: they go in whatever the budget.
        let json = serde_json::to_vec(&learning).map_err(|e| SyncError::Config(e.to_string()))?;
        builder.add(LEARNING_MEMBER, FileKind::Other, json)?;
        members += 1;
    }
    budget = budget.saturating_sub(drift_cost);

    // Metrics when the status was rewritten since the last package.
    let report = sources
        .status_file
        .as_ref()
        .and_then(|p| StatusReport::read(p).ok());
    let fresh_status = report
        .as_ref()
        .is_some_and(|r| r.written_unix_ms > cursors.metrics_unix_ms);
    if fresh_status {
        let refused = super::pull::refusal_to_report(store);
        let v = metrics_json(report.as_ref(), sync, model, refused.as_ref());
        let json = serde_json::to_vec(&v).map_err(|e| SyncError::Config(e.to_string()))?;
        if try_add(
            &mut builder,
            "metrics.json",
            FileKind::Metrics,
            json,
            &mut budget,
        )? {
            members += 1;
            next.metrics_unix_ms = report.as_ref().map_or(0, |r| r.written_unix_ms);
        }
    }

    // Logs written since the last package.
    let mut logs_lost = false;
    if let Some(dir) = &sources.log_dir {
        let room = (budget.saturating_sub(1024) as usize).min(MAX_LOG_FILE_BYTES);
        match logs::read_new(dir, cursors.log_generation, cursors.log_offset, room) {
            Ok(lines) => {
                logs_lost = lines.lost;
                let moved = (lines.generation, lines.offset)
                    != (cursors.log_generation, cursors.log_offset);
                if lines.bytes.is_empty() {
                    if moved {
                        next.log_generation = lines.generation;
                        next.log_offset = lines.offset;
                    }
                } else if try_add(
                    &mut builder,
                    format!("logs/{now}.jsonl"),
                    FileKind::Logs,
                    lines.bytes,
                    &mut budget,
                )? {
                    members += 1;
                    next.log_generation = lines.generation;
                    next.log_offset = lines.offset;
                }
            }
            Err(e) => tracing::debug!("sync: reading logs in {}: {e}", dir.display()),
        }
    }

    // Snapshot metadata when the list changed.
    if let Some(dir) = &sources.snapshots_dir {
        if let Ok(list) = Snapshots::new(dir.clone(), 1).and_then(|s| s.list()) {
            let meta: Vec<SnapshotMeta<'_>> = list
                .iter()
                .map(|s| SnapshotMeta {
                    id: &s.id,
                    bytes: s.bytes,
                    schema_version: s.schema_version,
                    created_unix_ms: s.created_unix_ms,
                })
                .collect();
            let json = serde_json::to_vec(&meta).map_err(|e| SyncError::Config(e.to_string()))?;
            let digest = tinylcm_protocol::package::hex(&Sha256::digest(&json));
            if digest != cursors.snapshots_digest
                && try_add(
                    &mut builder,
                    "snapshots.json",
                    FileKind::Snapshot,
                    json,
                    &mut budget,
                )?
            {
                members += 1;
                next.snapshots_digest = digest;
            }
        }
    }

    // Prediction samples.
    if let Some(sampler) = predictions {
        let pending = sampler.take();
        let mut left: Vec<PendingSample> = Vec::new();
        let mut listed = Vec::new();
        for (i, s) in pending.into_iter().enumerate() {
            let file = format!("predictions/{}-{i}.jpg", s.unix_ms);
            let cost = tar_cost(s.jpeg.len() as u64) + 200;
            if listed.len() >= MAX_PREDICTIONS || cost > budget.saturating_sub(8 << 10) {
                left.push(s);
                continue;
            }
            builder.add(file.clone(), FileKind::Prediction, s.jpeg.clone())?;
            budget -= cost;
            members += 1;
            listed.push(PredictionSample {
                file,
                class: s.class.clone(),
                confidence: s.confidence,
                unix_ms: s.unix_ms,
            });
        }
        if !listed.is_empty() {
            let json = serde_json::to_vec(&listed).map_err(|e| SyncError::Config(e.to_string()))?;
            builder.add("predictions/predictions.json", FileKind::Prediction, json)?;
        }
        if !left.is_empty() {
            sampler.put_back(left);
        }
    }

    let moved = next != *cursors;
    let package = if members > 0 {
        let header = RecordHeader {
            version: 1,
            package_id: builder.manifest().package_id.clone(),
            created_unix_ms: now,
            priority: if drift_events > 0 {
                Priority::Drift
            } else {
                Priority::Routine
            },
            drift_events,
        };
        Some(NewPackage {
            header,
            tar: builder.finish()?,
        })
    } else {
        None
    };
    Ok(Collected {
        package,
        cursors: next,
        moved,
        logs_lost,
        more,
        review,
    })
}

/// Adds a member if it fits the budget; `false` when it does not (it waits for the next
/// package).
fn try_add(
    builder: &mut PackageBuilder,
    name: impl Into<String>,
    kind: FileKind,
    bytes: Vec<u8>,
    budget: &mut u64,
) -> Result<bool, SyncError> {
    let cost = tar_cost(bytes.len() as u64);
    if cost > *budget {
        return Ok(false);
    }
    match builder.add(name, kind, bytes) {
        Ok(_) => {
            *budget -= cost;
            Ok(true)
        }
        Err(e @ (PackageError::PackageTooLarge { .. } | PackageError::MemberTooLarge { .. })) => {
            tracing::debug!("sync: a member waits for the next package: {e}");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// A drift frame's prediction as the report carries it: names bounded as the server
/// requires, scores within 0..=1.
fn drift_context(
    sample_id: u64,
    predicted: String,
    top_k: Vec<(String, f32)>,
) -> (u64, String, Vec<ClassScore>) {
    let top = top_k
        .into_iter()
        .filter(|(_, s)| s.is_finite())
        .take(tinylcm_protocol::learning::MAX_TOP_K)
        .map(|(class, score)| ClassScore {
            class,
            score: score.clamp(0.0, 1.0),
        })
        .collect();
    (sample_id, predicted, top)
}

/// The drift frame's prediction logged as event `seq` (the last one the previous package
/// covered), if that is what it was.
fn previous_drift_sample(store: &Store, seq: u64) -> Option<(u64, String, Vec<ClassScore>)> {
    let (found, bytes) = store
        .events_after_raw(seq.checked_sub(1)?, 1)
        .ok()?
        .into_iter()
        .next()?;
    match store.decode_event::<RuntimeEvent>(found, &bytes).ok()?.kind {
        EventKind::DriftSample {
            sample_id,
            predicted,
            top_k,
        } if found == seq => Some(drift_context(sample_id, predicted, top_k)),
        _ => None,
    }
}

/// What an entry of the event log says about learning, if anything.
fn learning_event(kind: &EventKind) -> Option<LearningEvent> {
    use crate::adapt::EventKind as A;
    let confidence = |m: &crate::adapt::ProxyMetrics| {
        (m.frames > 0 && m.mean_confidence.is_finite()).then_some(m.mean_confidence)
    };
    Some(match kind {
        EventKind::Adaptation { event, .. } => match event.kind {
            A::PseudoLabel => LearningEvent::PseudoLabel {
                round: event.id,
                class: event.label.clone()?,
                members: event.member_count as u64,
            },
            A::NewClass => LearningEvent::NewClass {
                round: event.id,
                class: event.label.clone()?,
                members: event.member_count as u64,
            },
            A::Kept => LearningEvent::RoundKept {
                round: event.id,
                added: event.added.len() as u64,
                confidence_before: confidence(&event.before),
                confidence_after: event.after.as_ref().and_then(confidence),
            },
            A::Rollback => LearningEvent::RoundRolledBack {
                round: event.id,
                reason: event
                    .reason
                    .and_then(|r| serde_json::to_value(r).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into()),
                added: event.added.len() as u64,
                confidence_before: confidence(&event.before),
                confidence_after: event.after.as_ref().and_then(confidence),
            },
        },
        EventKind::IncidentClosed {
            incident,
            detectors,
            ..
        } => LearningEvent::IncidentClosed {
            incident: *incident,
            detectors: detectors
                .iter()
                .take(tinylcm_protocol::learning::MAX_INCIDENT_DETECTORS)
                .cloned()
                .collect(),
        },
        EventKind::ClassRenamed { from, to, moved } => LearningEvent::ClassRenamed {
            from: from.clone(),
            to: to.clone(),
            moved: *moved as u64,
        },
        _ => return None,
    })
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

fn read_thumbnail(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    f.take(MAX_THUMBNAIL_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= MAX_THUMBNAIL_BYTES && bytes.starts_with(&[0xff, 0xd8])).then_some(bytes)
}

/// Quarantine entries by the frame they hold (newest entries searched first, bounded), with
/// their feature vectors. Damaged entries are skipped.
fn quarantine_by_sample(store: &Store) -> BTreeMap<u64, Vec<(u64, Vec<f32>)>> {
    let mut out: BTreeMap<u64, Vec<(u64, Vec<f32>)>> = BTreeMap::new();
    let mut after = 0;
    let mut seen = 0;
    while seen < MAX_QUARANTINE_SCAN {
        let Ok(page) = store.quarantine_entries_raw(after, MAX_QUARANTINE_PER_READ) else {
            break;
        };
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        seen += page.len();
        for (id, bytes) in page {
            if let Ok(e) = Entry::decode(id, &bytes) {
                out.entry(e.sample).or_default().push((id, e.features));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{DetectorKind, DriftEvent};
    use crate::quarantine::{ENTRY_VERSION, Reason, Status};
    use crate::state::{Batch, DurabilityPolicy};
    use tinylcm_protocol::package::read_package;

    /// `collect` for device "dev" with no sync status, model or prediction sampler.
    fn gather(store: &Store, sources: &Sources, cursors: &Cursors, max_bytes: u64) -> Collected {
        let view = SyncStatusView::default();
        collect(store, sources, "dev", cursors, max_bytes, &view, None, None).unwrap()
    }

    fn drift(sample: u64) -> RuntimeEvent {
        RuntimeEvent {
            unix_ms: 5,
            kind: EventKind::Drift {
                incident: 1,
                event: DriftEvent {
                    detector: DetectorKind::PageHinkleyDistance,
                    statistic: f64::INFINITY,
                    threshold: 1.0,
                    magnitude: 2.0,
                    sample_id: sample,
                    at: sample,
                },
            },
        }
    }

    fn entry(id: u64, sample: u64) -> Entry {
        Entry {
            version: ENTRY_VERSION,
            id,
            created_unix_ms: 1,
            sample,
            reason: Reason::LowConfidence,
            predicted: "a".into(),
            confidence: 0.5,
            knn_distance: None,
            features: vec![0.5; 4],
            status: Status::Pending,
            thumbnail: Some(thumbnail_name(id)),
            review_since_unix_ms: None,
        }
    }

    /// Drift events come with their thumbnails and embedding, and a second collection finds
    /// nothing new.
    #[test]
    fn drift_events_with_samples_and_cursors_that_cover_exactly_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb"), DurabilityPolicy::default()).unwrap();
        let thumbs = dir.path().join("thumbs");
        std::fs::create_dir_all(&thumbs).unwrap();
        std::fs::write(thumbs.join(thumbnail_name(3)), [0xff, 0xd8, 1, 2]).unwrap();
        let mut b = Batch::new();
        b.append_event(&RuntimeEvent {
            unix_ms: 1,
            kind: EventKind::ClassRenamed {
                from: "a".into(),
                to: "b".into(),
                moved: 0,
            },
        })
        .unwrap();
        b.append_event(&drift(40)).unwrap();
        b.put_quarantine(3, &entry(3, 40)).unwrap();
        b.put_quarantine(4, &entry(4, 41)).unwrap();
        store.submit(b).unwrap();
        store.flush().unwrap();
        let sources = Sources {
            thumbnail_dir: Some(thumbs),
            ..Default::default()
        };
        let c = gather(&store, &sources, &Cursors::default(), 1 << 20);
        assert_eq!(c.cursors.events_after, 2);
        assert!(c.moved && !c.more);
        let p = c.package.unwrap();
        assert_eq!(p.header.priority, Priority::Drift);
        assert_eq!(p.header.drift_events, 1);
        let pkg = read_package(&p.tar[..], &Limits::default()).unwrap();
        let names: Vec<&str> = pkg.files.iter().map(|(f, _)| f.name.as_str()).collect();
        // The class rename before the drift event is a learning event.
        assert_eq!(
            names,
            [
                "samples/00000000000000000003.jpg",
                "drift-events.json",
                LEARNING_MEMBER
            ]
        );
        let reports: Vec<DriftEventReport> =
            serde_json::from_slice(pkg.file("drift-events.json").unwrap()).unwrap();
        assert_eq!(reports[0].event_seq, 2);
        // The state database's epoch goes with every event, so the server tells this
        // database's event 2 from the event 2 of a database recreated later.
        assert_eq!(reports[0].epoch.as_deref(), Some(store.epoch()));
        assert_eq!(reports[0].samples, ["samples/00000000000000000003.jpg"]);
        assert_eq!(reports[0].embedding.as_deref(), Some(&[0.5f32; 4][..]));
        // The features sent with the sample are kept for a label that comes back late.
        assert_eq!(c.review.len(), 1);
        assert_eq!(
            (c.review[0].id, &c.review[0].features[..]),
            (3, &[0.5f32; 4][..])
        );
        // A non-finite statistic is sent as 0 (JSON has no infinity).
        assert_eq!(reports[0].statistic, 0.0);

        let again = gather(&store, &sources, &c.cursors, 1 << 20);
        assert!(again.package.is_none() && !again.moved);
    }

    fn adaptation(id: u64, kind: crate::adapt::EventKind, label: Option<&str>) -> RuntimeEvent {
        let mut before = crate::adapt::ProxyMetrics::new(2);
        before.frames = 10;
        before.mean_confidence = 0.8;
        let mut after = before.clone();
        after.mean_confidence = 0.4;
        RuntimeEvent {
            unix_ms: 7,
            kind: EventKind::Adaptation {
                snapshot: None,
                event: Box::new(crate::adapt::AdaptationEvent {
                    id,
                    timestamp: 7,
                    kind,
                    label: label.map(str::to_owned),
                    members: vec![1, 2],
                    member_count: 12,
                    added: vec![],
                    evicted: vec![],
                    reason: matches!(kind, crate::adapt::EventKind::Rollback)
                        .then_some(crate::adapt::RollbackReason::ConfidenceCollapse),
                    before,
                    after: Some(after),
                }),
            },
        }
    }

    fn collect_all(store: &Store) -> tinylcm_protocol::package::Package {
        let c = gather(store, &Sources::default(), &Cursors::default(), 1 << 20);
        read_package(&c.package.unwrap().tar[..], &Limits::default()).unwrap()
    }

    /// Fails before this change: the metrics file never said which release the device
    /// refused. A refusal kept before a restart is in the package built after reopening the
    /// state, read back by the server's own reader with its kind and message; once another
    /// assignment superseded it the file says `null` (no refusal), which the server tells from
    /// an older device's silence.
    #[test]
    fn the_kept_refusal_is_sent_after_a_restart_and_null_once_superseded() {
        use tinylcm_protocol::device_json::refusal::{
            RefusalKind, RefusalReport, ReleaseRefusal, refusal_report_of,
        };
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status.json");
        std::fs::write(
            &status,
            serde_json::to_vec(&crate::status::StatusReport::sample()).unwrap(),
        )
        .unwrap();
        let sources = Sources {
            status_file: Some(status),
            ..Sources::default()
        };
        let refusal = ReleaseRefusal::new(
            "shapes",
            "3",
            &"ab".repeat(32),
            RefusalKind::BelowEpochFloor,
            "release shapes 3 has security epoch 1, below this device's floor 2",
        );
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, DurabilityPolicy::default()).unwrap();
            super::super::pull::keep_refusal(&store, "release-3", &refusal).unwrap();
        }
        let store = Store::open(&path, DurabilityPolicy::default()).unwrap();
        let package = || {
            let c = gather(&store, &sources, &Cursors::default(), 1 << 20);
            read_package(&c.package.unwrap().tar[..], &Limits::default()).unwrap()
        };
        assert_eq!(
            refusal_report_of(&package()),
            RefusalReport::Refused(refusal)
        );
        super::super::pull::forget_refusal_unless(&store, Some("release-4")).unwrap();
        assert_eq!(refusal_report_of(&package()), RefusalReport::NoRefusal);
    }

    /// What the device learnt goes to the server as a learning member the server's parser
    /// reads back: the proposed class with its member count, the rolled-back round with the
    /// guard's reason and confidences, the closed incident and the class rename. Fails before
    /// this change: adaptation events only moved the cursor, nothing was sent.
    #[test]
    fn learning_events_are_sent_and_the_server_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb"), DurabilityPolicy::default()).unwrap();
        let mut b = Batch::new();
        b.append_event(&adaptation(
            3,
            crate::adapt::EventKind::NewClass,
            Some("new-2"),
        ))
        .unwrap();
        b.append_event(&adaptation(3, crate::adapt::EventKind::Rollback, None))
            .unwrap();
        b.append_event(&RuntimeEvent {
            unix_ms: 8,
            kind: EventKind::IncidentClosed {
                incident: 4,
                opened_at: 1,
                closed_at: 9,
                detectors: vec!["adwin".into()],
            },
        })
        .unwrap();
        b.append_event(&RuntimeEvent {
            unix_ms: 9,
            kind: EventKind::ClassRenamed {
                from: "new-2".into(),
                to: "star".into(),
                moved: 5,
            },
        })
        .unwrap();
        store.submit(b).unwrap();
        store.flush().unwrap();
        let pkg = collect_all(&store);
        let parts = tinylcm_protocol::device_json::learning::learning_of(&pkg, 1);
        assert!(parts.problems.is_empty(), "{:?}", parts.problems);
        let events: Vec<_> = parts.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(
            events,
            [
                LearningEvent::NewClass {
                    round: 3,
                    class: "new-2".into(),
                    members: 12
                },
                LearningEvent::RoundRolledBack {
                    round: 3,
                    reason: "confidence-collapse".into(),
                    added: 0,
                    confidence_before: Some(0.8),
                    confidence_after: Some(0.4),
                },
                LearningEvent::IncidentClosed {
                    incident: 4,
                    detectors: vec!["adwin".into()]
                },
                LearningEvent::ClassRenamed {
                    from: "new-2".into(),
                    to: "star".into(),
                    moved: 5
                },
            ]
        );
        assert_eq!(parts.events[0].event_seq, 1);
        assert_eq!(parts.events[0].epoch.as_deref(), Some(store.epoch()));
    }

    /// A drift report carries the prediction the autonomy layer logged for its frame just
    /// before it, also when the previous package ended between the two; a report of another
    /// frame carries none. Fails before this change: reports had no predicted class.
    #[test]
    fn drift_reports_carry_their_frame_prediction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb"), DurabilityPolicy::default()).unwrap();
        let mut b = Batch::new();
        b.append_event(&RuntimeEvent {
            unix_ms: 5,
            kind: EventKind::DriftSample {
                sample_id: 40,
                predicted: "circle".into(),
                top_k: vec![("circle".into(), 0.6), ("square".into(), 1.2)],
            },
        })
        .unwrap();
        b.append_event(&drift(40)).unwrap();
        b.append_event(&drift(41)).unwrap();
        store.submit(b).unwrap();
        store.flush().unwrap();
        let pkg = collect_all(&store);
        let reports: Vec<DriftEventReport> =
            serde_json::from_slice(pkg.file("drift-events.json").unwrap()).unwrap();
        assert_eq!(reports[0].predicted.as_deref(), Some("circle"));
        let top: Vec<(&str, f32)> = reports[0]
            .top_k
            .iter()
            .map(|c| (c.class.as_str(), c.score))
            .collect();
        assert_eq!(top, [("circle", 0.6), ("square", 1.0)]);
        assert_eq!(reports[1].predicted, None);
        assert!(reports[1].top_k.is_empty());

        // The previous package ended right after the prediction.
        let c = gather(
            &store,
            &Sources::default(),
            &Cursors {
                events_after: 1,
                ..Cursors::default()
            },
            1 << 20,
        );
        let pkg = read_package(&c.package.unwrap().tar[..], &Limits::default()).unwrap();
        let reports: Vec<DriftEventReport> =
            serde_json::from_slice(pkg.file("drift-events.json").unwrap()).unwrap();
        assert_eq!(reports[0].predicted.as_deref(), Some("circle"));
    }

    /// More drift than half a package: the rest waits, and the cursor stops before it.
    #[test]
    fn a_full_package_leaves_the_rest_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb"), DurabilityPolicy::default()).unwrap();
        let mut b = Batch::new();
        for i in 0..400 {
            b.append_event(&drift(i)).unwrap();
        }
        store.submit(b).unwrap();
        store.flush().unwrap();
        let c = gather(&store, &Sources::default(), &Cursors::default(), 192 << 10);
        assert!(c.more);
        let first = c.package.unwrap().header.drift_events as u64;
        assert!(first > 0 && first < 400, "{first}");
        assert_eq!(c.cursors.events_after, first);
        let rest = gather(&store, &Sources::default(), &c.cursors, 16 << 20);
        assert_eq!(
            rest.package.unwrap().header.drift_events as u64,
            400 - first
        );
        assert!(!rest.more);
    }
}
