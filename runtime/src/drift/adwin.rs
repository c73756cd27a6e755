//! ADWIN (Bifet & Gavaldà's ADWIN2): an adaptive window over a scalar signal kept as an
//! exponential histogram (rows of at most `max-buckets` buckets, row `i` holding buckets of
//! `2^i` samples), so memory is O(M·log(max-window)). Every `clock` samples each split of the
//! window into an older and a newer part is tested; while the means differ by more than
//!
//! `ε = √(2·v·m·ln(2·ln(n)/δ)) + ⅔·m·ln(2·ln(n)/δ)`, `m = 1/(n₀−w+1) + 1/(n₁−w+1)`
//!
//! (`v` the window variance, `w` = `min-window`), the oldest bucket is dropped. The window
//! therefore holds only data since the last change and its mean follows a new level quickly.
//!
//! A cut alone is not an event (a return to normal is a change too): drift is declared when
//! the window mean lies more than `min-shift` reference σ outside the accepted band, and ends
//! when it is back within half that.

use serde::{Deserialize, Serialize};

use super::config::{AdwinConfig, CommonConfig};
use super::error::{DriftError, check_finite, invalid};
use super::lifecycle::{LifecycleState, Stage, Transition};
use super::monitor::{Monitor, Statistic, life_in_field, state_variant};
use super::scalar::{ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{DetectorKind, DriftEvent, Observation};

const KIND: DetectorKind = DetectorKind::Adwin;
/// Most rows of the histogram (2^40 samples; `max-window` bounds it far earlier).
const MAX_ROWS: usize = 40;

/// One bucket: count, mean and sum of squared deviations of the samples it summarises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Samples.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    /// Their sum of squared deviations.
    pub m2: f64,
}

impl Bucket {
    fn merge(a: Bucket, b: Bucket) -> Bucket {
        let n = a.n + b.n;
        let d = b.mean - a.mean;
        let mean = a.mean + d * b.n as f64 / n as f64;
        let m2 = a.m2 + b.m2 + d * d * (a.n as f64) * (b.n as f64) / n as f64;
        Bucket { n, mean, m2 }
    }
}

/// Persistent state of an [`Adwin`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdwinState {
    /// Life cycle.
    pub life: LifecycleState,
    /// Reference (mean, σ, accepted band).
    pub reference: ScalarState,
    /// Rows of buckets, row 0 the newest; within a row the oldest first.
    pub rows: Vec<Vec<Bucket>>,
    /// The whole window as one bucket.
    pub window: Bucket,
    /// Samples since the last cut test.
    pub tick: u32,
    /// Cuts so far.
    pub cuts: u64,
    /// Last statistic (window mean outside the band, in σ).
    pub stat: f64,
}

/// ADWIN change detector.
pub type Adwin = Monitor<AdwinConfig>;

const EMPTY: Bucket = Bucket {
    n: 0,
    mean: 0.0,
    m2: 0.0,
};

impl Adwin {
    fn threshold(&self) -> f64 {
        self.config.min_shift * self.st.life.threshold_factor
    }

    /// Samples in the window.
    pub fn width(&self) -> u64 {
        self.st.window.n
    }

    fn insert(&mut self, x: f64) {
        let m = self.config.max_buckets as usize;
        let st = &mut self.st;
        let one = Bucket {
            n: 1,
            mean: x,
            m2: 0.0,
        };
        st.window = Bucket::merge(st.window, one);
        st.rows[0].push(one);
        let mut i = 0;
        while i < st.rows.len() && st.rows[i].len() > m {
            let a = st.rows[i].remove(0);
            let b = st.rows[i].remove(0);
            let merged = Bucket::merge(a, b);
            if i + 1 == st.rows.len() {
                if st.rows.len() == MAX_ROWS {
                    Self::subtract(&mut st.window, merged);
                    break;
                }
                st.rows.push(Vec::with_capacity(m + 1));
            }
            st.rows[i + 1].push(merged);
            i += 1;
        }
        while st.window.n > u64::from(self.config.max_window) {
            Self::drop_oldest(st);
        }
    }

    fn subtract(window: &mut Bucket, b: Bucket) {
        if b.n >= window.n {
            *window = EMPTY;
            return;
        }
        let n = window.n - b.n;
        let rest_mean = (window.mean * window.n as f64 - b.mean * b.n as f64) / n as f64;
        let d = b.mean - rest_mean;
        let m2 = window.m2 - b.m2 - d * d * (b.n as f64) * (n as f64) / window.n as f64;
        *window = Bucket {
            n,
            mean: rest_mean,
            m2: m2.max(0.0),
        };
    }

    fn drop_oldest(st: &mut AdwinState) {
        if let Some(row) = st.rows.iter_mut().rev().find(|r| !r.is_empty()) {
            let b = row.remove(0);
            Self::subtract(&mut st.window, b);
        }
    }

    /// Test every split; drop the oldest bucket while one shows a change. True when cut.
    fn detect(&mut self) -> bool {
        let w = f64::from(self.config.min_window);
        let mut cut = false;
        loop {
            let st = &self.st;
            let n = st.window.n;
            if n < 2 * u64::from(self.config.min_window) || n < 3 {
                return cut;
            }
            let var = st.window.m2 / n as f64;
            let total = st.window.mean * n as f64;
            let ln_term = (2.0 * (n as f64).ln() / self.config.delta).ln();
            let mut n0 = 0u64;
            let mut sum0 = 0.0;
            let mut found = false;
            'scan: for row in st.rows.iter().rev() {
                for b in row {
                    n0 += b.n;
                    sum0 += b.mean * b.n as f64;
                    let n1 = n - n0;
                    if n1 == 0 {
                        break 'scan;
                    }
                    if (n0 as f64) < w || (n1 as f64) < w {
                        continue;
                    }
                    let u0 = sum0 / n0 as f64;
                    let u1 = (total - sum0) / n1 as f64;
                    let m = 1.0 / (n0 as f64 - w + 1.0) + 1.0 / (n1 as f64 - w + 1.0);
                    let eps = (2.0 * var * m * ln_term).sqrt() + 2.0 / 3.0 * m * ln_term;
                    if (u0 - u1).abs() > eps {
                        found = true;
                        break 'scan;
                    }
                }
            }
            if !found {
                return cut;
            }
            cut = true;
            self.st.cuts = self.st.cuts.saturating_add(1);
            Self::drop_oldest(&mut self.st);
        }
    }

    fn outside(&self) -> f64 {
        let r = &self.st.reference;
        let u = self.st.window.mean;
        r.z_up(u).max(r.z_down(u)).max(0.0)
    }
}

impl Statistic for AdwinConfig {
    type State = AdwinState;
    type Reference = ScalarReference;

    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn fresh(&self, common: &CommonConfig) -> AdwinState {
        // Every row the window can need, allocated up front: no allocation per sample.
        let needed = (33 - self.max_window.leading_zeros() as usize).min(MAX_ROWS);
        let mut rows = Vec::with_capacity(MAX_ROWS);
        for _ in 0..needed.max(1) {
            rows.push(Vec::with_capacity(self.max_buckets as usize + 1));
        }
        AdwinState {
            life: LifecycleState::new(common, false),
            reference: ScalarState::new(),
            rows,
            window: EMPTY,
            tick: 0,
            cuts: 0,
            stat: 0.0,
        }
    }

    life_in_field!();

    fn inject(m: &mut Adwin, reference: &ScalarReference) -> Result<(), DriftError> {
        m.st.reference = ScalarState::injected(KIND.name(), *reference)?;
        Ok(())
    }

    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = m.st.life.begin();
        let Some(x) = m.config.signal.value(obs) else {
            m.st.life.ignore();
            return None;
        };
        match m.st.reference.admit(&mut m.st.life, &m.common, x) {
            Stage::Active => {}
            Stage::Skip => return None,
            Stage::Learn | Stage::LearnLast => {
                m.insert(x);
                return None;
            }
        }
        m.st.reference.observe(x);
        m.insert(x);
        m.st.tick += 1;
        if m.st.tick >= m.config.clock {
            m.st.tick = 0;
            m.detect();
        }
        let stat = m.outside();
        m.st.stat = stat;
        let threshold = m.threshold();
        let enough = m.st.window.n >= 2 * u64::from(m.config.min_window);
        let alarm = enough && stat > threshold;
        let clear = stat < 0.5 * m.config.min_shift;
        let st = &mut m.st;
        match st.life.step(alarm, clear, obs.sample_id, &m.common) {
            Transition::Onset => {
                st.reference.onset();
                let r = &st.reference;
                return Some(DriftEvent {
                    detector: KIND,
                    statistic: stat,
                    threshold,
                    magnitude: (st.window.mean - r.center) / r.sigma,
                    sample_id: obs.sample_id,
                    at,
                });
            }
            Transition::Accept => st.reference.accept_since_onset(),
            Transition::Exit => st.reference.end_episode(),
            Transition::Reenter | Transition::Resume | Transition::Stay => {}
        }
        None
    }

    fn statistic(m: &Adwin) -> (f64, f64) {
        (m.st.stat, m.threshold())
    }

    fn accept(m: &mut Adwin, latest: bool, event: &DriftEvent) {
        m.st.reference.accept_event(latest, event.magnitude);
    }

    state_variant!(Adwin);

    fn validate(m: &Adwin, st: &AdwinState) -> Result<(), DriftError> {
        let name = KIND.name();
        st.reference.validate(name)?;
        let max = m.config.max_buckets as usize;
        if st.rows.is_empty() || st.rows.len() > MAX_ROWS || st.rows.iter().any(|r| r.len() > max) {
            return Err(invalid(
                name,
                "bucket rows out of range for `drift.adwin.max-buckets`",
            ));
        }
        let mut n = 0u64;
        for (i, row) in st.rows.iter().enumerate() {
            for b in row {
                if b.n != 1u64 << i || !b.mean.is_finite() || !b.m2.is_finite() || b.m2 < 0.0 {
                    return Err(invalid(name, "bucket does not match its row"));
                }
                n += b.n;
            }
        }
        check_finite(name, "window", [st.window.mean, st.window.m2, st.stat])?;
        if n != st.window.n || n > u64::from(m.config.max_window) || st.window.m2 < 0.0 {
            return Err(invalid(name, "window size does not match its buckets"));
        }
        if st.tick > m.config.clock {
            return Err(invalid(name, "clock counter out of range"));
        }
        Ok(())
    }
}
