//! What the runtime does with a prediction after the model: the autonomous part.
//!
//! Per frame, on the inference thread and without allocating in the steady state:
//!
//! ```text
//! embedding ─► features (L2, PCA) ─► KNN (label, mean neighbour distance)
//!                                          │
//! confidence, class, distance, features ─► drift detectors ─► onsets ─► incidents
//!                                                                   └─► event log (state store)
//! ```
//!
//! The KNN starts from the model's initial state ([`initial`]) and everything it learns is
//! kept in the state store ([`persist`]), so a restart continues where the device was.
//! Nothing here waits for the disk: writes are queued batches the store's writer commits.

mod adaptation;
pub mod config;
pub mod event;
pub mod feedback;
pub mod incident;
pub mod initial;
pub mod persist;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use adaptation::Note;
pub use config::{AutonomyConfig, Classifier};
pub use event::{EventKind, RuntimeEvent};
pub use incident::{Change, Incident, Incidents};
pub use initial::{InitialError, InitialState};

use crate::adapt::AdaptationConfig;
use crate::drift::{DetectorSet, DriftConfig, DriftError, DriftEvent, Observation, Phase};
use crate::features::FeaturePath;
use crate::frame::Frame;
use crate::knn::{self, Knn, KnnConfig, KnnError, LabelId, ReferenceStats};
use crate::pipeline::Prediction;
use crate::quarantine::{Candidate, Quarantine, QuarantineConfig, QuarantineError, ReasonRef};
use crate::state::{Batch, Snapshots, StateError, Store, TrySubmitError};

/// Failures starting the autonomy layer.
#[derive(Debug, thiserror::Error)]
pub enum AutonomyError {
    /// The initial state is unusable.
    #[error(transparent)]
    Initial(#[from] InitialError),
    /// The KNN could not be built.
    #[error("KNN: {0}")]
    Knn(#[from] KnnError),
    /// The detectors could not be built.
    #[error("drift detectors: {0}")]
    Drift(#[from] DriftError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The feedback inbox could not start.
    #[error(transparent)]
    Feedback(#[from] feedback::FeedbackError),
    /// The quarantine could not open.
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
}

/// Everything the autonomy layer is started from.
pub struct Setup<'a> {
    /// `[autonomy]`.
    pub config: &'a AutonomyConfig,
    /// `[knn]`: applied to the KNN of the initial or saved state.
    pub knn: &'a KnnConfig,
    /// `[drift]`.
    pub drift: &'a DriftConfig,
    /// SHA-256 of the running model.
    pub model_sha256: &'a str,
    /// The model's class labels; empty for an embedding-only model, whose classes are the
    /// KNN's (from the initial state).
    pub labels: &'a [String],
    /// Length of the model's embedding, if it has one.
    pub embedding_dim: Option<usize>,
    /// The model's initial state, if one was found.
    pub initial: Option<(String, InitialState)>,
    /// Where states and events are kept; `None` keeps everything in memory.
    pub store: Option<Arc<Store>>,
    /// Where human verdicts arrive (see [`feedback`]); `None`: no feedback.
    pub inbox: Option<feedback::Inbox>,
    /// `[quarantine]` (needs a store).
    pub quarantine: &'a QuarantineConfig,
    /// `[adaptation]` (needs a KNN and a quarantine).
    pub adaptation: &'a AdaptationConfig,
    /// Where snapshots before adaptations go.
    pub snapshots: Option<Snapshots>,
}

/// The KNN side: present when the model has an embedding and an initial state.
struct KnnSide {
    features: FeaturePath,
    buffer: Vec<f32>,
    knn: Knn,
    out: knn::Prediction,
    reference: ReferenceStats,
}

/// What the last frame produced, for observers (reused: no allocation per frame).
#[derive(Debug, Default)]
pub struct Step {
    /// Frame number.
    pub frame: u64,
    /// The KNN's class, when it ran.
    pub knn_label: Option<LabelId>,
    /// The KNN's confidence (vote share or weighted share).
    pub knn_confidence: f32,
    /// Mean distance to the k nearest neighbours.
    pub distance: Option<f32>,
    /// The model head's class as a KNN label (models with a head, classes the KNN knows).
    pub model_label: Option<LabelId>,
    /// Drift onsets of this frame.
    pub events: Vec<DriftEvent>,
    /// Incident changes of this frame.
    pub changes: Vec<Change>,
    /// The frame is far from everything the KNN knows.
    pub far: bool,
    /// The quarantine entry the frame became.
    pub quarantined: Option<u64>,
    /// What adaptation did at this frame.
    pub notes: Vec<Note>,
}

/// Counts of what the layer saw and did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames stepped.
    pub frames: u64,
    /// Drift onsets.
    pub onsets: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Frames far from everything known.
    pub far: u64,
    /// Embeddings that could not be used (non-finite values, wrong length).
    pub bad_embeddings: u64,
    /// Batches the state store refused for a while because its queue was full.
    pub deferred_writes: u64,
    /// Human verdicts applied.
    pub feedback: u64,
    /// Samples quarantined.
    pub quarantined: u64,
    /// Clusters the adaptation applied.
    pub adaptations: u64,
    /// Adaptation rounds rolled back.
    pub rollbacks: u64,
}

/// The autonomy layer of one running model.
pub struct Autonomy {
    config: AutonomyConfig,
    model_sha256: String,
    num_classes: usize,
    /// The model has no class scores: the KNN's class and confidence stand in for the
    /// model's in what the detectors and the quarantine see.
    embedding_only: bool,
    /// The model's class labels (the names of its scores), for a drift frame's top-k.
    labels: Vec<String>,
    side: Option<KnnSide>,
    detectors: DetectorSet,
    incidents: Incidents,
    store: Option<Arc<Store>>,
    inbox: Option<feedback::Inbox>,
    /// Applied deliveries whose changes still wait in `pending` (see `take_feedback`).
    unacked: Vec<feedback::Delivery>,
    quarantine: Option<Quarantine>,
    adaptation: Option<adaptation::Adaptation>,
    pending: Batch,
    last_checkpoint: Instant,
    step: Step,
    counts: Counts,
    /// Frames already added to the store's frame counter.
    frames_counted: u64,
}

impl std::fmt::Debug for Autonomy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autonomy")
            .field("knn", &self.side.as_ref().map(|s| s.knn.len()))
            .field("detectors", &self.detectors)
            .finish_non_exhaustive()
    }
}

impl Autonomy {
    /// Start from the saved state of this model if the store has one, else from its
    /// initial state (or with detectors only, when there is no initial state).
    pub fn start(setup: Setup<'_>) -> Result<Self, AutonomyError> {
        let saved = match &setup.store {
            Some(store) => persist::load(store, setup.model_sha256)?,
            None => persist::Saved::default(),
        };
        let side = match (setup.embedding_dim, &setup.initial) {
            (Some(dim), Some((what, initial))) => {
                initial.check_model(what, setup.model_sha256)?;
                let features = initial.feature_path(dim)?;
                let knn = match saved.knn.clone() {
                    Some(state) => Knn::from_state(state)
                        .map_err(|e| {
                            tracing::warn!(
                                "the saved KNN is unusable ({e}); starting from the initial state"
                            );
                            e
                        })
                        .or_else(|_| initial.knn())?,
                    None => initial.knn()?,
                };
                let mut knn = with_config(knn, *setup.knn)?;
                let reference = saved
                    .meta
                    .as_ref()
                    .and_then(|m| m.reference.clone())
                    .unwrap_or_else(|| initial.reference.clone());
                crate::adapt::limit_proposed(&mut knn, setup.adaptation, &reference);
                Some(KnnSide {
                    buffer: vec![0.0; features.output_dim()],
                    out: knn::Prediction::with_capacity(knn.config().k),
                    features,
                    knn,
                    reference,
                })
            }
            (Some(_), None) => {
                tracing::warn!(
                    "no initial state for this model: the KNN is off and the drift detectors \
                     watch confidence and class mix only; build one with `tinylcm init-state DIR`"
                );
                None
            }
            (None, _) => None,
        };
        let mut detectors = DetectorSet::from_config(setup.drift)?;
        if let Some(state) = saved.drift {
            if let Err(e) = detectors.load(state) {
                tracing::warn!(
                    "saved drift detector states do not fit the configuration ({e}); they learn their references again"
                );
            }
        }
        let next_incident = saved.meta.as_ref().map_or(1, |m| m.next_incident);
        let mut pending = Batch::new();
        let quarantine = match &setup.store {
            Some(store) if side.is_some() && setup.quarantine.enabled => {
                let mut q = Quarantine::open(setup.quarantine.clone(), store)?;
                q.expire(event::now_unix_ms(), &mut pending);
                Some(q)
            }
            _ => None,
        };
        let adaptation = match (&side, &quarantine) {
            (Some(side), Some(_)) if setup.adaptation.enabled => {
                // The side exists only with an initial state: its KNN is what the model knew.
                let original = match &setup.initial {
                    Some((_, initial)) => initial.knn()?,
                    None => side.knn.clone(),
                };
                Some(adaptation::Adaptation::new(
                    setup.adaptation.clone(),
                    &side.knn,
                    &original,
                    setup.snapshots,
                    saved.meta.as_ref().map_or(1, |m| m.next_adaptation),
                ))
            }
            _ => None,
        };
        Ok(Autonomy {
            model_sha256: setup.model_sha256.to_string(),
            // The classes the KNN started with (a class adaptation adds later is outside the
            // class-mix detector's reference, which ignores it).
            num_classes: match (&side, setup.labels.is_empty()) {
                (Some(side), true) => side.knn.labels().len(),
                _ => setup.labels.len(),
            },
            embedding_only: setup.labels.is_empty(),
            labels: setup.labels.to_vec(),
            side,
            detectors,
            incidents: Incidents::new(setup.config.incident_quiet_frames, next_incident),
            store: setup.store,
            inbox: setup.inbox,
            unacked: Vec::new(),
            quarantine,
            adaptation,
            pending,
            last_checkpoint: Instant::now(),
            step: Step {
                events: Vec::with_capacity(8),
                changes: Vec::with_capacity(8),
                notes: Vec::with_capacity(8),
                ..Step::default()
            },
            config: setup.config.clone(),
            counts: Counts::default(),
            frames_counted: 0,
        })
    }

    /// Run one frame's prediction through the layer. Never fails: bad values are counted
    /// and skipped, a busy store defers writes.
    pub fn step(&mut self, frame: u64, prediction: &Prediction<'_>, image: &Frame) {
        self.counts.frames += 1;
        let step = &mut self.step;
        step.frame = frame;
        step.knn_label = None;
        step.knn_confidence = 0.0;
        step.distance = None;
        step.model_label = None;
        step.events.clear();
        step.changes.clear();
        step.notes.clear();
        step.far = false;
        step.quarantined = None;

        let mut features = None;
        if let (Some(side), Some(embedding)) = (self.side.as_mut(), prediction.embedding) {
            let ok = side.features.apply(embedding, &mut side.buffer).is_ok()
                && side.knn.predict(&side.buffer, &mut side.out).is_ok();
            if ok {
                features = Some(side.buffer.as_slice());
                if !self.embedding_only {
                    step.model_label = side.knn.labels().get(prediction.label);
                }
                step.knn_label = side.out.label;
                step.knn_confidence = side.out.confidence;
                if side.out.k_effective() > 0 {
                    step.distance = Some(side.out.mean_distance);
                    let r = &side.reference.overall;
                    let limit = r.mean + self.config.far_sigma * r.std.max(1e-9);
                    step.far = f64::from(side.out.mean_distance) > limit;
                }
            } else {
                self.counts.bad_embeddings += 1;
            }
        }
        let (predicted, confidence) = match (self.embedding_only, step.knn_label) {
            (false, _) => (prediction.class, prediction.confidence),
            (true, Some(label)) => (usize::from(label.0), step.knn_confidence),
            // No class at all: out of every class range and NaN, which the detectors skip.
            (true, None) => (usize::MAX, f32::NAN),
        };
        let observation = Observation {
            sample_id: frame,
            predicted,
            num_classes: self.num_classes,
            confidence,
            knn_distance: step.distance,
            embedding: features,
        };
        step.events
            .extend_from_slice(self.detectors.update(&observation));
        let in_drift = self
            .detectors
            .detectors()
            .iter()
            .any(|d| d.state() == Phase::Drift);
        let mut closed = None;
        self.incidents
            .frame(frame, &step.events, in_drift, |change, incident| {
                step.changes.push(change);
                match change {
                    Change::Opened(id) => tracing::info!(
                        incident = id,
                        frame,
                        detector = %incident.first.detector,
                        statistic = format_args!("{:.2}", incident.first.statistic),
                        threshold = format_args!("{:.2}", incident.first.threshold),
                        magnitude = format_args!("{:+.2}", incident.first.magnitude),
                        "drift incident opened"
                    ),
                    Change::Closed(id) => {
                        tracing::info!(incident = id, frame, "drift incident closed");
                        closed = Some(EventKind::IncidentClosed {
                            incident: id,
                            opened_at: incident.opened_at,
                            closed_at: frame,
                            detectors: incident.detectors.iter().map(|d| d.to_string()).collect(),
                        });
                    }
                    _ => {}
                }
            });
        step.far &= self.incidents.open().is_none();
        self.counts.far += u64::from(step.far);
        self.counts.onsets += step.events.len() as u64;
        let opened = step
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Opened(_)))
            .count() as u64;
        self.counts.incidents += opened;
        self.quarantine_frame(prediction, image);
        self.adapt_step(frame);
        self.record_drift_sample(prediction);
        self.record(closed, opened);
        self.take_feedback();
        self.maybe_checkpoint();
    }

    /// Keep the frame in quarantine when an incident is open or it is far from everything.
    fn quarantine_frame(&mut self, prediction: &Prediction<'_>, image: &Frame) {
        let (Some(q), Some(side)) = (self.quarantine.as_mut(), self.side.as_ref()) else {
            return;
        };
        let Some(distance) = self.step.distance else {
            return;
        };
        // During an incident, only frames that look unusual (beyond one reference σ of the
        // usual neighbour distance): an incident outlives its drift by the detectors' exit
        // rules, and normal frames in the quarantine would blur every cluster.
        let r = &side.reference.overall;
        let unusual = f64::from(distance) > r.mean + r.std;
        let reason = match self.incidents.open() {
            Some(incident) if unusual => ReasonRef::Drift {
                detector: incident.first.detector.name(),
            },
            _ if self.step.far => ReasonRef::FarFromKnown,
            _ => return,
        };
        let predicted = self
            .step
            .knn_label
            .and_then(|l| side.knn.labels().name(l))
            .unwrap_or(prediction.label);
        let candidate = Candidate {
            sample: self.step.frame,
            reason,
            predicted,
            confidence: if self.embedding_only {
                self.step.knn_confidence
            } else {
                prediction.confidence
            },
            knn_distance: self.step.distance,
            features: &side.buffer,
        };
        let now = event::now_unix_ms();
        match q.admit(candidate, image, now, &mut self.pending) {
            Ok(Some(id)) => {
                self.step.quarantined = Some(id);
                self.counts.quarantined += 1;
                // The frame of a drift onset goes to a human with its event: keep it for the
                // verdict (bounded by the quarantine's review settings).
                if !self.step.events.is_empty() {
                    if let Err(e) = q.hold_for_review(id, now, &mut self.pending) {
                        tracing::debug!("not held for review: {e}");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("not quarantined: {e}"),
        }
    }

    /// Apply a waiting inbox delivery, if any (a channel poll when there is none).
    ///
    /// A delivery is acknowledged (its file removed once the store is flushed) only when
    /// everything it changed has been handed to the store: while the store's queue is full
    /// the changes wait in `pending`, and so does the acknowledgement.
    fn take_feedback(&mut self) {
        if let Some(mut delivery) = self.inbox.as_ref().and_then(feedback::Inbox::try_recv) {
            for i in 0..delivery.items.len() {
                let outcome = self.apply_feedback(&delivery.items[i]);
                delivery.record(i, outcome);
            }
            self.checkpoint();
            self.unacked.push(delivery);
        }
        if self.unacked.is_empty() || !self.pending.is_empty() {
            return;
        }
        if let Some(inbox) = &self.inbox {
            for delivery in self.unacked.drain(..) {
                inbox.ack(delivery);
            }
        }
    }

    /// Apply one human verdict now; what became of it.
    pub fn apply_feedback(&mut self, item: &feedback::Item) -> feedback::Outcome {
        match item {
            feedback::Item::Drift { event, verdict } => {
                // The verdict on the event ends the review of the frame it named.
                if let Some(q) = self.quarantine.as_mut() {
                    if let Err(e) = q.release_review_of_sample(event.sample_id, &mut self.pending) {
                        tracing::warn!("{e}");
                    }
                }
                match verdict {
                    feedback::Verdict::FalseAlarm => self.detectors.false_alarm(event),
                    feedback::Verdict::Confirmed => self.detectors.confirmed(event),
                }
                let threshold = self
                    .detectors
                    .detectors()
                    .iter()
                    .find(|d| d.kind() == event.detector)
                    .map_or(f64::NAN, |d| d.statistic().1);
                tracing::info!(
                    detector = %event.detector,
                    sample = event.sample_id,
                    ?verdict,
                    threshold,
                    "drift feedback applied"
                );
                self.counts.feedback += 1;
                self.push(EventKind::DriftFeedback {
                    event: *event,
                    verdict: *verdict,
                    threshold,
                });
                feedback::Outcome::Applied(None)
            }
            feedback::Item::Sample { verdict, carried } => {
                let done = feedback::apply_sample(
                    verdict,
                    carried.as_deref(),
                    self.quarantine.as_mut(),
                    self.side.as_mut().map(|s| &mut s.knn),
                    event::now_unix_ms(),
                    &mut self.pending,
                );
                if let Some(kind) = done.event {
                    self.counts.feedback += 1;
                    self.push(kind);
                }
                done.outcome
            }
            feedback::Item::Class(c) => {
                let Some(side) = self.side.as_mut() else {
                    return feedback::Outcome::Refused("the KNN is off on this device".into());
                };
                let held = |name: &str| {
                    let knn = &side.knn;
                    knn.labels()
                        .get(name)
                        .map_or(0, |label| knn.class_count(label))
                };
                // Nothing to rename: say so rather than report a rename that moved nothing.
                if held(&c.from) == 0 {
                    return feedback::Outcome::Refused(format!(
                        "the KNN holds no sample of class {} (unknown here, or renamed already)",
                        c.from
                    ));
                }
                let merged = held(&c.to) > 0;
                match side.knn.relabel(&c.from, &c.to) {
                    Ok(moved) => {
                        tracing::info!(from = %c.from, to = %c.to, moved, "class renamed");
                        self.counts.feedback += 1;
                        self.push(EventKind::ClassRenamed {
                            from: c.from.clone(),
                            to: c.to.clone(),
                            moved,
                        });
                        feedback::Outcome::Applied(Some(format!(
                            "{moved} samples of {} {} {}",
                            c.from,
                            if merged { "merged into" } else { "renamed" },
                            c.to
                        )))
                    }
                    Err(e) => {
                        tracing::warn!("cannot rename class {} to {}: {e}", c.from, c.to);
                        feedback::Outcome::Refused(format!(
                            "cannot rename class {} to {}: {e}",
                            c.from, c.to
                        ))
                    }
                }
            }
        }
    }

    /// Queue an event (when there is a store).
    fn push(&mut self, kind: EventKind) {
        if self.store.is_none() {
            return;
        }
        let entry = RuntimeEvent {
            unix_ms: event::now_unix_ms(),
            kind,
        };
        if let Err(e) = self.pending.append_event(&entry) {
            tracing::warn!("cannot record an event: {e}");
        }
    }

    /// Queue this frame's events and the `opened` incidents' count (never on frames without
    /// any: no allocation).
    fn record(&mut self, closed: Option<EventKind>, opened: u64) {
        if self.store.is_none() {
            return;
        }
        if self.step.events.is_empty() && closed.is_none() {
            if !self.pending.is_empty() {
                self.submit();
            }
            return;
        }
        let unix_ms = event::now_unix_ms();
        let incident = self.incidents.open().map_or(0, |i| i.id);
        for event in &self.step.events {
            let entry = RuntimeEvent {
                unix_ms,
                kind: EventKind::Drift {
                    incident,
                    event: *event,
                },
            };
            if let Err(e) = self.pending.append_event(&entry) {
                tracing::warn!("cannot record a drift event: {e}");
            }
        }
        if let Some(kind) = closed {
            if let Err(e) = self.pending.append_event(&RuntimeEvent { unix_ms, kind }) {
                tracing::warn!("cannot record an incident: {e}");
            }
        }
        self.pending
            .increment(persist::DRIFT_COUNTER, self.step.events.len() as u64);
        if opened > 0 {
            self.pending.increment(persist::INCIDENTS_COUNTER, opened);
        }
        self.submit();
    }

    fn maybe_checkpoint(&mut self) {
        if self.store.is_some()
            && self.last_checkpoint.elapsed() >= Duration::from_secs(self.config.checkpoint_seconds)
        {
            self.checkpoint();
        }
    }

    /// Queue the KNN and detector states now (also done every `checkpoint-seconds`).
    pub fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        if self.store.is_none() {
            return;
        }
        let meta = persist::Meta {
            model_sha256: self.model_sha256.clone(),
            reference: self.side.as_ref().map(|s| s.reference.clone()),
            next_incident: self.incidents.next_id(),
            next_adaptation: self.adaptation.as_ref().map_or(1, |a| a.next_id),
        };
        let knn = self.side.as_ref().map(|s| s.knn.to_state());
        if let Err(e) = persist::save(
            &mut self.pending,
            &meta,
            knn.as_ref(),
            &self.detectors.save(),
        ) {
            tracing::warn!("cannot checkpoint the KNN and detectors: {e}");
        }
        self.pending.increment(
            persist::FRAMES_COUNTER,
            self.counts.frames - self.frames_counted,
        );
        self.frames_counted = self.counts.frames;
        self.submit();
    }

    fn submit(&mut self) {
        let Some(store) = &self.store else { return };
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        match store.try_submit(batch) {
            Ok(_) => {}
            Err(TrySubmitError::Full { batch, .. }) => {
                self.counts.deferred_writes += 1;
                self.pending = batch;
            }
            Err(TrySubmitError::Stopped(e)) => {
                tracing::error!("the state store stopped; states are no longer saved: {e}");
                self.store = None;
            }
        }
    }

    /// Checkpoint and wait until everything is durable (at a clean stop).
    pub fn finish(&mut self) -> Result<(), StateError> {
        if let Some(q) = &self.quarantine {
            q.flush_thumbnails();
        }
        self.checkpoint();
        if let Some(store) = &self.store {
            if !self.pending.is_empty() {
                store.submit(std::mem::take(&mut self.pending))?;
            }
            store.flush()?;
        }
        // Everything applied is durable now: the inbox may remove those files.
        if let Some(inbox) = &self.inbox {
            for delivery in self.unacked.drain(..) {
                inbox.ack(delivery);
            }
        }
        Ok(())
    }

    /// What the last frame produced.
    pub fn last(&self) -> &Step {
        &self.step
    }

    /// The label to report for the last frame under the configured classifier, if the KNN
    /// decides it.
    pub fn label(&self) -> Option<&str> {
        if self.config.classifier != Classifier::Knn {
            return None;
        }
        let side = self.side.as_ref()?;
        side.knn.labels().name(self.step.knn_label?)
    }

    /// The KNN, when it runs.
    pub fn knn(&self) -> Option<&Knn> {
        self.side.as_ref().map(|s| &s.knn)
    }

    /// The reference statistics of the KNN's distances.
    pub fn reference(&self) -> Option<&ReferenceStats> {
        self.side.as_ref().map(|s| &s.reference)
    }

    /// The drift detectors.
    pub fn detectors(&self) -> &DetectorSet {
        &self.detectors
    }

    /// The open incident.
    pub fn open_incident(&self) -> Option<&Incident> {
        self.incidents.open()
    }

    /// What the layer saw and did so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The quarantine, when it runs.
    pub fn quarantine(&self) -> Option<&Quarantine> {
        self.quarantine.as_ref()
    }

    /// Frames the adaptation guard has watched and needs, while a round is guarded.
    pub fn guard_progress(&self) -> Option<(u64, u64)> {
        match &self.adaptation.as_ref()?.round {
            adaptation::Round::Guarding(g) => Some(g.guard.progress()),
            _ => None,
        }
    }
    /// The state store it writes to (`None` in memory, or after the store stopped).
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }
}

/// The KNN with `config` applied: rebuilt (oldest samples first, so eviction keeps the
/// newest) when the settings differ from the ones it was saved with.
fn with_config(knn: Knn, config: KnnConfig) -> Result<Knn, KnnError> {
    if *knn.config() == config {
        return Ok(knn);
    }
    let mut rebuilt = Knn::new(knn.dim(), config)?;
    let mut samples: Vec<_> = knn.samples().collect();
    samples.sort_by_key(|s| (s.timestamp, s.id));
    for s in samples {
        let label = knn.labels().name(s.label).unwrap_or("unknown");
        rebuilt.add_named(label, s.features, s.timestamp)?;
    }
    Ok(rebuilt)
}
