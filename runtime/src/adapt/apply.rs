//! Carrying out a [`Plan`] on the KNN, and the events that record it: the one place where
//! adaptation changes state, kept small so "what changed" is always exactly what is
//! returned (added and evicted sample ids), which is what a rollback and the event log need.
//!
//! The caller snapshots the KNN before [`apply`] (and restores it when the
//! [`Guard`](super::Guard) says so): evictions made room for the representatives and cannot
//! be undone by removing them again.

use serde::{Deserialize, Serialize};

use super::AdaptError;
use super::error::check_vector;
use super::guard::{ProxyMetrics, RollbackReason, Verdict};
use super::plan::{Decision, Plan};
use super::protect::{Protected, Room};
use crate::knn::{Knn, MAX_LABEL_BYTES, MAX_LABELS, SampleId};

/// Most member ids one event lists; the rest is only counted (events stay small).
pub const MAX_EVENT_MEMBERS: usize = 64;

/// What an [`AdaptationEvent`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Representatives added to a known class.
    PseudoLabel,
    /// Representatives added as a new class.
    NewClass,
    /// The guard rolled the adaptation back.
    Rollback,
    /// The guard kept the adaptation.
    Kept,
}

/// One adaptation step, for the event log: per changed cluster one event at apply time,
/// then one verdict event ([`EventKind::Kept`] or [`EventKind::Rollback`]) when the guard
/// has decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptationEvent {
    /// The adaptation (round) id given to [`apply`], shared by all its events.
    pub id: u64,
    /// The caller's timestamp.
    pub timestamp: u64,
    /// What happened.
    pub kind: EventKind,
    /// The class samples went to (cluster events).
    pub label: Option<String>,
    /// Pending sample ids of the cluster's members, at most [`MAX_EVENT_MEMBERS`].
    pub members: Vec<u64>,
    /// Number of members in all.
    pub member_count: usize,
    /// KNN ids of the representatives added (verdict events: of the whole round).
    pub added: Vec<SampleId>,
    /// KNN ids evicted to make room.
    pub evicted: Vec<SampleId>,
    /// Why the round was rolled back (rollback events).
    pub reason: Option<RollbackReason>,
    /// Proxy metrics before the adaptation.
    pub before: ProxyMetrics,
    /// Proxy metrics over the guard window after it (verdict events).
    pub after: Option<ProxyMetrics>,
}

/// One representative added to the KNN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedSample {
    /// Its pending (quarantine) sample id.
    pub sample: u64,
    /// Its id in the KNN.
    pub id: SampleId,
    /// The class it was added to.
    pub label: String,
    /// The sample evicted to make room, if any.
    pub evicted: Option<SampleId>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The adaptation id.
    pub id: u64,
    /// Every representative added, in plan order.
    pub added: Vec<AddedSample>,
    /// One event per changed cluster.
    pub events: Vec<AdaptationEvent>,
    /// The metrics before, as given.
    pub before: ProxyMetrics,
}

impl Applied {
    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }

    /// The event recording the guard's verdict (`None` while it is pending): kind
    /// kept or rollback, every sample added and evicted in the round, before and after.
    pub fn verdict_event(&self, verdict: &Verdict, timestamp: u64) -> Option<AdaptationEvent> {
        let (kind, reason, after) = match verdict {
            Verdict::Pending => return None,
            Verdict::Keep(after) => (EventKind::Kept, None, after),
            Verdict::Rollback { reason, after } => (EventKind::Rollback, Some(*reason), after),
        };
        Some(AdaptationEvent {
            id: self.id,
            timestamp,
            kind,
            label: None,
            members: Vec::new(),
            member_count: 0,
            added: self.added.iter().map(|a| a.id).collect(),
            evicted: self.added.iter().filter_map(|a| a.evicted).collect(),
            reason,
            before: self.before.clone(),
            after: Some(after.clone()),
        })
    }
}

/// Add the representatives of every changing cluster of `plan` to `knn` (with
/// [`Knn::add_named`] and `timestamp`), as adaptation `id`.
///
/// Everything that can be checked is checked before the first sample is added (dimensions,
/// finite values, labels, room in the label table), so these errors leave the KNN
/// unchanged. A planned new class that meanwhile exists in the KNN is
/// [`AdaptError::LabelTaken`]: plan again. After the checks the KNN cannot refuse a sample;
/// should it anyway, the KNN is partly changed and the caller restores its snapshot.
///
/// When the memory is full, the KNN's own eviction policy makes room; see
/// [`apply_keeping`] to keep a protected set instead.
pub fn apply(
    plan: &Plan,
    knn: &mut Knn,
    id: u64,
    timestamp: u64,
    before: &ProxyMetrics,
) -> Result<Applied, AdaptError> {
    apply_keeping(plan, knn, id, timestamp, before, &Protected::default())
}

/// [`apply`], but room in a full memory is made only by removing the oldest unprotected
/// samples: the `protected` ones (the model's original reference samples) stay. When only
/// protected samples are left to remove, the remaining representatives are not added
/// (logged; the round goes on with what fitted).
pub fn apply_keeping(
    plan: &Plan,
    knn: &mut Knn,
    id: u64,
    timestamp: u64,
    before: &ProxyMetrics,
    protected: &Protected,
) -> Result<Applied, AdaptError> {
    if plan.dim != knn.dim() {
        return Err(AdaptError::Plan(format!(
            "planned for {}-d vectors, the KNN holds {}-d vectors",
            plan.dim,
            knn.dim()
        )));
    }
    let mut new_labels: Vec<&str> = Vec::new();
    for c in plan.changes() {
        for r in &c.representatives {
            check_vector(r.sample, knn.dim(), &r.features)?;
        }
        match &c.decision {
            Decision::NewClass { label } => {
                if knn.labels().get(label).is_some() || new_labels.contains(&label.as_str()) {
                    return Err(AdaptError::LabelTaken(label.clone()));
                }
                if label.is_empty() || label.len() > MAX_LABEL_BYTES {
                    return Err(AdaptError::Plan(format!(
                        "label {label:?} needs 1..={MAX_LABEL_BYTES} bytes"
                    )));
                }
                new_labels.push(label);
            }
            Decision::PseudoLabel { label } => {
                if knn.labels().get(label).is_none() && !new_labels.contains(&label.as_str()) {
                    return Err(AdaptError::Plan(format!(
                        "class {label:?} is neither in the KNN nor proposed earlier in the plan"
                    )));
                }
            }
            Decision::Leave { .. } => {}
        }
    }
    if knn.labels().len() + new_labels.len() > MAX_LABELS {
        return Err(AdaptError::Plan(format!(
            "{} new classes do not fit the label table ({} of {MAX_LABELS} used)",
            new_labels.len(),
            knn.labels().len()
        )));
    }

    let mut added = Vec::new();
    let mut events = Vec::new();
    for c in plan.changes() {
        let (kind, label) = match &c.decision {
            Decision::PseudoLabel { label } => (EventKind::PseudoLabel, label),
            Decision::NewClass { label } => (EventKind::NewClass, label),
            Decision::Leave { .. } => continue,
        };
        let first = added.len();
        for r in &c.representatives {
            let made = if protected.is_empty() {
                None
            } else {
                match protected.make_room(knn) {
                    Room::Free => None,
                    Room::Made(removed) => Some(removed),
                    Room::Full => {
                        tracing::warn!(
                            adaptation = id,
                            "the KNN is full of the model's original samples: \
                             raise knn.max-samples to let adaptation add any"
                        );
                        break;
                    }
                }
            };
            let a = knn.add_named(label, &r.features, timestamp)?;
            added.push(AddedSample {
                sample: r.sample,
                id: a.id,
                label: label.clone(),
                evicted: made.or(a.evicted),
            });
        }
        let round = &added[first..];
        tracing::info!(
            adaptation = id,
            kind = ?kind,
            label = %label,
            members = c.members.len(),
            added = round.len(),
            evicted = round.iter().filter(|a| a.evicted.is_some()).count(),
            "adaptation applied to the KNN"
        );
        events.push(AdaptationEvent {
            id,
            timestamp,
            kind,
            label: Some(label.clone()),
            members: c.members.iter().take(MAX_EVENT_MEMBERS).copied().collect(),
            member_count: c.members.len(),
            added: round.iter().map(|a| a.id).collect(),
            evicted: round.iter().filter_map(|a| a.evicted).collect(),
            reason: None,
            before: before.clone(),
            after: None,
        });
    }
    Ok(Applied {
        id,
        added,
        events,
        before: before.clone(),
    })
}
