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
use super::set::DetectorState;
use super::{Detector, DetectorKind, DriftEvent, Observation, Phase};

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
#[derive(Debug, Clone)]
pub struct DistributionShift {
    common: CommonConfig,
    config: DistributionConfig,
    injected: Option<Vec<f64>>,
    st: DistributionState,
}

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
    /// A detector that learns its reference.
    pub fn new(common: CommonConfig, config: DistributionConfig) -> Self {
        DistributionShift {
            common,
            config,
            injected: None,
            st: Self::fresh(&common),
        }
    }

    fn fresh(common: &CommonConfig) -> DistributionState {
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

    /// Use the class probabilities `reference` (one per class) instead of learning them.
    pub fn with_reference(mut self, reference: &[f64]) -> Result<Self, DriftError> {
        let k = reference.len();
        let sum: f64 = reference.iter().sum();
        if k < 2
            || k > self.config.max_classes as usize
            || reference.iter().any(|p| !p.is_finite() || *p < 0.0)
            || sum <= 0.0
        {
            return Err(DriftError::Reference {
                detector: KIND.name(),
                problem: format!(
                    "need 2..={} finite non-negative class probabilities with a positive sum",
                    self.config.max_classes
                ),
            });
        }
        self.st = Self::fresh(&self.common);
        self.allocate(k);
        for (r, p) in self.st.reference.iter_mut().zip(reference) {
            *r = p / sum;
        }
        self.st.reference_done = true;
        self.st.life = LifecycleState::new(&self.common, true);
        self.injected = Some(reference.to_vec());
        Ok(self)
    }

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

impl Detector for DistributionShift {
    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn update(&mut self, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = self.st.life.begin();
        let k = obs.num_classes;
        let known = self.st.num_classes as usize;
        if k < 2
            || k > self.config.max_classes as usize
            || obs.predicted >= k
            || (known != 0 && known != k)
        {
            self.st.life.ignore();
            return None;
        }
        if self.st.life.phase == Phase::WarmUp {
            self.st.life.stage(&self.common);
            return None;
        }
        if known == 0 {
            self.allocate(k);
        }
        let class = obs.predicted as u32;
        self.push(class);
        match self.st.life.stage(&self.common) {
            Stage::Skip => return None,
            Stage::Learn => {
                self.st.reference[class as usize] += 1.0;
                return None;
            }
            Stage::LearnLast => {
                let st = &mut self.st;
                st.reference[class as usize] += 1.0;
                let a = self.config.smoothing;
                let denom: f64 = st.reference.iter().sum::<f64>() + k as f64 * a;
                for r in &mut st.reference {
                    *r = (*r + a) / denom;
                }
                st.reference_done = true;
                return None;
            }
            Stage::Active => {}
        }
        let full = self.st.filled as usize == self.st.window.len();
        let stat = if full { self.divergence() } else { 0.0 };
        self.st.stat = stat;
        let threshold = self.threshold();
        let alarm = full && stat > threshold;
        let clear = full && stat < self.config.exit_threshold;
        match self.st.life.step(alarm, clear, obs.sample_id, &self.common) {
            Transition::Onset => {
                self.st.peak = stat;
                for i in 0..k {
                    self.st.onset[i] = self.window_prob(i);
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
            Transition::Accept => self.accept(false),
            Transition::Exit => {}
            Transition::Reenter if stat > self.st.peak => {
                self.st.peak = stat;
                for i in 0..k {
                    self.st.onset[i] = self.window_prob(i);
                }
            }
            Transition::Reenter => {}
            Transition::Stay if self.st.life.phase == Phase::Drift && stat > self.st.peak => {
                self.st.peak = stat;
                for i in 0..k {
                    self.st.onset[i] = self.window_prob(i);
                }
            }
            Transition::Resume | Transition::Stay => {
                let beta = self.common.reference_beta;
                let due = self
                    .st
                    .life
                    .in_phase
                    .is_multiple_of(u64::from(self.common.reference_interval));
                if beta > 0.0 && full && due && self.st.life.phase == Phase::Monitoring {
                    for i in 0..k {
                        let p = self.window_prob(i);
                        let r = &mut self.st.reference[i];
                        *r = (1.0 - beta) * *r + beta * p;
                    }
                }
            }
        }
        None
    }

    fn lifecycle(&self) -> &LifecycleState {
        &self.st.life
    }

    fn lifecycle_mut(&mut self) -> &mut LifecycleState {
        &mut self.st.life
    }

    fn statistic(&self) -> (f64, f64) {
        (self.st.stat, self.threshold())
    }

    fn reset(&mut self) {
        match self.injected.take() {
            Some(r) => match self.clone().with_reference(&r) {
                Ok(fresh) => *self = fresh,
                Err(_) => self.st = Self::fresh(&self.common),
            },
            None => self.st = Self::fresh(&self.common),
        }
    }

    fn false_alarm(&mut self, event: &DriftEvent) {
        if event.detector != KIND {
            return;
        }
        let settle = u64::from(self.config.window);
        let pending = self
            .st
            .life
            .false_alarm(event.sample_id, settle, &self.common);
        if !pending && self.st.onset_sample_matches(event.sample_id) {
            self.accept(true);
        }
    }

    fn save(&self) -> DetectorState {
        DetectorState::Distribution(self.st.clone())
    }

    fn load(&mut self, state: DetectorState) -> Result<(), DriftError> {
        let DetectorState::Distribution(st) = state else {
            return Err(DriftError::Kind {
                found: state.kind(),
                expected: KIND,
            });
        };
        st.validate(&self.common, &self.config)?;
        self.st = st;
        Ok(())
    }
}

impl DistributionState {
    fn onset_sample_matches(&self, sample_id: u64) -> bool {
        self.life.onset_sample == Some(sample_id)
    }

    fn validate(
        &self,
        common: &CommonConfig,
        config: &DistributionConfig,
    ) -> Result<(), DriftError> {
        let name = KIND.name();
        self.life.validate(name, common)?;
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
