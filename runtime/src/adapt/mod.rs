//! Heuristic on-device adaptation: let the KNN learn from what the drift detectors put into
//! quarantine, without a human and without a network — and take it back when it hurts.
//!
//! One round, as the caller runs it (this module is a pure library: it never touches the
//! database, the snapshot store or the frame loop):
//!
//! ```text
//! quarantine ──► plan() ──► Plan ──(has changes?)──► snapshot KNN ──► apply() ──► Applied
//!  (id, vector)   cluster: DBSCAN, radius in reference units                 │ events (before)
//!                 per cluster: pseudo-label | new class | leave              ▼
//!                                                     frames ──► Guard::observe ──► Verdict
//!                                                                  Keep │ Rollback(reason)
//!                                                                       ▼ restore snapshot
//! ```
//!
//! * [`cluster()`](cluster()) — DBSCAN: sparse samples stay unclustered, so sensor noise never
//!   becomes a class; deterministic, O(n²) distances, O(n) memory.
//! * [`plan()`](plan()) — per cluster a [`Decision`]: compact and near a known class →
//!   [`Decision::PseudoLabel`]; compact and far from all → [`Decision::NewClass`] (`new-1`,
//!   `new-2`, …); otherwise [`Decision::Leave`] with the reason.
//! * [`apply()`](apply()) — adds each changing cluster's representatives (medoid first, then
//!   spread) to the KNN and returns what was added and evicted, with one
//!   [`AdaptationEvent`] per cluster.
//! * [`Guard`] — compares label-free [`ProxyMetrics`] of `guard-frames` frames after the
//!   adaptation with those before ([`Baseline`]); the [`Verdict`] is computed once.
//!
//! All thresholds are factors of the [`Reference`] (the leave-one-out mean k-NN distance of
//! the initial KNN and its σ), never raw distances.
//!
//! What the original proof of concept did, and why this differs: its "clustering" grouped
//! samples by their (wrong) prediction, its compactness bound (mean squared distance ≤ 0.1)
//! could never be met by 256-d features, its pipeline never passed a sample to the
//! classifier, snapshots were empty and a rollback loaded an arbitrary one. Here every step
//! is a value that tests can check, the thresholds scale with the data, and rollback is the
//! caller restoring the snapshot it took before [`apply()`](apply()).
//!
//! # Configuration
//!
//! The `[adaptation]` section ([`AdaptationConfig`]), with its defaults:
//!
//! ```toml
//! [adaptation]
//! enabled = true               # every change is snapshotted first and guarded after
//! min-pending = 30             # quarantined samples before a round is attempted
//! min-cluster-size = 12        # members a cluster needs to change the KNN
//! radius = 1.25                # clustering neighbourhood, × reference mean distance
//! min-neighbors = 4            # neighbours within radius that make a sample a cluster core
//! compactness = 1.5            # max mean member–centroid distance, × reference mean
//! near-factor = 0.5            # centroid within this of a class → pseudo-label it
//! far-factor = 2.0             # beyond this from every class → propose a new class
//! representatives = 8          # samples added per cluster at most
//! max-new-classes = 4          # proposed classes the KNN may hold at once
//! new-class-prefix = "new-"    # proposed classes are named new-1, new-2, …
//! guard-frames = 150           # frames watched after an adaptation before keep/rollback
//! confidence-drop = 0.15       # roll back when mean confidence falls by more than this
//! distance-growth = 1.0        # … or mean k-NN distance grows by more than this many σ
//! class-mix-max-share = 0.8    # … or one class takes more than this share (none did before)
//! shift-window = 50            # frames the stream's mean spans (the scene's common shift)
//! local-shift = 1.0            # aligned samples this many σ farther → a new object, not the scene
//! min-stream-shift = 1.5       # the stream's shift (× reference mean) that makes a change judgeable
//! wide-far-factor = 2.0        # > 0: a compact cluster this far from all classes is new, even scene-wide
//! pseudo-label-agreement = 1.0 # aligned vote share a scene-wide pseudo-label needs
//! pseudo-label-head-agreement = true # … and the model's head must name the same class
//! scene-agreement = 0.6        # > 0: fewer head/vote agreements than this share → plan as local
//! pseudo-labels-per-class = 16 # samples a scene-wide round adds per class
//! protected-drop = 0.01        # roll back at once when the original samples' agreement falls more
//! proposed-reach = 1.75        # > 0: a proposed class is a neighbour only this near its samples
//! pseudo-label-displacement = true # drop pseudo-labels near shifted samples the head calls otherwise
//! ```
//!
//! # Measured behaviour
//!
//! On the integration tests' synthetic world (32-d, two known classes with σ = 1 per
//! dimension about 32 apart, reference mean ≈ 6.5, 40 seeds; `measure_margins` in
//! `runtime/tests/adapt.rs`, ignored, prints them): a quarantined class as spread as the
//! known ones measures compactness 0.80–0.89 (bound 1.0); a copy of a known class shifted by
//! 0.3 reference has its centroid at 0.65–0.79 (near bound 1.0); a new object at 3.4–5.6
//! (far bound 2.0); a group shifted by 1.2 reference at 1.16–1.33 (left alone). With radius 1.25,
//! DBSCAN cannot link a Gaussian blob much wider than compactness ≈ 0.9, so the compactness
//! bound mostly rejects smears (gradual drifts linked sample to sample), and scattered noise
//! never forms a cluster at all.
//!
//! # Cost and where to run it
//!
//! Planning costs up to n² distance evaluations over the n pending samples (n ≤
//! [`MAX_POINTS`]) plus one pass over the KNN per cluster. `cargo bench -p tinylcm
//! --bench adapt` on the build machine (2 EPYC cores under load, release): 500 × 32-d
//! ≈ 4 ms, 500 × 256-d ≈ 14 ms, 2 000 × 256-d ≈ 230 ms — several times that on a Pi Zero 2 W,
//! so planning must run off the inference thread, on a clone of the KNN (or between frames
//! only when the quarantine is small). [`apply()`](apply()) (microseconds) and the per-frame
//! [`ProxyMetrics::observe`] (≈ 7 ns, allocation-free) belong on the thread that owns the
//! KNN.

mod apply;
mod cluster;
mod config;
mod displace;
mod error;
mod guard;
mod plan;
mod protect;
mod reach;
mod reference;
mod scene;
#[cfg(test)]
mod test_knn;

pub use apply::{
    AdaptationEvent, AddedSample, Applied, EventKind, MAX_EVENT_MEMBERS, apply, apply_keeping,
};
pub use cluster::{Cluster, ClusterParams, Clustering, MAX_POINTS, REPRESENTATIVE_REACH, cluster};
pub use config::{AdaptationConfig, MAX_GUARD_FRAMES, MAX_PREFIX_BYTES, MAX_REPRESENTATIVES};
pub use error::{AdaptError, KnnErrorText};
pub use guard::{Baseline, Guard, ProxyMetrics, RollbackReason, Verdict};
pub use plan::{
    Decision, Deferred, Nearest, Plan, PlannedCluster, Representative, Sample, Why, plan,
    plan_round,
};
pub use protect::{Protected, Room};
pub use reach::{is_proposed, limit_proposed};
pub use reference::Reference;
pub use scene::{
    Evidence, PseudoLabelRule, Scene, StreamShift, head_agreement, judge, pseudo_labels, spread,
};
