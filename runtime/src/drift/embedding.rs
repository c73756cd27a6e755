//! Embedding-statistics shift: a running (EWMA) mean embedding against the reference mean,
//! per dimension in units of the reference spread (the original's `FeatureMonitor`, with
//! bounded memory: a handful of vectors of the embedding's length).
//!
//! `z_d = excess_d / σ_d`, where `excess_d` is how far the running mean lies outside the
//! accepted band of dimension `d` (the reference mean, widened by false-alarm feedback).
//! The statistic is `RMS_d(z_d) / √(λ/(2 − λ) + 1/n_ref)`: the denominator is the RMS the
//! running mean has without drift (its own spread plus the reference mean's estimation
//! error), so the statistic is ≈ 1 on stationary input whatever the embedding length.
//! Alarm above `threshold`, drift ends below `exit-threshold`.

use serde::{Deserialize, Serialize};

use super::config::{CommonConfig, EmbeddingConfig};
use super::error::{DriftError, check_finite, invalid};
use super::lifecycle::{LifecycleState, Stage, Transition};
use super::monitor::{Monitor, Statistic, life_in_field, state_variant};
use super::set::DetectorState;
use super::{DetectorKind, DriftEvent, Observation, Phase};

const KIND: DetectorKind = DetectorKind::Embedding;

/// An injected embedding reference (e.g. from `tinylcm init-state`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingReference {
    /// Per-dimension mean.
    pub mean: Vec<f32>,
    /// Per-dimension standard deviation.
    pub std: Vec<f32>,
    /// How many samples the reference came from (its estimation error enters the null level).
    pub samples: u64,
}

/// Persistent state of an [`EmbeddingShift`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingState {
    /// Life cycle.
    pub life: LifecycleState,
    /// Embedding length, fixed by the first reference sample (0: not yet known).
    pub dim: u32,
    /// Reference samples seen.
    pub n_ref: u64,
    /// Reference mean.
    pub mean: Vec<f64>,
    /// Sum of squared deviations while learning, σ (floored) afterwards.
    pub spread: Vec<f64>,
    /// Reference is final (`spread` holds σ).
    pub reference_done: bool,
    /// Lower end of the accepted band per dimension.
    pub lo: Vec<f64>,
    /// Upper end of the accepted band per dimension.
    pub hi: Vec<f64>,
    /// Running mean embedding.
    pub ewma: Vec<f64>,
    /// Running mean at the highest statistic since the last onset.
    pub onset: Vec<f64>,
    /// That highest statistic.
    pub peak: f64,
    /// Last statistic.
    pub stat: f64,
    /// Last RMS shift of the running mean from the reference mean, in σ.
    pub magnitude: f64,
}

/// Embedding mean-shift detector.
pub type EmbeddingShift = Monitor<EmbeddingConfig>;

impl EmbeddingShift {
    fn allocate(&mut self, d: usize) {
        let st = &mut self.st;
        st.dim = d as u32;
        st.mean = vec![0.0; d];
        st.spread = vec![0.0; d];
        st.lo = vec![0.0; d];
        st.hi = vec![0.0; d];
        st.ewma = vec![0.0; d];
        st.onset = vec![0.0; d];
    }

    /// `spread` holds σ: floor it, start band and running mean at the reference mean.
    fn finish_reference(&mut self) {
        let st = &mut self.st;
        let d = st.dim as usize;
        let avg = st.spread.iter().sum::<f64>() / d.max(1) as f64;
        let floor = (1e-3 * avg).max(1e-9);
        for s in &mut st.spread {
            *s = s.max(floor);
        }
        st.lo.copy_from_slice(&st.mean);
        st.hi.copy_from_slice(&st.mean);
        st.ewma.copy_from_slice(&st.mean);
        st.reference_done = true;
    }

    fn threshold(&self) -> f64 {
        self.config.threshold * self.st.life.threshold_factor
    }

    fn null_level(&self) -> f64 {
        let l = self.config.lambda;
        (l / (2.0 - l) + 1.0 / self.st.n_ref.max(1) as f64).sqrt()
    }

    fn accept(&mut self, from_onset: bool) {
        let st = &mut self.st;
        let level = if from_onset { &st.onset } else { &st.ewma };
        for (i, &v) in level.iter().enumerate() {
            st.lo[i] = st.lo[i].min(v);
            st.hi[i] = st.hi[i].max(v);
        }
    }
}

impl Statistic for EmbeddingConfig {
    type State = EmbeddingState;
    type Reference = EmbeddingReference;

    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn fresh(&self, common: &CommonConfig) -> EmbeddingState {
        EmbeddingState {
            life: LifecycleState::new(common, false),
            dim: 0,
            n_ref: 0,
            mean: Vec::new(),
            spread: Vec::new(),
            reference_done: false,
            lo: Vec::new(),
            hi: Vec::new(),
            ewma: Vec::new(),
            onset: Vec::new(),
            peak: 0.0,
            stat: 0.0,
            magnitude: 0.0,
        }
    }

    life_in_field!();

    fn inject(m: &mut EmbeddingShift, reference: &EmbeddingReference) -> Result<(), DriftError> {
        let d = reference.mean.len();
        if d == 0
            || d > m.config.max_dim as usize
            || reference.std.len() != d
            || reference.samples < 2
            || reference
                .mean
                .iter()
                .chain(&reference.std)
                .any(|v| !v.is_finite())
            || reference.std.iter().any(|s| *s < 0.0)
        {
            return Err(DriftError::Reference {
                detector: KIND.name(),
                problem: format!(
                    "need mean and std of equal length 1..={}, finite, std >= 0, from >= 2 samples",
                    m.config.max_dim
                ),
            });
        }
        m.allocate(d);
        for i in 0..d {
            m.st.mean[i] = f64::from(reference.mean[i]);
            m.st.spread[i] = f64::from(reference.std[i]);
        }
        m.st.n_ref = reference.samples;
        m.finish_reference();
        Ok(())
    }

    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = m.st.life.begin();
        let known = m.st.dim as usize;
        let x = match obs.embedding {
            Some(x)
                if !x.is_empty()
                    && x.len() <= m.config.max_dim as usize
                    && (known == 0 || known == x.len())
                    && x.iter().all(|v| v.is_finite()) =>
            {
                x
            }
            _ => {
                m.st.life.ignore();
                return None;
            }
        };
        if m.st.life.phase == Phase::WarmUp {
            m.st.life.stage(&m.common);
            return None;
        }
        if known == 0 {
            m.allocate(x.len());
        }
        match m.st.life.stage(&m.common) {
            Stage::Skip => return None,
            stage @ (Stage::Learn | Stage::LearnLast) => {
                let st = &mut m.st;
                st.n_ref = st.n_ref.saturating_add(1);
                let n = st.n_ref as f64;
                for (i, &v) in x.iter().enumerate() {
                    let v = f64::from(v);
                    let d = v - st.mean[i];
                    st.mean[i] += d / n;
                    st.spread[i] += d * (v - st.mean[i]);
                }
                if stage == Stage::LearnLast {
                    let denom = (st.n_ref.max(2) - 1) as f64;
                    for s in &mut st.spread {
                        *s = (*s / denom).sqrt();
                    }
                    m.finish_reference();
                }
                return None;
            }
            Stage::Active => {}
        }
        let lambda = m.config.lambda;
        let st = &mut m.st;
        let mut excess_sq = 0.0;
        let mut shift_sq = 0.0;
        for (i, &v) in x.iter().enumerate() {
            let e = &mut st.ewma[i];
            *e += lambda * (f64::from(v) - *e);
            let m = *e;
            let s = st.spread[i];
            let out = if m > st.hi[i] {
                m - st.hi[i]
            } else if m < st.lo[i] {
                st.lo[i] - m
            } else {
                0.0
            };
            excess_sq += (out / s) * (out / s);
            let z = (m - st.mean[i]) / s;
            shift_sq += z * z;
        }
        let d = x.len() as f64;
        let stat = (excess_sq / d).sqrt() / m.null_level();
        let stat = if stat.is_finite() { stat } else { f64::MAX };
        m.st.stat = stat;
        m.st.magnitude = (shift_sq / d).sqrt();
        let threshold = m.threshold();
        let alarm = stat > threshold;
        let clear = stat < m.config.exit_threshold;
        match m.st.life.step(alarm, clear, obs.sample_id, &m.common) {
            Transition::Onset => {
                let st = &mut m.st;
                st.peak = stat;
                st.onset.copy_from_slice(&st.ewma);
                return Some(DriftEvent {
                    detector: KIND,
                    statistic: stat,
                    threshold,
                    magnitude: st.magnitude,
                    sample_id: obs.sample_id,
                    at,
                });
            }
            Transition::Accept => m.accept(false),
            Transition::Reenter | Transition::Stay
                if m.st.life.phase == Phase::Drift && stat > m.st.peak =>
            {
                let st = &mut m.st;
                st.peak = stat;
                st.onset.copy_from_slice(&st.ewma);
            }
            Transition::Exit | Transition::Reenter | Transition::Resume | Transition::Stay => {}
        }
        None
    }

    fn statistic(m: &EmbeddingShift) -> (f64, f64) {
        (m.st.stat, m.threshold())
    }

    fn settle(&self) -> u64 {
        (3.0 / self.lambda).ceil() as u64
    }

    fn accept(m: &mut EmbeddingShift, latest: bool, _: &DriftEvent) {
        if latest {
            m.accept(true);
        }
    }

    state_variant!(Embedding);

    fn validate(m: &EmbeddingShift, st: &EmbeddingState) -> Result<(), DriftError> {
        let name = KIND.name();
        let d = st.dim as usize;
        if d > m.config.max_dim as usize {
            return Err(invalid(
                name,
                "embedding length exceeds `drift.embedding.max-dim`",
            ));
        }
        let vectors = [&st.mean, &st.spread, &st.lo, &st.hi, &st.ewma, &st.onset];
        if vectors.iter().any(|v| v.len() != d) {
            return Err(invalid(
                name,
                "vector lengths do not match the embedding length",
            ));
        }
        if (d == 0 || !st.reference_done) && st.life.active() {
            return Err(invalid(name, "monitoring without a reference"));
        }
        check_finite(
            name,
            "vectors",
            vectors
                .iter()
                .flat_map(|v| v.iter().copied())
                .chain([st.stat, st.magnitude, st.peak]),
        )?;
        if st
            .spread
            .iter()
            .any(|s| *s < 0.0 || (st.reference_done && *s <= 0.0))
        {
            return Err(invalid(name, "spread is not positive"));
        }
        if (0..d).any(|i| st.lo[i] > st.hi[i]) {
            return Err(invalid(name, "band lower end above its upper end"));
        }
        Ok(())
    }
}
