//! Watching an adaptation from the outside and undoing it when it made things worse.
//!
//! No labels exist on the device, so "worse" is judged by label-free proxy metrics of the
//! frames after the adaptation against those before it: the mean confidence, the mean k-NN
//! distance and the class mix. After `guard-frames` valid frames the [`Guard`] decides once:
//!
//! * [`RollbackReason::ConfidenceCollapse`]: the mean confidence fell by more than
//!   `confidence-drop` (absolute) — the new samples confuse the vote;
//! * [`RollbackReason::DistanceGrowth`]: the mean k-NN distance grew by more than
//!   `distance-growth` reference σ — adding samples can only shorten distances, so growth
//!   means evictions removed what the stream needs, or the world moved on;
//! * [`RollbackReason::ClassMixExplosion`]: one class takes more than `class-mix-max-share` of
//!   the predictions while no class did before — a pseudo-label swallowing the stream. A scene
//!   that was already dominated by one class (typically the class a new object was mistaken
//!   for) may stay dominated by the new class without a rollback.
//!
//! Checked in that order; the first that fires is the reason, otherwise [`Verdict::Keep`].
//! The original's rollback check could only fire on quarantine growth and restored empty
//! snapshots; here the verdict is a value and the caller restores its own snapshot.
//!
//! [`ProxyMetrics::observe`] runs per frame and allocates nothing (running means, fixed class
//! slots); the verdict moves the accumulated metrics out, so deciding allocates nothing
//! either. [`Baseline`] keeps the "before" metrics of the most recent frames.

use serde::{Deserialize, Serialize};

use super::{AdaptError, AdaptationConfig, Reference};
use crate::knn::MAX_LABELS;

/// Label-free metrics of a run of frames.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProxyMetrics {
    /// Valid frames observed (confidence finite and within 0..=1).
    pub frames: u64,
    /// Mean confidence over them.
    pub mean_confidence: f64,
    /// Frames that carried a valid k-NN distance.
    pub distance_frames: u64,
    /// Mean k-NN distance over those.
    pub mean_distance: f64,
    /// Predictions per class index (the KNN's label ids), fixed slots.
    pub class_counts: Vec<u64>,
    /// Predictions of class indices beyond the slots.
    pub other_classes: u64,
    /// Observations ignored as invalid.
    pub ignored: u64,
}

impl ProxyMetrics {
    /// Empty metrics with slots for classes `0..classes` (at most the KNN's label limit).
    pub fn new(classes: usize) -> Self {
        ProxyMetrics {
            class_counts: vec![0; classes.min(MAX_LABELS)],
            ..ProxyMetrics::default()
        }
    }

    /// Account one frame: its confidence, its mean k-NN distance (if a search ran) and its
    /// predicted class index. A confidence that is not a number in 0..=1 makes the frame
    /// ignored (counted); an invalid distance is treated as absent. Never allocates.
    pub fn observe(&mut self, confidence: f32, distance: Option<f32>, class: usize) {
        if !(0.0..=1.0).contains(&confidence) {
            self.ignored += 1;
            return;
        }
        self.frames += 1;
        self.mean_confidence += (f64::from(confidence) - self.mean_confidence) / self.frames as f64;
        if let Some(d) = distance.filter(|d| d.is_finite() && *d >= 0.0) {
            self.distance_frames += 1;
            self.mean_distance += (f64::from(d) - self.mean_distance) / self.distance_frames as f64;
        }
        match self.class_counts.get_mut(class) {
            Some(c) => *c += 1,
            None => self.other_classes += 1,
        }
    }

    /// Number of class slots.
    pub fn classes(&self) -> usize {
        self.class_counts.len()
    }

    /// Share of the valid frames predicted as `class` (0 without frames).
    pub fn share(&self, class: usize) -> f64 {
        match (self.class_counts.get(class), self.frames) {
            (Some(&c), f) if f > 0 => c as f64 / f as f64,
            _ => 0.0,
        }
    }

    /// The class with the largest share and that share (ties: the lower index); `None`
    /// without frames.
    pub fn max_share(&self) -> Option<(usize, f64)> {
        if self.frames == 0 {
            return None;
        }
        let (i, &c) = self
            .class_counts
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|(_, c)| **c)?;
        Some((i, c as f64 / self.frames as f64))
    }

    /// Forget all frames, keep the class slots.
    pub fn clear(&mut self) {
        let mut counts = std::mem::take(&mut self.class_counts);
        counts.iter_mut().for_each(|c| *c = 0);
        *self = ProxyMetrics {
            class_counts: counts,
            ..ProxyMetrics::default()
        };
    }

    /// The metrics of both runs together (slots: the larger of the two).
    pub fn merged(&self, other: &ProxyMetrics) -> ProxyMetrics {
        let weighted = |a: f64, n: u64, b: f64, m: u64| {
            if n + m == 0 {
                0.0
            } else {
                (a * n as f64 + b * m as f64) / (n + m) as f64
            }
        };
        let slots = self.classes().max(other.classes());
        let count = |p: &ProxyMetrics, i: usize| p.class_counts.get(i).copied().unwrap_or(0);
        ProxyMetrics {
            frames: self.frames + other.frames,
            mean_confidence: weighted(
                self.mean_confidence,
                self.frames,
                other.mean_confidence,
                other.frames,
            ),
            distance_frames: self.distance_frames + other.distance_frames,
            mean_distance: weighted(
                self.mean_distance,
                self.distance_frames,
                other.mean_distance,
                other.distance_frames,
            ),
            class_counts: (0..slots)
                .map(|i| count(self, i) + count(other, i))
                .collect(),
            other_classes: self.other_classes + other.other_classes,
            ignored: self.ignored + other.ignored,
        }
    }

    /// The same frames with `classes` slots (counts of dropped slots move to
    /// [`other_classes`](Self::other_classes)).
    fn with_classes(mut self, classes: usize) -> ProxyMetrics {
        let classes = classes.min(MAX_LABELS);
        if classes < self.class_counts.len() {
            self.other_classes += self.class_counts[classes..].iter().sum::<u64>();
        }
        self.class_counts.resize(classes, 0);
        self
    }
}

/// Why an adaptation is rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackReason {
    /// Mean confidence fell by more than `confidence-drop`.
    ConfidenceCollapse,
    /// Mean k-NN distance grew by more than `distance-growth` σ.
    DistanceGrowth,
    /// One class took over the predictions.
    ClassMixExplosion,
    /// Fewer of the model's original reference samples are classified as their own class
    /// (leave-one-out) than before the round, by more than `protected-drop`: the round moved
    /// a class boundary into what the model knew. Decided at once, without waiting for frames.
    ProtectedSamples,
}

/// The guard's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Fewer than `guard-frames` valid frames seen.
    Pending,
    /// The adaptation stays; the metrics after it.
    Keep(ProxyMetrics),
    /// Restore the snapshot taken before the adaptation.
    Rollback {
        /// The first check that failed.
        reason: RollbackReason,
        /// The metrics after the adaptation.
        after: ProxyMetrics,
    },
}

/// Decides once whether an adaptation is kept, from `guard-frames` frames after it.
#[derive(Debug, Clone)]
pub struct Guard {
    before: ProxyMetrics,
    after: ProxyMetrics,
    frames: u64,
    confidence_drop: f64,
    distance_growth: f64,
    max_share: f64,
    verdict: Verdict,
}

impl Guard {
    /// A guard comparing against `before` (e.g. [`Baseline::metrics`]), for a KNN that now
    /// has `classes` labels (new classes get their own class-mix slot).
    pub fn new(
        before: ProxyMetrics,
        classes: usize,
        reference: &Reference,
        config: &AdaptationConfig,
    ) -> Result<Self, AdaptError> {
        config.validate()?;
        if before.frames == 0 {
            return Err(AdaptError::NoBaseline);
        }
        Ok(Guard {
            before,
            after: ProxyMetrics::new(classes),
            frames: u64::from(config.guard_frames),
            confidence_drop: config.confidence_drop,
            distance_growth: config.distance_growth * reference.sigma(),
            max_share: config.class_mix_max_share,
            verdict: Verdict::Pending,
        })
    }

    /// Account one frame after the adaptation (see [`ProxyMetrics::observe`]); the verdict,
    /// which is [`Verdict::Pending`] until `guard-frames` valid frames were seen and never
    /// changes afterwards (later frames are not counted). Allocates nothing.
    pub fn observe(&mut self, confidence: f32, distance: Option<f32>, class: usize) -> &Verdict {
        if matches!(self.verdict, Verdict::Pending) {
            self.after.observe(confidence, distance, class);
            if self.after.frames >= self.frames {
                self.decide();
            }
        }
        &self.verdict
    }

    /// Decide now, for `reason`, without waiting for frames (evidence that needs none, such
    /// as the protected samples). Nothing changes once a verdict was reached.
    pub fn reject(&mut self, reason: RollbackReason) -> &Verdict {
        if matches!(self.verdict, Verdict::Pending) {
            tracing::warn!(reason = ?reason, "adaptation rejected at once: roll back");
            self.verdict = Verdict::Rollback {
                reason,
                after: std::mem::take(&mut self.after),
            };
        }
        &self.verdict
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The metrics compared against.
    pub fn before(&self) -> &ProxyMetrics {
        &self.before
    }

    /// Valid frames seen after the adaptation, and how many are needed.
    pub fn progress(&self) -> (u64, u64) {
        match &self.verdict {
            Verdict::Pending => (self.after.frames, self.frames),
            _ => (self.frames, self.frames),
        }
    }

    fn decide(&mut self) {
        let (b, a) = (&self.before, &self.after);
        let reason = if b.mean_confidence - a.mean_confidence > self.confidence_drop {
            Some(RollbackReason::ConfidenceCollapse)
        } else if b.distance_frames > 0
            && a.distance_frames > 0
            && a.mean_distance - b.mean_distance > self.distance_growth
        {
            Some(RollbackReason::DistanceGrowth)
        } else if a.max_share().is_some_and(|(_, s)| s > self.max_share)
            && b.max_share().is_none_or(|(_, s)| s <= self.max_share)
        {
            Some(RollbackReason::ClassMixExplosion)
        } else {
            None
        };
        let after = std::mem::take(&mut self.after);
        tracing::info!(
            frames = after.frames,
            confidence_before = b.mean_confidence,
            confidence_after = after.mean_confidence,
            distance_before = b.mean_distance,
            distance_after = after.mean_distance,
            rollback = ?reason,
            "adaptation guard decided"
        );
        self.verdict = match reason {
            Some(reason) => {
                tracing::warn!(reason = ?reason, "adaptation made the proxy metrics worse: roll back");
                Verdict::Rollback { reason, after }
            }
            None => Verdict::Keep(after),
        };
    }
}

/// The "before" metrics: the frames of the last complete window and of the current one, so
/// the baseline always covers between one and two windows of the most recent frames.
#[derive(Debug, Clone)]
pub struct Baseline {
    current: ProxyMetrics,
    last: ProxyMetrics,
    window: u64,
}

impl Baseline {
    /// A baseline over windows of `window` frames (at least 1) with `classes` class slots.
    pub fn new(classes: usize, window: u32) -> Self {
        Baseline {
            current: ProxyMetrics::new(classes),
            last: ProxyMetrics::new(classes),
            window: u64::from(window.max(1)),
        }
    }

    /// Account one frame (allocation-free).
    pub fn observe(&mut self, confidence: f32, distance: Option<f32>, class: usize) {
        self.current.observe(confidence, distance, class);
        if self.current.frames >= self.window {
            std::mem::swap(&mut self.current, &mut self.last);
            self.current.clear();
        }
    }

    /// The baseline metrics (allocates: call once per adaptation).
    pub fn metrics(&self) -> ProxyMetrics {
        self.last.merged(&self.current)
    }

    /// Forget every frame (e.g. after a rollback, whose frames were not normal).
    pub fn clear(&mut self) {
        self.current.clear();
        self.last.clear();
    }

    /// Change the class slots after the KNN's labels changed (allocates).
    pub fn set_classes(&mut self, classes: usize) {
        self.current = std::mem::take(&mut self.current).with_classes(classes);
        self.last = std::mem::take(&mut self.last).with_classes(classes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::Metric;

    fn reference() -> Reference {
        Reference::new(10.0, 2.0, Metric::Euclidean).unwrap()
    }

    fn config() -> AdaptationConfig {
        AdaptationConfig {
            guard_frames: 10,
            ..AdaptationConfig::default()
        }
    }

    fn metrics(confidence: f32, distance: f32, classes: &[usize]) -> ProxyMetrics {
        let mut m = ProxyMetrics::new(3);
        for &c in classes {
            m.observe(confidence, Some(distance), c);
        }
        m
    }

    #[test]
    fn running_means_shares_and_invalid_input() {
        let mut m = ProxyMetrics::new(2);
        m.observe(0.5, Some(4.0), 0);
        m.observe(1.0, None, 1);
        m.observe(0.0, Some(f32::NAN), 7);
        m.observe(f32::NAN, Some(1.0), 0);
        m.observe(1.5, Some(1.0), 0);
        assert_eq!(m.frames, 3);
        assert_eq!(m.ignored, 2);
        assert!((m.mean_confidence - 0.5).abs() < 1e-12);
        assert_eq!((m.distance_frames, m.mean_distance), (1, 4.0));
        assert_eq!(m.class_counts, vec![1, 1]);
        assert_eq!(m.other_classes, 1);
        assert_eq!(m.max_share(), Some((0, 1.0 / 3.0)));
        assert_eq!(ProxyMetrics::new(2).max_share(), None);
    }

    #[test]
    fn merged_weights_by_frames() {
        let a = metrics(1.0, 2.0, &[0, 0, 0]);
        let b = metrics(0.0, 6.0, &[1]);
        let m = a.merged(&b);
        assert_eq!(m.frames, 4);
        assert!((m.mean_confidence - 0.75).abs() < 1e-12);
        assert!((m.mean_distance - 3.0).abs() < 1e-12);
        assert_eq!(m.class_counts, vec![3, 1, 0]);
    }

    #[test]
    fn verdict_is_pending_then_decided_once() {
        let before = metrics(0.9, 10.0, &[0, 1, 2, 0, 1, 2]);
        let mut g = Guard::new(before, 3, &reference(), &config()).unwrap();
        for i in 0..9 {
            assert_eq!(g.observe(0.9, Some(10.0), i % 3), &Verdict::Pending);
        }
        assert!(matches!(g.observe(0.9, Some(10.0), 0), Verdict::Keep(_)));
        // Later frames, however bad, change nothing.
        let kept = g.verdict().clone();
        for _ in 0..100 {
            g.observe(0.0, Some(1000.0), 0);
        }
        assert_eq!(g.verdict(), &kept);
        assert_eq!(g.progress(), (10, 10));
    }

    #[test]
    fn each_reason_fires() {
        let before = metrics(0.9, 10.0, &[0, 1, 2, 0, 1, 2]);
        let run = |conf: f32, dist: f32, class: fn(usize) -> usize| {
            let mut g = Guard::new(before.clone(), 3, &reference(), &config()).unwrap();
            for i in 0..10 {
                g.observe(conf, Some(dist), class(i));
            }
            g.verdict().clone()
        };
        let reason = |v: Verdict| match v {
            Verdict::Rollback { reason, .. } => Some(reason),
            _ => None,
        };
        assert_eq!(
            reason(run(0.7, 10.0, |i| i % 3)),
            Some(RollbackReason::ConfidenceCollapse)
        );
        // σ = 2, growth 1 σ: 12.5 is too far, 11.5 is not.
        assert_eq!(
            reason(run(0.9, 12.5, |i| i % 3)),
            Some(RollbackReason::DistanceGrowth)
        );
        assert_eq!(reason(run(0.9, 11.5, |i| i % 3)), None);
        assert_eq!(
            reason(run(0.9, 10.0, |_| 1)),
            Some(RollbackReason::ClassMixExplosion)
        );
        // Already dominated before: a new dominant class is no explosion.
        let dominated = metrics(0.9, 10.0, &[0; 10]);
        let mut g = Guard::new(dominated, 3, &reference(), &config()).unwrap();
        for _ in 0..10 {
            g.observe(0.9, Some(10.0), 2);
        }
        assert!(matches!(g.verdict(), Verdict::Keep(_)));
    }

    #[test]
    fn guard_needs_a_baseline() {
        let err = Guard::new(ProxyMetrics::new(3), 3, &reference(), &config()).unwrap_err();
        assert_eq!(err, AdaptError::NoBaseline);
    }

    #[test]
    fn baseline_covers_one_to_two_windows() {
        let mut b = Baseline::new(2, 4);
        for _ in 0..4 {
            b.observe(0.2, Some(1.0), 0);
        }
        for _ in 0..2 {
            b.observe(0.8, Some(3.0), 1);
        }
        let m = b.metrics();
        assert_eq!(m.frames, 6);
        for _ in 0..2 {
            b.observe(0.8, Some(3.0), 1);
        }
        let m = b.metrics();
        assert_eq!(m.frames, 4);
        assert!((m.mean_confidence - 0.8).abs() < 1e-6);
        b.set_classes(3);
        b.observe(0.8, Some(3.0), 2);
        assert_eq!(b.metrics().class_counts, vec![0, 4, 1]);
        b.clear();
        assert_eq!(b.metrics().frames, 0);
    }
}
