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
use super::lifecycle::{LifecycleState, SETTLE_SAMPLES, Stage, Transition};
use super::scalar::{ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{Detector, DetectorKind, DriftEvent, Observation, Phase};

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
#[derive(Debug, Clone)]
pub struct EwmaMonitor {
    common: CommonConfig,
    config: EwmaConfig,
    injected: Option<ScalarReference>,
    st: EwmaState,
}

impl EwmaMonitor {
    /// A detector that learns its reference.
    pub fn new(common: CommonConfig, config: EwmaConfig) -> Self {
        EwmaMonitor {
            common,
            config,
            injected: None,
            st: Self::fresh(&common),
        }
    }

    fn fresh(common: &CommonConfig) -> EwmaState {
        EwmaState {
            life: LifecycleState::new(common, false),
            reference: ScalarState::new(),
            ewma: 0.0,
            run: 0,
            stat: 0.0,
        }
    }

    /// Use `reference` instead of learning one; monitoring starts at once.
    pub fn with_reference(mut self, reference: ScalarReference) -> Result<Self, DriftError> {
        self.st.reference = ScalarState::injected(KIND.name(), reference)?;
        self.st.ewma = reference.mean;
        self.st.life = LifecycleState::new(&self.common, true);
        self.injected = Some(reference);
        Ok(self)
    }

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

impl Detector for EwmaMonitor {
    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn update(&mut self, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = self.st.life.begin();
        let Some(x) = Signal::Confidence.value(obs) else {
            self.st.life.ignore();
            return None;
        };
        match self.st.life.stage(&self.common) {
            Stage::Skip => return None,
            Stage::Learn => {
                self.st.reference.learn(x);
                return None;
            }
            Stage::LearnLast => {
                self.st.reference.learn(x);
                self.st.reference.finish();
                self.st.ewma = self.st.reference.center;
                return None;
            }
            Stage::Active => {}
        }
        self.st.reference.observe(x);
        let x = self.st.reference.winsorise(x);
        self.st.ewma += self.config.lambda * (x - self.st.ewma);
        let stat = self.deviation();
        self.st.stat = stat;
        let threshold = self.threshold();
        if stat > threshold {
            self.st.run = self.st.run.saturating_add(1);
        } else {
            self.st.run = 0;
        }
        let alarm = self.st.run >= self.config.persistence;
        let clear = stat < self.config.exit_limit;
        let st = &mut self.st;
        match st.life.step(alarm, clear, obs.sample_id, &self.common) {
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
                    st.reference.roll(x, &self.common);
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
        self.st = Self::fresh(&self.common);
        if let Some(r) = self.injected {
            if let Ok(reference) = ScalarState::injected(KIND.name(), r) {
                self.st.reference = reference;
                self.st.ewma = r.mean;
                self.st.life = LifecycleState::new(&self.common, true);
            }
        }
    }

    fn false_alarm(&mut self, event: &DriftEvent) {
        if event.detector != KIND {
            return;
        }
        let latest = self.st.life.onset_sample == Some(event.sample_id);
        let pending = self
            .st
            .life
            .false_alarm(event.sample_id, SETTLE_SAMPLES, &self.common);
        if !pending {
            self.st.reference.accept_event(latest, event.magnitude);
            self.st.run = 0;
        }
    }

    fn save(&self) -> DetectorState {
        DetectorState::EwmaConfidence(self.st.clone())
    }

    fn load(&mut self, state: DetectorState) -> Result<(), DriftError> {
        let DetectorState::EwmaConfidence(st) = state else {
            return Err(DriftError::Kind {
                found: state.kind(),
                expected: KIND,
            });
        };
        st.life.validate(KIND.name(), &self.common)?;
        st.reference.validate(KIND.name())?;
        check_finite(KIND.name(), "EWMA", [st.ewma, st.stat])?;
        if st.run > self.config.persistence.saturating_mul(2).max(1_000_000) {
            return Err(invalid(KIND.name(), "violation run is out of range"));
        }
        self.st = st;
        Ok(())
    }
}
