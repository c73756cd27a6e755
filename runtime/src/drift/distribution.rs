//! Prediction-distribution shift: the class mix of the last `window` predictions against the
//! reference class mix (the original's `PredictionDistributionMonitor`, bounded).
//!
//! The window is a fixed ring buffer with per-class counts, so a sample costs O(classes)
//! and no allocation. The statistic is the Jensen–Shannon divergence in bits (0..=1) between
//! the smoothed window histogram and the reference (the smallest over the reference and any
//! histograms accepted by false-alarm feedback, at most [`MAX_ACCEPTED`]). Alarm above
//! `threshold`, drift ends below `exit-threshold`.

use serde::{Deserialize, Serialize};

use super::config::{CommonConfig, DistributionConfig};
use super::error::{DriftError, check_finite, invalid};
use super::lifecycle::{LifecycleState, Stage, Transition};
use super::monitor::{Monitor, Statistic, life_in_field, state_variant};
use super::set::DetectorState;
use super::{DetectorKind, DriftEvent, Observation, Phase};

const KIND: DetectorKind = DetectorKind::Distribution;

/// Most histograms false-alarm feedback can add to the reference.
pub const MAX_ACCEPTED: usize = 4;

/// Persistent state of a [`DistributionShift`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionState {
    /// Life cycle.
    pub life: LifecycleState,
    /// Class count, fixed by the first reference sample (0: not yet known).
    pub num_classes: u32,
    /// Reference counts while learning, reference probabilities afterwards.
    pub reference: Vec<f64>,
    /// Reference probabilities are final.
    pub reference_done: bool,
    /// Accepted histograms, `num_classes` each, concatenated.
    pub accepted: Vec<f64>,
    /// Ring buffer of recent classes.
    pub window: Vec<u32>,
    /// Next write position in `window`.
    pub head: u32,
    /// Valid entries in `window`.
    pub filled: u32,
    /// Per-class counts of `window`.
    pub counts: Vec<u32>,
    /// Window histogram at the highest statistic since the last onset.
    pub onset: Vec<f64>,
    /// That highest statistic.
    pub peak: f64,
    /// Last statistic.
    pub stat: f64,
}

/// Class-mix shift detector.
pub type DistributionShift = Monitor<DistributionConfig>;

fn js_bits(p: impl Iterator<Item = f64>, q: &[f64]) -> f64 {
    let mut s = 0.0;
    for (p, &q) in p.zip(q) {
        let m = 0.5 * (p + q);
        if p > 0.0 {
            s += p * (p / m).ln();
        }
        if q > 0.0 {
            s += q * (q / m).ln();
        }
    }
    (0.5 * s / std::f64::consts::LN_2).clamp(0.0, 1.0)
}

impl DistributionShift {
    fn allocate(&mut self, k: usize) {
        let st = &mut self.st;
        st.num_classes = k as u32;
        st.reference = vec![0.0; k];
        st.accepted = Vec::with_capacity(k * MAX_ACCEPTED);
        st.window = vec![0; self.config.window as usize];
        st.head = 0;
        st.filled = 0;
        st.counts = vec![0; k];
        st.onset = vec![0.0; k];
    }

    fn threshold(&self) -> f64 {
        self.config.threshold * self.st.life.threshold_factor
    }

    fn window_probs(&self) -> impl Iterator<Item = f64> + '_ {
        let k = self.st.num_classes as f64;
        let a = self.config.smoothing;
        let denom = f64::from(self.st.filled) + k * a;
        self.st
            .counts
            .iter()
            .map(move |&c| (f64::from(c) + a) / denom)
    }

    fn window_prob(&self, i: usize) -> f64 {
        let k = self.st.num_classes as f64;
        let a = self.config.smoothing;
        let c = self.st.counts.get(i).copied().unwrap_or(0);
        (f64::from(c) + a) / (f64::from(self.st.filled) + k * a)
    }

    fn divergence(&self) -> f64 {
        let k = self.st.num_classes as usize;
        let mut best = js_bits(self.window_probs(), &self.st.reference);
        for hist in self.st.accepted.chunks_exact(k.max(1)) {
            best = best.min(js_bits(self.window_probs(), hist));
        }
        best
    }

    fn push(&mut self, class: u32) {
        let st = &mut self.st;
        let w = st.window.len() as u32;
        if st.filled == w {
            let old = st.window[st.head as usize] as usize;
            st.counts[old] -= 1;
        } else {
            st.filled += 1;
        }
        st.window[st.head as usize] = class;
        st.counts[class as usize] += 1;
        st.head = (st.head + 1) % w;
    }

    fn accept(&mut self, from_onset: bool) {
        let k = self.st.num_classes as usize;
        if k == 0 {
            return;
        }
        if self.st.accepted.len() >= k * MAX_ACCEPTED {
            let len = self.st.accepted.len();
            self.st.accepted.truncate(len - k);
        }
        if from_onset {
            let st = &mut self.st;
            st.accepted.extend_from_slice(&st.onset);
        } else {
            for i in 0..k {
                let p = self.window_prob(i);
                self.st.accepted.push(p);
            }
        }
    }
}

impl Statistic for DistributionConfig {
    type State = DistributionState;
    type Reference = Vec<f64>;

    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn fresh(&self, common: &CommonConfig) -> DistributionState {
        DistributionState {
            life: LifecycleState::new(common, false),
            num_classes: 0,
            reference: Vec::new(),
            reference_done: false,
            accepted: Vec::new(),
            window: Vec::new(),
            head: 0,
            filled: 0,
            counts: Vec::new(),
            onset: Vec::new(),
            peak: 0.0,
            stat: 0.0,
        }
    }

    life_in_field!();

    /// The class probabilities `reference` (one per class, scaled to sum to 1).
    fn inject(m: &mut DistributionShift, reference: &Vec<f64>) -> Result<(), DriftError> {
        let k = reference.len();
        let sum: f64 = reference.iter().sum();
        if k < 2
            || k > m.config.max_classes as usize
            || reference.iter().any(|p| !p.is_finite() || *p < 0.0)
            || sum <= 0.0
        {
            return Err(DriftError::Reference {
                detector: KIND.name(),
                problem: format!(
                    "need 2..={} finite non-negative class probabilities with a positive sum",
                    m.config.max_classes
                ),
            });
        }
        m.allocate(k);
        for (r, p) in m.st.reference.iter_mut().zip(reference) {
            *r = p / sum;
        }
        m.st.reference_done = true;
        Ok(())
    }

    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = m.st.life.begin();
        let k = obs.num_classes;
        let known = m.st.num_classes as usize;
        if k < 2
            || k > m.config.max_classes as usize
            || obs.predicted >= k
            || (known != 0 && known != k)
        {
            m.st.life.ignore();
            return None;
        }
        if m.st.life.phase == Phase::WarmUp {
            m.st.life.stage(&m.common);
            return None;
        }
        if known == 0 {
            m.allocate(k);
        }
        let class = obs.predicted as u32;
        m.push(class);
        match m.st.life.stage(&m.common) {
            Stage::Skip => return None,
            Stage::Learn => {
                m.st.reference[class as usize] += 1.0;
                return None;
            }
            Stage::LearnLast => {
                let st = &mut m.st;
                st.reference[class as usize] += 1.0;
                let a = m.config.smoothing;
                let denom: f64 = st.reference.iter().sum::<f64>() + k as f64 * a;
                for r in &mut st.reference {
                    *r = (*r + a) / denom;
                }
                st.reference_done = true;
                return None;
            }
            Stage::Active => {}
        }
        let full = m.st.filled as usize == m.st.window.len();
        let stat = if full { m.divergence() } else { 0.0 };
        m.st.stat = stat;
        let threshold = m.threshold();
        let alarm = full && stat > threshold;
        let clear = full && stat < m.config.exit_threshold;
        match m.st.life.step(alarm, clear, obs.sample_id, &m.common) {
            Transition::Onset => {
                m.st.peak = stat;
                for i in 0..k {
                    m.st.onset[i] = m.window_prob(i);
                }
                return Some(DriftEvent {
                    detector: KIND,
                    statistic: stat,
                    threshold,
                    magnitude: stat,
                    sample_id: obs.sample_id,
                    at,
                });
            }
            Transition::Accept => m.accept(false),
            Transition::Exit => {}
            Transition::Reenter if stat > m.st.peak => {
                m.st.peak = stat;
                for i in 0..k {
                    m.st.onset[i] = m.window_prob(i);
                }
            }
            Transition::Reenter => {}
            Transition::Stay if m.st.life.phase == Phase::Drift && stat > m.st.peak => {
                m.st.peak = stat;
                for i in 0..k {
                    m.st.onset[i] = m.window_prob(i);
                }
            }
            Transition::Resume | Transition::Stay => {
                let beta = m.common.reference_beta;
                let due =
                    m.st.life
                        .in_phase
                        .is_multiple_of(u64::from(m.common.reference_interval));
                if beta > 0.0 && full && due && m.st.life.phase == Phase::Monitoring {
                    for i in 0..k {
                        let p = m.window_prob(i);
                        let r = &mut m.st.reference[i];
                        *r = (1.0 - beta) * *r + beta * p;
                    }
                }
            }
        }
        None
    }

    fn statistic(m: &DistributionShift) -> (f64, f64) {
        (m.st.stat, m.threshold())
    }

    fn settle(&self) -> u64 {
        u64::from(self.window)
    }

    fn accept(m: &mut DistributionShift, latest: bool, _: &DriftEvent) {
        if latest {
            m.accept(true);
        }
    }

    state_variant!(Distribution);

    fn validate(m: &DistributionShift, st: &DistributionState) -> Result<(), DriftError> {
        st.validate(&m.config)
    }
}

impl DistributionState {
    /// Check a loaded state (its life cycle is checked by [`Monitor`]).
    fn validate(&self, config: &DistributionConfig) -> Result<(), DriftError> {
        let name = KIND.name();
        let k = self.num_classes as usize;
        if k == 0 {
            if !(self.reference.is_empty() && self.window.is_empty() && self.counts.is_empty())
                || self.life.active()
            {
                return Err(invalid(name, "buffers without a class count"));
            }
            return Ok(());
        }
        let w = config.window as usize;
        if k < 2 || k > config.max_classes as usize {
            return Err(invalid(name, "class count out of range"));
        }
        if self.reference.len() != k
            || self.counts.len() != k
            || self.onset.len() != k
            || self.window.len() != w
            || !self.accepted.len().is_multiple_of(k)
            || self.accepted.len() > k * MAX_ACCEPTED
        {
            return Err(invalid(
                name,
                "buffer sizes do not match the class count and `drift.distribution.window`",
            ));
        }
        if self.head as usize >= w || self.filled as usize > w {
            return Err(invalid(name, "window position out of range"));
        }
        if self.life.active() && !self.reference_done {
            return Err(invalid(name, "monitoring without a reference"));
        }
        check_finite(
            name,
            "histogram",
            self.reference
                .iter()
                .chain(&self.accepted)
                .chain(&self.onset)
                .copied()
                .chain([self.stat, self.peak]),
        )?;
        if self
            .reference
            .iter()
            .chain(&self.accepted)
            .any(|p| *p < 0.0)
        {
            return Err(invalid(name, "negative probability"));
        }
        let mut counts = vec![0u32; k];
        let filled = self.filled as usize;
        let start = (self.head as usize + w - filled) % w;
        for i in 0..filled {
            let c = self.window[(start + i) % w] as usize;
            if c >= k {
                return Err(invalid(name, "class index in window out of range"));
            }
            counts[c] += 1;
        }
        if counts != self.counts {
            return Err(invalid(name, "class counts do not match the window"));
        }
        Ok(())
    }
}
