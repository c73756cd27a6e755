//! Adaptation rounds in the running loop: plan off the inference thread, snapshot, apply,
//! guard, then keep or roll back.
//!
//! ```text
//! idle ──(enough pending quarantine, interval passed)──► planning (worker thread, KNN clone)
//!   ▲                                                        │ plan has changes?
//!   │  no ◄──────────────────────────────────────────────────┤
//!   │                                                        ▼ yes: checkpoint, flush,
//!   │                                                  snapshot, apply, quarantine → adapted
//!   └──── keep / rollback (restore the snapshot) ◄── guarding (guard-frames frames)
//! ```
//!
//! Planning is O(n²) in the quarantine and may take tens of milliseconds on a Pi, so it runs
//! on its own thread on a copy of the KNN; everything that changes state (apply, snapshot,
//! restore) happens on the inference thread, between frames. The snapshot before apply is
//! the only blocking step (it waits for a commit): rounds are rare, at most one per
//! `guard-frames` frames.

use std::thread::JoinHandle;

use std::collections::BTreeMap;

use crate::adapt::{
    self, AdaptError, AdaptationEvent, Applied, Baseline, Decision, Evidence, Guard, Plan,
    Protected, Reference, RollbackReason, StreamShift, Verdict,
};
use crate::knn::{Knn, LabelId};
use crate::quarantine::Status;
use crate::state::Snapshots;

use super::event::{self, EventKind, RuntimeEvent};
use super::{Autonomy, persist};

/// Most quarantined samples one round plans over (the newest).
const MAX_PLANNED: usize = adapt::MAX_POINTS;

/// Frames between the start of planning and carrying the plan out. The plan is taken at
/// exactly this frame (waiting for the worker if it is not done), never "when the thread
/// happens to finish": which frames a round and its guard see must not depend on thread
/// timing, or the same frames learn differently run after run (measured before this rule:
/// noise accuracy after learning 49.0 % in one unpaced run, 62.5 % in the next). Planning
/// 500 samples takes ≈ 15 ms here and a few times that on a Pi Zero 2 W, well under 16
/// frames at 30 fps, so the wait is rare in the field.
pub(crate) const PLAN_LAG_FRAMES: u64 = 16;

/// Where the adaptation loop is.
pub(crate) enum Round {
    /// Waiting for enough quarantined samples.
    Idle,
    /// A worker thread is planning; its plan is taken at frame `due`.
    Planning {
        /// The worker.
        handle: JoinHandle<Result<Plan, AdaptError>>,
        /// The frame at which the plan is carried out (waiting for the worker if need be).
        due: u64,
    },
    /// Applied; the guard watches the frames after it.
    Guarding(Box<Guarded>),
}

/// An applied round under watch.
pub(crate) struct Guarded {
    pub(crate) guard: Guard,
    applied: Applied,
    snapshot: Option<String>,
    members: Vec<u64>,
}

/// Evidence kept for at most this many quarantined samples (the newest); the quarantine
/// holds 500 by default.
const MAX_EVIDENCE: usize = 4096;

/// The adaptation side of the layer.
pub(crate) struct Adaptation {
    pub(crate) config: adapt::AdaptationConfig,
    pub(crate) baseline: Baseline,
    pub(crate) round: Round,
    pub(crate) snapshots: Option<Snapshots>,
    /// Frame of the last round's end (plan without changes, keep or rollback).
    pub(crate) last_round: u64,
    /// Quarantine ids up to this one are not planned again (their round was rolled back).
    pub(crate) watermark: u64,
    /// Number the next round gets.
    pub(crate) next_id: u64,
    /// The model's original reference samples: never evicted, and the guard's ground truth.
    protected: Protected,
    /// The stream's common shift against the original samples' mean.
    shift: StreamShift,
    /// What was measured on each quarantined sample at admission (in memory only: samples
    /// admitted before a restart carry none and are not planned).
    evidence: BTreeMap<u64, Evidence>,
    /// Scratch: the aligned features of the frame being measured, and the KNN's answer.
    aligned: Vec<f32>,
    probe: crate::knn::Prediction,
}

impl Adaptation {
    /// The adaptation side for `knn` (the running one), protecting the samples of `original`
    /// (the model's initial KNN).
    pub(crate) fn new(
        config: adapt::AdaptationConfig,
        knn: &Knn,
        original: &Knn,
        snapshots: Option<Snapshots>,
        next_id: u64,
    ) -> Self {
        let protected = Protected::of(original);
        let mean = StreamShift::mean_of(original.dim(), original.samples().map(|s| s.features));
        Adaptation {
            baseline: Baseline::new(knn.labels().len(), config.guard_frames),
            shift: StreamShift::new(mean, config.shift_window),
            config,
            round: Round::Idle,
            snapshots,
            last_round: 0,
            watermark: 0,
            next_id,
            protected,
            evidence: BTreeMap::new(),
            aligned: vec![0.0; knn.dim()],
            probe: crate::knn::Prediction::with_capacity(knn.config().k),
        }
    }
}

/// What a round did at this frame, for observers.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A plan was applied: one entry per changed cluster.
    Applied(AdaptationEvent),
    /// The guard kept the round.
    Kept(AdaptationEvent),
    /// The guard rolled the round back to its snapshot.
    RolledBack(AdaptationEvent),
}

impl Autonomy {
    /// Advance the adaptation loop by one frame (after the KNN and quarantine ran).
    pub(crate) fn adapt_step(&mut self, frame: u64) {
        self.measure_shift();
        let Some(a) = self.adaptation.as_mut() else {
            return;
        };
        let class = self.step.knn_label.map_or(0, |l| usize::from(l.0));
        let (confidence, distance) = (self.step.knn_confidence, self.step.distance);
        match &mut a.round {
            Round::Idle => {
                a.baseline.observe(confidence, distance, class);
                self.maybe_plan(frame);
            }
            Round::Planning { due, .. } => {
                a.baseline.observe(confidence, distance, class);
                if frame >= *due {
                    let Round::Planning { handle, .. } =
                        std::mem::replace(&mut a.round, Round::Idle)
                    else {
                        return;
                    };
                    match handle.join() {
                        Ok(Ok(plan)) => self.carry_out(frame, &plan),
                        Ok(Err(e)) => {
                            tracing::warn!("adaptation planning failed: {e}");
                            a.last_round = frame;
                        }
                        Err(_) => {
                            tracing::error!("the adaptation planner panicked; adaptation is off");
                            self.adaptation = None;
                        }
                    }
                }
            }
            Round::Guarding(g) => {
                if !matches!(
                    g.guard.observe(confidence, distance, class),
                    Verdict::Pending
                ) {
                    self.conclude(frame);
                }
            }
        }
    }

    /// Follow the stream's common shift with this frame's features, and when the frame was
    /// quarantined, keep what aligning it tells the planner ([`Evidence`]).
    fn measure_shift(&mut self) {
        let (Some(a), Some(side)) = (self.adaptation.as_mut(), self.side.as_ref()) else {
            return;
        };
        let Some(distance) = self.step.distance else {
            return;
        };
        a.shift.observe(&side.buffer);
        let Some(id) = self.step.quarantined else {
            return;
        };
        // The running mean needs a window inside the incident before it describes the new
        // regime: until then a new object's frames look like a mild scene-wide change
        // (measured: stars pseudo-labelled `ball` from the first frames of an incident).
        let settled = self.incidents.open().is_none_or(|incident| {
            self.step.frame.saturating_sub(incident.opened_at) >= u64::from(a.config.shift_window)
        });
        if !a.shift.ready() || !settled {
            return;
        }
        a.shift.align(&side.buffer, &mut a.aligned);
        if side.knn.predict(&a.aligned, &mut a.probe).is_err() || a.probe.k_effective() == 0 {
            return;
        }
        a.evidence.insert(
            id,
            Evidence {
                distance,
                aligned_distance: a.probe.mean_distance,
                aligned_label: a.probe.label,
                aligned_share: a.probe.vote_share,
                model_label: self.step.model_label,
                group: self.incidents.open().map_or(0, |incident| incident.id),
                stream_shift: a.shift.magnitude(),
            },
        );
        if a.evidence.len() > MAX_EVIDENCE {
            a.evidence.pop_first();
        }
    }

    /// Start planning on a worker thread when enough is pending and the interval passed.
    fn maybe_plan(&mut self, frame: u64) {
        let (Some(a), Some(side), Some(q)) = (
            self.adaptation.as_mut(),
            self.side.as_ref(),
            self.quarantine.as_ref(),
        ) else {
            return;
        };
        if frame < a.last_round + u64::from(a.config.guard_frames) {
            return;
        }
        let watermark = a.watermark;
        let pending = q.pending().filter(|e| e.id > watermark).count();
        if !a.config.ready(pending) {
            return;
        }
        let mut samples: Vec<(u64, Vec<f32>, Option<Evidence>)> = q
            .pending()
            .filter(|e| e.id > watermark)
            .map(|e| (e.id, e.features.clone(), a.evidence.get(&e.id).copied()))
            .collect();
        samples.sort_unstable_by_key(|(id, _, _)| std::cmp::Reverse(*id));
        samples.truncate(MAX_PLANNED);
        // Evidence of samples no longer pending (resolved, evicted) is not needed again.
        let oldest = samples.last().map_or(0, |(id, _, _)| *id);
        a.evidence.retain(|id, _| *id >= oldest);
        let original: Vec<LabelId> = (0..side.knn.labels().len())
            .map(|i| LabelId(i as u16))
            .filter(|l| a.protected.has_class(*l))
            .collect();
        let knn = side.knn.clone();
        let reference = match Reference::from_stats(&side.reference) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("adaptation is off: {e}");
                self.adaptation = None;
                return;
            }
        };
        let config = a.config.clone();
        let spawned = std::thread::Builder::new()
            .name("tinylcm-adapt".into())
            .spawn(move || {
                let pending: Vec<adapt::Sample<'_>> = samples
                    .iter()
                    .map(|(id, v, evidence)| adapt::Sample {
                        id: *id,
                        features: v,
                        evidence: *evidence,
                    })
                    .collect();
                adapt::plan_round(&pending, &knn, &reference, &config, |l| {
                    original.contains(&l)
                })
            });
        match spawned {
            Ok(handle) => {
                a.round = Round::Planning {
                    handle,
                    due: frame + PLAN_LAG_FRAMES,
                }
            }
            Err(e) => {
                tracing::warn!("cannot start the adaptation planner: {e}");
                a.last_round = frame;
            }
        }
    }

    /// Apply a finished plan: snapshot first, then change the KNN and the quarantine.
    fn carry_out(&mut self, frame: u64, plan: &Plan) {
        for c in &plan.clusters {
            if let Decision::Leave { why } = &c.decision {
                tracing::debug!(members = c.members.len(), ?why, "cluster left alone");
            }
        }
        if !plan.has_changes() {
            self.end_round(frame);
            return;
        }
        // Nothing changes the KNN without a guard to watch it and a snapshot to return to:
        // a round that could have either missing is not applied.
        if let Err(e) = self.can_guard() {
            tracing::warn!("adaptation not applied: no guard can watch it ({e})");
            self.end_round(frame);
            return;
        }
        let Some(snapshot) = self.snapshot_now() else {
            tracing::warn!("adaptation not applied: there is no snapshot to roll it back to");
            self.end_round(frame);
            return;
        };
        let snapshot = Some(snapshot);
        let (Some(a), Some(side)) = (self.adaptation.as_mut(), self.side.as_mut()) else {
            return;
        };
        let before = a.baseline.metrics();
        let id = a.next_id;
        a.next_id += 1;
        let agreement_before = a.protected.agreement(&side.knn);
        let applied = match adapt::apply_keeping(
            plan,
            &mut side.knn,
            id,
            event::now_unix_ms(),
            &before,
            &a.protected,
        ) {
            Ok(applied) => applied,
            Err(e) => {
                tracing::warn!("adaptation {id} not applied: {e}");
                a.last_round = frame;
                return;
            }
        };
        adapt::limit_proposed(&mut side.knn, &a.config, &side.reference);
        let agreement_after = a.protected.agreement(&side.knn);
        let classes = side.knn.labels().len();
        a.baseline.set_classes(classes);
        let reference = Reference::from_stats(&side.reference);
        let mut guard = match reference.and_then(|r| Guard::new(before, classes, &r, &a.config)) {
            Ok(guard) => guard,
            Err(e) => {
                // Not expected after `can_guard` (the same baseline, reference and settings);
                // should it happen, the change is undone before any frame sees it.
                tracing::warn!("adaptation {id} undone: no guard can watch it ({e})");
                a.last_round = frame;
                self.restore(snapshot.as_deref(), &applied);
                return;
            }
        };
        if let (Some(b), Some(after)) = (agreement_before, agreement_after) {
            tracing::info!(
                round = id,
                before = b,
                after,
                "agreement of the model's original samples"
            );
            if after < b - a.config.protected_drop {
                guard.reject(RollbackReason::ProtectedSamples);
            }
        }
        let mut members = Vec::new();
        for cluster in plan.changes() {
            let Some(label) = cluster.target() else {
                continue;
            };
            for &m in &cluster.members {
                members.push(m);
                if let Some(q) = self.quarantine.as_mut() {
                    let status = Status::Adapted {
                        label: label.to_string(),
                    };
                    if let Err(e) = q.set_status(m, status, &mut self.pending) {
                        tracing::debug!("quarantine entry {m}: {e}");
                    }
                }
            }
        }
        for e in &applied.events {
            tracing::info!(
                round = id,
                kind = ?e.kind,
                label = e.label.as_deref().unwrap_or("-"),
                members = e.member_count,
                added = e.added.len(),
                snapshot = snapshot.as_deref().unwrap_or("none"),
                "adaptation applied"
            );
            self.step.notes.push(Note::Applied(e.clone()));
            self.counts.adaptations += 1;
            push_event(
                &mut self.pending,
                EventKind::Adaptation {
                    snapshot: snapshot.clone(),
                    event: Box::new(e.clone()),
                },
            );
        }
        let Some(a) = self.adaptation.as_mut() else {
            return;
        };
        let decided = !matches!(guard.verdict(), Verdict::Pending);
        a.round = Round::Guarding(Box::new(Guarded {
            guard,
            applied,
            snapshot,
            members,
        }));
        if decided {
            self.conclude(frame);
            return;
        }
        self.checkpoint();
    }

    /// Whether a guard can watch a round applied now (the baseline has frames, the
    /// reference distances are usable).
    fn can_guard(&self) -> Result<(), AdaptError> {
        let (Some(a), Some(side)) = (self.adaptation.as_ref(), self.side.as_ref()) else {
            return Err(AdaptError::Reference("the KNN is off".into()));
        };
        let reference = Reference::from_stats(&side.reference)?;
        let classes = side.knn.labels().len();
        Guard::new(a.baseline.metrics(), classes, &reference, &a.config).map(drop)
    }

    /// A round ends without a change: the next one waits `guard-frames` from here.
    fn end_round(&mut self, frame: u64) {
        if let Some(a) = self.adaptation.as_mut() {
            a.last_round = frame;
        }
    }

    /// The guard decided: record it; on rollback restore the snapshot.
    fn conclude(&mut self, frame: u64) {
        let Some(a) = self.adaptation.as_mut() else {
            return;
        };
        let Round::Guarding(guarded) = std::mem::replace(&mut a.round, Round::Idle) else {
            return;
        };
        let Guarded {
            guard,
            applied,
            snapshot,
            members,
        } = *guarded;
        a.last_round = frame;
        let verdict = guard.verdict().clone();
        let Some(event) = applied.verdict_event(&verdict, event::now_unix_ms()) else {
            return;
        };
        match verdict {
            Verdict::Keep(_) => {
                tracing::info!(round = applied.id, "adaptation kept: the guard saw no harm");
                self.step.notes.push(Note::Kept(event.clone()));
            }
            Verdict::Rollback { reason, .. } => {
                tracing::warn!(round = applied.id, ?reason, "adaptation rolled back");
                a.watermark = a.watermark.max(members.iter().copied().max().unwrap_or(0));
                a.baseline.clear();
                self.counts.rollbacks += 1;
                self.restore(snapshot.as_deref(), &applied);
                if let Some(q) = self.quarantine.as_mut() {
                    for m in members {
                        let _ = q.set_status(m, Status::Pending, &mut self.pending);
                    }
                }
                self.step.notes.push(Note::RolledBack(event.clone()));
            }
            Verdict::Pending => return,
        }
        push_event(
            &mut self.pending,
            EventKind::Adaptation {
                snapshot,
                event: Box::new(event),
            },
        );
        self.checkpoint();
    }

    /// Checkpoint, wait until durable, snapshot; `None` when there is no store, no snapshot
    /// folder, or it failed (the round is then not applied).
    fn snapshot_now(&mut self) -> Option<String> {
        self.checkpoint();
        let store = self.store.clone()?;
        if !self.pending.is_empty() {
            if let Err(e) = store.submit(std::mem::take(&mut self.pending)) {
                tracing::warn!("cannot save state before adapting: {e}");
                return None;
            }
        }
        let snapshots = self.adaptation.as_ref()?.snapshots.as_ref()?;
        let started = std::time::Instant::now();
        match snapshots.create(&store) {
            Ok(info) => {
                tracing::debug!(id = %info.id, ms = started.elapsed().as_millis() as u64, "snapshot before adaptation");
                Some(info.id)
            }
            Err(e) => {
                tracing::warn!("cannot snapshot before adapting: {e}");
                None
            }
        }
    }

    /// Undo a round: restore its snapshot and reload the KNN and detectors from it, or
    /// remove what the round added when there is no snapshot.
    fn restore(&mut self, snapshot: Option<&str>, applied: &Applied) {
        let restored = match (snapshot, &self.store, self.adaptation.as_ref()) {
            (Some(id), Some(store), Some(a)) => a.snapshots.as_ref().and_then(|s| {
                // Pending writes are newer than the snapshot; the restore replaces them.
                self.pending = crate::state::Batch::new();
                s.restore(store, id)
                    .map_err(|e| tracing::warn!("cannot restore snapshot {id}: {e}"))
                    .ok()?;
                store.get_state(persist::KNN).ok().flatten()
            }),
            _ => None,
        };
        let Some(side) = self.side.as_mut() else {
            return;
        };
        match restored.map(crate::knn::Knn::from_state) {
            Some(Ok(knn)) => side.knn = knn,
            _ => {
                for added in &applied.added {
                    side.knn.remove(added.id);
                }
            }
        }
        if let Some(a) = self.adaptation.as_mut() {
            // A restored KNN comes without the proposed classes' reach (it is not saved).
            adapt::limit_proposed(&mut side.knn, &a.config, &side.reference);
            a.baseline.set_classes(side.knn.labels().len());
        }
    }
}

fn push_event(batch: &mut crate::state::Batch, kind: EventKind) {
    let entry = RuntimeEvent {
        unix_ms: event::now_unix_ms(),
        kind,
    };
    if let Err(e) = batch.append_event(&entry) {
        tracing::warn!("cannot record an adaptation event: {e}");
    }
}
