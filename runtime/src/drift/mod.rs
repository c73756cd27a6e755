//! Label-free drift detection: is the stream still what the model was trained on?
//!
//! Every detector here is a small explicit state machine over one [`Observation`] per
//! sample:
//!
//! ```text
//! warm-up ─► reference ─► monitoring ─► drift ─► cooldown ─► monitoring
//!  (ignored)  (learns μ, σ,   (statistic    (one event   (no event; an alarm
//!              histogram…)     vs threshold) at onset)    returns to drift silently)
//! ```
//!
//! Why a state machine: the original proof of concept fired at fixed sample counts because
//! its references were never initialised, fired several times per event, and could not tell
//! "still the same drift" from "a new drift". Here the reference is learnt (or injected with
//! `with_reference`) before any statistic is computed, an event is emitted only on the
//! *monitoring → drift* edge, leaving drift needs its own exit rule (hysteresis: a recovery
//! statistic or a lower exit threshold), and after leaving drift a cooldown must pass before
//! the next onset can produce an event. [`Detector::reset`] clears all of it, cooldown included.
//!
//! # Detectors
//!
//! | kind | input | statistic |
//! |---|---|---|
//! | [`PageHinkley`] (`page-hinkley-distance`) | mean k-NN distance | one-sided Page-Hinkley (increase), δ and λ in reference σ |
//! | [`EwmaMonitor`] (`ewma-confidence`) | confidence | EWMA vs control limits, in σ of the EWMA |
//! | [`PageHinkley`] (`page-hinkley-confidence`) | confidence | one-sided Page-Hinkley (decrease) |
//! | [`Cusum`] (`cusum`) | confidence or distance | tabular CUSUM, two-sided or one direction, k and h in σ |
//! | [`DistributionShift`] (`distribution`) | predicted class | Jensen–Shannon divergence (bits) of a sliding window vs the reference histogram |
//! | [`EmbeddingShift`] (`embedding`) | embedding | RMS per-dimension z of an EWMA mean embedding, in units of its null spread |
//! | [`Adwin`] (`adwin`) | confidence or distance | ADWIN2 (exponential-histogram buckets, δ) cuts that move the mean away from the reference |
//!
//! # Conventions
//!
//! * **Units.** Scalar thresholds are in units of the reference standard deviation σ (learnt
//!   from the reference window), never raw distances: raw-unit thresholds were the original's
//!   magic numbers. σ is floored at `1e-3·|μ|` (and `1e-9`) so a constant reference does not
//!   divide by zero.
//! * **β (rolling reference).** `reference ← (1 − β)·reference + β·batch`, where `batch` is the
//!   mean (and variance) of the last `reference-interval` monitoring samples: β is the weight of
//!   the *new* data. β = 0 (the default) keeps the reference fixed. Updates are paused in drift
//!   and cooldown. (The original used both conventions; β = 0.05 there meant "replace 95 %".)
//!   Page-Hinkley, EWMA, CUSUM and the class mix roll; the embedding reference and ADWIN's
//!   reference level change only through feedback (ADWIN's window adapts by itself).
//! * **Feedback.** [`Detector::false_alarm`] widens the accepted reference to include the
//!   condition of the event (an acceptance band for scalars and embeddings, an extra accepted
//!   histogram for the class mix) and multiplies the threshold by `false-alarm-raise`, at most
//!   up to `max-threshold-factor` × the configured one. [`Detector::confirmed`] keeps
//!   everything as it is.
//! * **Bad input** (NaN or infinite values, class indices out of range, a class count or an
//!   embedding length that differs from the reference) is ignored and counted, never a panic.
//! * **Memory** is bounded: window sizes, class counts, embedding lengths and ADWIN rows are
//!   capped by configuration and checked again when a saved state is loaded.
//!
//! # Measured behaviour
//!
//! Default settings (300 reference samples), seeded synthetic streams from
//! `runtime/tests/drift_support` (confidence ~ N(0.8, 0.05), distance ~ N(10, 1), 4 uniform
//! classes, 16-d N(0, I) embeddings). Delay = samples from the change point to the event,
//! over 20 seeds; false alarms = events over 20 seeds × 50 000 stationary samples.
//!
//! | detector | change (at sample 1 300) | delay mean | delay max | false alarms | skewed input |
//! |---|---|---|---|---|---|
//! | `page-hinkley-distance` | distance +2σ | 17 | 20 | 0 / 10⁶ | 0 / 10⁶ |
//! | `ewma-confidence` | confidence −2σ | 16 | 26 | 0 / 10⁶ | 0 / 10⁶ |
//! | `page-hinkley-confidence` | confidence −2σ | 17 | 26 | 0 / 10⁶ | 0 / 10⁶ |
//! | `cusum` | confidence −2σ | 17 | 26 | 0 / 10⁶ | 0 / 10⁶ |
//! | `distribution` | class mix 25/25/25/25 → 85/5/5/5 | 180 | 215 | 0 / 10⁶ | 0 / 10⁶ |
//! | `embedding` | +1σ in 8 of 16 dimensions | 50 | 63 | 0 / 10⁶ | 0 / 10⁶ |
//! | `adwin` | confidence −2σ | 193 | 215 | 0 / 10⁶ | 0 / 10⁶ |
//!
//! "Skewed input" is a stationary stream shaped like real outputs: confidence
//! `1 − |N(0, 0.1)|`, log-normal distances and embedding components, class mix 70/20/5/5.
//! The scalar defaults were set by it: with Gaussian-calibrated thresholds (λ = h = 16–18,
//! EWMA limit 5) and no winsorising, the confidence detectors fired about once per 10⁵
//! skewed samples; samples are now winsorised at ±3 σ and λ = h = 24, limit 6, which costs
//! about 5 samples of delay. Every detector fires exactly once on a drift that persists
//! 5 000 samples, once more after recovery and cooldown, and false-alarm feedback takes a
//! replayed condition (three drift/normal cycles) from 3 events to 1, also when the verdict
//! arrives after the drift ended (`drift_detectors.rs`). ADWIN is slow here by design: its
//! cut bound assumes values in [0, 1], and a −2σ confidence shift is only 0.1 on that scale;
//! the class mix waits for its window. The tests assert the maxima with a margin (40 for the
//! scalar detectors, 150 embedding, 300 class mix and ADWIN) on 3 seeds and 20 000 stationary
//! samples (1 seed and 2 000 under emulation); `drift_measure.rs` (ignored, ~25 s) regenerates
//! this table.
//!
//! [`DetectorSet`] runs every configured detector per sample and allocates nothing in the
//! steady state (`drift_set.rs` counts allocations). Cost (`cargo bench -p tinylcm --bench
//! drift -- --noplot`, build machine: 2 EPYC cores under load, release): all seven detectors
//! ≈ 5 µs per sample with a 256-d embedding, most of it the embedding detector (1–6 µs); each
//! scalar detector 15–60 ns, the class mix ≈ 130 ns (4 classes), ADWIN ≈ 80 ns.

mod adwin;
mod config;
mod cusum;
mod distribution;
mod embedding;
mod error;
mod ewma;
mod lifecycle;
mod monitor;
mod page_hinkley;
mod scalar;
mod set;

pub use adwin::{Adwin, AdwinState, Bucket};
pub use config::{
    AdwinConfig, CommonConfig, CusumConfig, Direction, DistributionConfig, DriftConfig,
    EmbeddingConfig, EwmaConfig, PageHinkleyConfig, Signal,
};
pub use cusum::{Cusum, CusumState};
pub use distribution::{DistributionShift, DistributionState};
pub use embedding::{EmbeddingReference, EmbeddingShift, EmbeddingState};
pub use error::DriftError;
pub use ewma::{EwmaMonitor, EwmaState};
pub use lifecycle::LifecycleState;
pub use monitor::{Monitor, Statistic};
pub use page_hinkley::{PageHinkley, PageHinkleyRole, PageHinkleyState};
pub use scalar::{OneSided, ScalarReference, ScalarState};
pub use set::{DetectorSet, DetectorSetState, DetectorState};

use serde::{Deserialize, Serialize};

/// Version of every persisted detector state in this module; a state with another version is
/// refused on load (no silent reinterpretation).
pub const STATE_VERSION: u32 = 1;

/// What the pipeline knows about one sample, as the detectors see it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Identifies the sample (frame) in events.
    pub sample_id: u64,
    /// Index of the predicted class.
    pub predicted: usize,
    /// How many classes the model has.
    pub num_classes: usize,
    /// Confidence of the prediction (0..=1 expected; NaN is ignored).
    pub confidence: f32,
    /// Mean distance to the k nearest neighbours, when a k-NN ran.
    pub knn_distance: Option<f32>,
    /// The (transformed) embedding, when the model has one.
    pub embedding: Option<&'a [f32]>,
}

/// Which detector produced an event (also the key of its configuration section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// Page-Hinkley on the mean k-NN distance (increase).
    PageHinkleyDistance,
    /// EWMA control chart on confidence.
    EwmaConfidence,
    /// Page-Hinkley on confidence (decrease).
    PageHinkleyConfidence,
    /// Tabular CUSUM on a chosen signal.
    Cusum,
    /// Class-mix shift (Jensen–Shannon divergence).
    Distribution,
    /// Embedding mean shift.
    Embedding,
    /// ADWIN adaptive windowing.
    Adwin,
}

impl DetectorKind {
    /// Every kind, in the order a [`DetectorSet`] runs them.
    pub const ALL: [DetectorKind; 7] = [
        DetectorKind::PageHinkleyDistance,
        DetectorKind::EwmaConfidence,
        DetectorKind::PageHinkleyConfidence,
        DetectorKind::Cusum,
        DetectorKind::Distribution,
        DetectorKind::Embedding,
        DetectorKind::Adwin,
    ];

    /// The kebab-case name used in configuration keys and events.
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::PageHinkleyDistance => "page-hinkley-distance",
            DetectorKind::EwmaConfidence => "ewma-confidence",
            DetectorKind::PageHinkleyConfidence => "page-hinkley-confidence",
            DetectorKind::Cusum => "cusum",
            DetectorKind::Distribution => "distribution",
            DetectorKind::Embedding => "embedding",
            DetectorKind::Adwin => "adwin",
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a detector is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Samples are ignored (the scene settles).
    WarmUp,
    /// Samples build the reference statistics.
    Reference,
    /// The statistic is compared with the threshold; an alarm is an onset.
    Monitoring,
    /// In drift since the last onset; no further events until it has left.
    Drift,
    /// Left drift; an alarm now returns to drift without a new event.
    Cooldown,
}

/// One drift onset. Emitted exactly once per onset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// Which detector fired.
    pub detector: DetectorKind,
    /// The detector's statistic at the onset.
    pub statistic: f64,
    /// The threshold it crossed (after any false-alarm raises).
    pub threshold: f64,
    /// Size of the change: signed shift of the recent mean in reference σ for scalar
    /// detectors, RMS per-dimension shift in σ for embeddings, JS divergence (bits) for the
    /// class mix.
    pub magnitude: f64,
    /// The sample that triggered it.
    pub sample_id: u64,
    /// Index of that sample among all observations the detector was given (0-based).
    pub at: u64,
}

/// A drift detector: one observation in, at most one event out.
pub trait Detector: Send {
    /// Which detector this is.
    fn kind(&self) -> DetectorKind;
    /// Feed one sample; returns the event if this sample is a drift onset.
    fn update(&mut self, obs: &Observation<'_>) -> Option<DriftEvent>;
    /// The shared lifecycle part of the detector's state.
    fn lifecycle(&self) -> &LifecycleState;
    /// The same, mutable.
    fn lifecycle_mut(&mut self) -> &mut LifecycleState;
    /// The current phase.
    fn state(&self) -> Phase {
        self.lifecycle().phase
    }
    /// The current statistic (0 before monitoring) and the current threshold, for plots.
    fn statistic(&self) -> (f64, f64);
    /// Start over: forget drift, cooldown, accumulators, raised thresholds and the learnt
    /// reference (an injected reference is kept and monitoring resumes at once).
    fn reset(&mut self);
    /// A human says `event` was a false alarm: accept its condition as normal (and raise the
    /// threshold within bounds) so the same condition does not fire again.
    fn false_alarm(&mut self, event: &DriftEvent);
    /// A human confirmed `event`: keep the reference as it is (only counted).
    fn confirmed(&mut self, event: &DriftEvent) {
        if event.detector == self.kind() {
            let life = self.lifecycle_mut();
            life.confirmed = life.confirmed.saturating_add(1);
        }
    }
    /// How many observations were ignored as invalid.
    fn ignored(&self) -> u64 {
        self.lifecycle().ignored
    }
    /// The persistent state.
    fn save(&self) -> DetectorState;
    /// Replace the state with a saved one (validated; on error nothing changes).
    fn load(&mut self, state: DetectorState) -> Result<(), DriftError>;
}
