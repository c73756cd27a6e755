//! EWMA control chart on confidence (the original's `EWMAConfidenceMonitor`, with its
//! reference actually initialised).
//!
//! `e ← λ·x + (1 − λ)·e`, started at the reference mean; the statistic is how far `e` lies
//! outside the accepted band, in units of the EWMA's stationary spread
//! `σ_e = σ·√(λ / (2 − λ))`. Alarm after `persistence` consecutive samples beyond `limit`;
//! drift ends when the statistic is back below `exit-limit` (hysteresis).

use serde::{Deserialize, Serialize};

use super::config::{CommonConfig, Direction, EwmaConfig, Signal};
use super::error::{DriftError, check_finite, invalid};
use super::lifecycle::{LifecycleState, Stage, Transition};
use super::monitor::{Monitor, Statistic, life_in_field, state_variant};
use super::scalar::{ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{DetectorKind, DriftEvent, Observation, Phase};

const KIND: DetectorKind = DetectorKind::EwmaConfidence;

/// Persistent state of an [`EwmaMonitor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EwmaState {
    /// Life cycle.
    pub life: LifecycleState,
    /// Reference.
    pub reference: ScalarState,
    /// The EWMA.
    pub ewma: f64,
    /// Consecutive samples beyond the limit.
    pub run: u32,
    /// Last statistic.
    pub stat: f64,
}

/// EWMA control chart on confidence.
pub type EwmaMonitor = Monitor<EwmaConfig>;

impl EwmaMonitor {
    fn threshold(&self) -> f64 {
        self.config.limit * self.st.life.threshold_factor
    }

    fn spread(&self) -> f64 {
        let l = self.config.lambda;
        self.st.reference.sigma * (l / (2.0 - l)).sqrt()
    }

    fn deviation(&self) -> f64 {
        let r = &self.st.reference;
        let s = self.spread();
        let up = (self.st.ewma - r.hi) / s;
        let down = (r.lo - self.st.ewma) / s;
        match self.config.direction {
            Direction::Increase => up,
            Direction::Decrease => down,
            Direction::Both => up.max(down),
        }
    }
}

impl Statistic for EwmaConfig {
    type State = EwmaState;
    type Reference = ScalarReference;

    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn fresh(&self, common: &CommonConfig) -> EwmaState {
        EwmaState {
            life: LifecycleState::new(common, false),
            reference: ScalarState::new(),
            ewma: 0.0,
            run: 0,
            stat: 0.0,
        }
    }

    life_in_field!();

    fn inject(m: &mut EwmaMonitor, reference: &ScalarReference) -> Result<(), DriftError> {
        m.st.reference = ScalarState::injected(KIND.name(), *reference)?;
        m.st.ewma = reference.mean;
        Ok(())
    }

    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = m.st.life.begin();
        let Some(x) = Signal::Confidence.value(obs) else {
            m.st.life.ignore();
            return None;
        };
        match m.st.reference.admit(&mut m.st.life, &m.common, x) {
            Stage::Active => {}
            Stage::LearnLast => {
                m.st.ewma = m.st.reference.center;
                return None;
            }
            Stage::Skip | Stage::Learn => return None,
        }
        m.st.reference.observe(x);
        let x = m.st.reference.winsorise(x);
        m.st.ewma += m.config.lambda * (x - m.st.ewma);
        let stat = m.deviation();
        m.st.stat = stat;
        let threshold = m.threshold();
        if stat > threshold {
            m.st.run = m.st.run.saturating_add(1);
        } else {
            m.st.run = 0;
        }
        let alarm = m.st.run >= m.config.persistence;
        let clear = stat < m.config.exit_limit;
        let st = &mut m.st;
        match st.life.step(alarm, clear, obs.sample_id, &m.common) {
            Transition::Onset => {
                st.reference.onset();
                st.reference.drop_batch();
                return Some(DriftEvent {
                    detector: KIND,
                    statistic: stat,
                    threshold,
                    magnitude: st.reference.magnitude(),
                    sample_id: obs.sample_id,
                    at,
                });
            }
            Transition::Accept => {
                st.reference.accept_since_onset();
                st.run = 0;
            }
            Transition::Exit => {
                st.reference.end_episode();
                st.run = 0;
            }
            Transition::Reenter => st.run = 0,
            Transition::Resume | Transition::Stay => {
                if st.life.phase == Phase::Monitoring {
                    st.reference.roll(x, &m.common);
                }
            }
        }
        None
    }

    fn statistic(m: &EwmaMonitor) -> (f64, f64) {
        (m.st.stat, m.threshold())
    }

    fn accept(m: &mut EwmaMonitor, latest: bool, event: &DriftEvent) {
        m.st.reference.accept_event(latest, event.magnitude);
        m.st.run = 0;
    }

    state_variant!(EwmaConfidence);

    fn validate(m: &EwmaMonitor, st: &EwmaState) -> Result<(), DriftError> {
        st.reference.validate(KIND.name())?;
        check_finite(KIND.name(), "EWMA", [st.ewma, st.stat])?;
        if st.run > m.config.persistence.saturating_mul(2).max(1_000_000) {
            return Err(invalid(KIND.name(), "violation run is out of range"));
        }
        Ok(())
    }
}
