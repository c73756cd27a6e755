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
//!
//! This file starts the layer and runs the per-frame [`Autonomy::step`]; the stages it calls
//! live beside it: `triage.rs` (which frames the quarantine keeps), `adaptation.rs` (learning
//! rounds, snapshot and guard), `verdict.rs` (human verdicts, between frames) and
//! [`persist`] (what is written to the store, and when).

mod adaptation;
pub mod config;
pub mod event;
pub mod feedback;
pub mod incident;
pub mod initial;
pub mod persist;
mod triage;
mod verdict;

use std::sync::Arc;
use std::time::Instant;

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
use crate::quarantine::{Quarantine, QuarantineConfig, QuarantineError};
use crate::state::{Batch, Snapshots, StateError, Store};

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

impl Step {
    /// Start frame `frame`: nothing known yet, the lists emptied (their capacity kept).
    fn reset(&mut self, frame: u64) {
        self.frame = frame;
        self.knn_label = None;
        self.knn_confidence = 0.0;
        self.distance = None;
        self.model_label = None;
        self.events.clear();
        self.changes.clear();
        self.far = false;
        self.quarantined = None;
        self.notes.clear();
    }
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
        step.reset(frame);

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
                if let Some(event) = incident::log_change(frame, change, incident) {
                    closed = Some(event);
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
