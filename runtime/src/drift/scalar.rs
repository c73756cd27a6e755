//! Pieces the scalar detectors share: reading the signal, the learnt reference with its
//! acceptance band and rolling update, and the one-sided cumulative sum.

use serde::{Deserialize, Serialize};

use super::Observation;
use super::config::{CommonConfig, Signal};
use super::error::{DriftError, check_finite, invalid};
use super::lifecycle::{LifecycleState, Stage};

/// Largest standardised value fed to a sum: one absurd sample cannot overflow anything.
const Z_CAP: f64 = 1e6;
/// Standardised samples are winsorised at ±this many σ before they enter a sum or an
/// EWMA: real confidences and distances are skewed with long tails, and a few tail samples
/// must not add up to an alarm. A shift of the mean still moves every sample.
pub(crate) const WINSOR: f64 = 3.0;
/// Sums saturate here (a drift lasting forever stays finite).
const SUM_CAP: f64 = 1e12;
/// Weight of the newest sample in the recent level used for magnitudes.
const RECENT_WEIGHT: f64 = 0.1;

impl Signal {
    /// The value of this signal in `obs`, if it is usable.
    pub(crate) fn value(self, obs: &Observation<'_>) -> Option<f64> {
        let v = match self {
            Signal::Confidence => obs.confidence,
            Signal::Distance => obs.knn_distance?,
        };
        v.is_finite().then_some(f64::from(v))
    }
}

/// An injected scalar reference (e.g. from `tinylcm init-state`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalarReference {
    /// Reference mean.
    pub mean: f64,
    /// Reference standard deviation.
    pub std: f64,
}

/// The learnt reference of a scalar detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalarState {
    /// Samples in the accumulator (reference phase, then the current rolling batch).
    pub n: u64,
    /// Running mean of the accumulator.
    pub acc_mean: f64,
    /// Running sum of squared deviations of the accumulator.
    pub acc_m2: f64,
    /// Reference mean.
    pub center: f64,
    /// Reference standard deviation (floored).
    pub sigma: f64,
    /// Lower end of the accepted band of means (starts at `center`).
    pub lo: f64,
    /// Upper end of the accepted band of means.
    pub hi: f64,
    /// Recent level (EWMA with weight 0.1), for magnitudes.
    pub recent: f64,
    /// Samples since the last onset.
    pub onset_n: u64,
    /// Mean since the last onset.
    pub onset_mean: f64,
    /// Mean level of the last finished drift episode (onset to exit).
    pub episode: Option<f64>,
}

fn floor_sigma(mean: f64, std: f64) -> f64 {
    std.max(1e-3 * mean.abs()).max(1e-9)
}

impl ScalarState {
    /// Empty, to be learnt.
    pub(crate) fn new() -> Self {
        ScalarState {
            n: 0,
            acc_mean: 0.0,
            acc_m2: 0.0,
            center: 0.0,
            sigma: 1.0,
            lo: 0.0,
            hi: 0.0,
            recent: 0.0,
            onset_n: 0,
            onset_mean: 0.0,
            episode: None,
        }
    }

    /// From an injected reference.
    pub(crate) fn injected(name: &'static str, r: ScalarReference) -> Result<Self, DriftError> {
        if !r.mean.is_finite() || !r.std.is_finite() || r.std < 0.0 {
            return Err(DriftError::Reference {
                detector: name,
                problem: format!("mean {} and std {} must be finite, std >= 0", r.mean, r.std),
            });
        }
        let mut s = ScalarState::new();
        s.set_reference(r.mean, r.std);
        Ok(s)
    }

    fn set_reference(&mut self, mean: f64, std: f64) {
        self.center = mean;
        self.sigma = floor_sigma(mean, std);
        self.lo = mean;
        self.hi = mean;
        self.recent = mean;
        self.clear_acc();
    }

    fn clear_acc(&mut self) {
        self.n = 0;
        self.acc_mean = 0.0;
        self.acc_m2 = 0.0;
    }

    fn acc(&mut self, x: f64) {
        self.n = self.n.saturating_add(1);
        let d = x - self.acc_mean;
        self.acc_mean += d / self.n as f64;
        self.acc_m2 += d * (x - self.acc_mean);
    }

    /// Add a reference sample.
    pub(crate) fn learn(&mut self, x: f64) {
        self.acc(x);
    }

    /// Advance `life` by the valid sample `x` and, while it builds the reference, learn `x`
    /// (finishing the reference on its last sample). Returns the stage: the scalar
    /// detectors compute their statistic only when it is [`Stage::Active`].
    pub(crate) fn admit(
        &mut self,
        life: &mut LifecycleState,
        common: &CommonConfig,
        x: f64,
    ) -> Stage {
        let stage = life.stage(common);
        match stage {
            Stage::Learn => self.learn(x),
            Stage::LearnLast => {
                self.learn(x);
                self.finish();
            }
            Stage::Skip | Stage::Active => {}
        }
        stage
    }

    /// The reference is complete: fix mean and σ.
    pub(crate) fn finish(&mut self) {
        let std = if self.n > 1 {
            (self.acc_m2 / (self.n - 1) as f64).sqrt()
        } else {
            0.0
        };
        self.set_reference(self.acc_mean, std);
    }

    /// Track the recent level and the mean since the onset.
    pub(crate) fn observe(&mut self, x: f64) {
        self.recent += RECENT_WEIGHT * (x - self.recent);
        self.onset_n = self.onset_n.saturating_add(1);
        self.onset_mean += (x - self.onset_mean) / self.onset_n as f64;
    }

    /// A new onset: restart the since-onset mean.
    pub(crate) fn onset(&mut self) {
        self.onset_n = 0;
        self.onset_mean = 0.0;
        self.episode = None;
    }

    /// The drift episode ended: remember its level for a later false-alarm verdict.
    pub(crate) fn end_episode(&mut self) {
        if self.onset_n > 0 {
            self.episode = Some(self.onset_mean);
        }
    }

    /// A false alarm that arrived outside its drift: accept the finished episode's level when
    /// the event is the last onset (`latest`), else the level recorded in the event.
    pub(crate) fn accept_event(&mut self, latest: bool, magnitude: f64) {
        match self.episode {
            Some(level) if latest => self.accept_level(level),
            _ => self.accept_magnitude(magnitude),
        }
    }

    /// Rolling reference update (monitoring only): every `interval` samples,
    /// `reference ← (1 − β)·reference + β·batch`.
    pub(crate) fn roll(&mut self, x: f64, common: &CommonConfig) {
        if common.reference_beta <= 0.0 {
            return;
        }
        self.acc(x);
        if self.n >= u64::from(common.reference_interval) {
            let beta = common.reference_beta;
            let batch_std = (self.acc_m2 / (self.n - 1) as f64).sqrt();
            let shift = beta * (self.acc_mean - self.center);
            self.center += shift;
            self.lo += shift;
            self.hi += shift;
            let var = (1.0 - beta) * self.sigma * self.sigma + beta * batch_std * batch_std;
            self.sigma = floor_sigma(self.center, var.sqrt());
            self.clear_acc();
        }
    }

    /// Drop a partial rolling batch (drift began).
    pub(crate) fn drop_batch(&mut self) {
        self.clear_acc();
    }

    /// How far above the accepted band `x` is, in σ (negative inside or below).
    pub(crate) fn z_up(&self, x: f64) -> f64 {
        ((x - self.hi) / self.sigma).clamp(-Z_CAP, Z_CAP)
    }

    /// How far below the accepted band `x` is, in σ.
    pub(crate) fn z_down(&self, x: f64) -> f64 {
        ((self.lo - x) / self.sigma).clamp(-Z_CAP, Z_CAP)
    }

    /// `x` winsorised to the accepted band ± [`WINSOR`] σ.
    pub(crate) fn winsorise(&self, x: f64) -> f64 {
        x.clamp(self.lo - WINSOR * self.sigma, self.hi + WINSOR * self.sigma)
    }

    /// Signed shift of the recent level from the reference mean, in σ.
    pub(crate) fn magnitude(&self) -> f64 {
        (self.recent - self.center) / self.sigma
    }

    /// Accept a level (in σ from the centre) as normal: widen the band to include it.
    pub(crate) fn accept_magnitude(&mut self, magnitude: f64) {
        if magnitude.is_finite() {
            self.accept_level(self.center + magnitude.clamp(-Z_CAP, Z_CAP) * self.sigma);
        }
    }

    /// Accept the level since the onset (or the recent level when there is none).
    pub(crate) fn accept_since_onset(&mut self) {
        let level = if self.onset_n > 0 {
            self.onset_mean
        } else {
            self.recent
        };
        self.accept_level(level);
    }

    fn accept_level(&mut self, level: f64) {
        if level.is_finite() {
            self.lo = self.lo.min(level);
            self.hi = self.hi.max(level);
        }
    }

    /// Check a loaded reference.
    pub(crate) fn validate(&self, name: &'static str) -> Result<(), DriftError> {
        check_finite(
            name,
            "reference",
            [
                self.acc_mean,
                self.acc_m2,
                self.center,
                self.sigma,
                self.lo,
                self.hi,
                self.recent,
                self.onset_mean,
                self.episode.unwrap_or(0.0),
            ],
        )?;
        if self.sigma <= 0.0 || self.acc_m2 < 0.0 {
            return Err(invalid(name, "reference spread is not positive"));
        }
        if self.lo > self.center || self.hi < self.center {
            return Err(invalid(
                name,
                "accepted band does not contain the reference mean",
            ));
        }
        Ok(())
    }
}

/// A one-sided cumulative sum `s ← max(0, s + z − k)` (this is also the Page-Hinkley
/// statistic `m − min m`), with its recovery twin `r ← max(0, r + k − z)` that measures the
/// evidence that the mean is back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OneSided {
    /// Detection sum.
    pub s: f64,
    /// Recovery sum (reset at each onset).
    pub r: f64,
}

impl OneSided {
    /// Add one standardised sample with allowance `k`.
    pub(crate) fn step(&mut self, z: f64, k: f64) {
        self.s = (self.s + z - k).clamp(0.0, SUM_CAP);
        self.r = (self.r + k - z).clamp(0.0, SUM_CAP);
    }

    /// Check a loaded sum.
    pub(crate) fn validate(&self, name: &'static str) -> Result<(), DriftError> {
        check_finite(name, "cumulative sum", [self.s, self.r])?;
        if self.s < 0.0 || self.r < 0.0 {
            return Err(invalid(name, "cumulative sum is negative"));
        }
        Ok(())
    }
}
