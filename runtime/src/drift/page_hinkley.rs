//! Page-Hinkley: one-sided test for a rise of the mean k-NN distance (the original's
//! `KNNDistanceMonitor`) or a fall of the confidence (`PageHinkleyConfidenceMonitor`).
//!
//! With `z` the sample standardised against the accepted band of the reference,
//! `m ← m + z − δ` and `PH = m − min m` (kept in the equivalent clipped form
//! `PH ← max(0, PH + z − δ)` so nothing grows without bound). Alarm when `PH > λ`.
//! The exit rule is the mirror sum `R ← max(0, R + δ − z)` started at the onset: drift ends
//! once `R > exit-lambda`, i.e. when there is as much evidence that the mean is back as
//! there was that it had moved. Unlike the original, a persistent shift does not re-fire
//! after the cooldown, and δ, λ are in reference σ rather than raw distance units.

use super::config::{CommonConfig, PageHinkleyConfig, Signal};
use super::error::DriftError;
use super::lifecycle::{LifecycleState, Stage, Transition};
use super::monitor::{Monitor, Statistic, life_in_field};
use super::scalar::{OneSided, ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{DetectorKind, DriftEvent, Observation, Phase};
use serde::{Deserialize, Serialize};

/// Persistent state of a [`PageHinkley`] detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageHinkleyState {
    /// Life cycle.
    pub life: LifecycleState,
    /// Reference.
    pub reference: ScalarState,
    /// Page-Hinkley and recovery sums.
    pub sum: OneSided,
}

/// Page-Hinkley on one scalar signal, in one direction.
pub type PageHinkley = Monitor<PageHinkleyRole>;

/// What a [`PageHinkley`] watches and its settings.
#[derive(Debug, Clone)]
pub struct PageHinkleyRole {
    kind: DetectorKind,
    signal: Signal,
    increase: bool,
    settings: PageHinkleyConfig,
}

impl PageHinkley {
    /// Page-Hinkley on the mean k-NN distance, detecting increases.
    pub fn distance(common: CommonConfig, config: PageHinkleyConfig) -> Self {
        let role = PageHinkleyRole {
            kind: DetectorKind::PageHinkleyDistance,
            signal: Signal::Distance,
            increase: true,
            settings: config,
        };
        Monitor::new(common, role)
    }

    /// Page-Hinkley on confidence, detecting decreases.
    pub fn confidence(common: CommonConfig, config: PageHinkleyConfig) -> Self {
        let role = PageHinkleyRole {
            kind: DetectorKind::PageHinkleyConfidence,
            signal: Signal::Confidence,
            increase: false,
            settings: config,
        };
        Monitor::new(common, role)
    }

    fn threshold(&self) -> f64 {
        self.config.settings.lambda * self.st.life.threshold_factor
    }
}

impl Statistic for PageHinkleyRole {
    type State = PageHinkleyState;
    type Reference = ScalarReference;

    fn kind(&self) -> DetectorKind {
        self.kind
    }

    fn fresh(&self, common: &CommonConfig) -> PageHinkleyState {
        PageHinkleyState {
            life: LifecycleState::new(common, false),
            reference: ScalarState::new(),
            sum: OneSided::default(),
        }
    }

    life_in_field!();

    fn inject(m: &mut PageHinkley, reference: &ScalarReference) -> Result<(), DriftError> {
        m.st.reference = ScalarState::injected(m.config.kind.name(), *reference)?;
        Ok(())
    }

    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = m.st.life.begin();
        let Some(x) = m.config.signal.value(obs) else {
            m.st.life.ignore();
            return None;
        };
        let threshold = m.threshold();
        let st = &mut m.st;
        if st.reference.admit(&mut st.life, &m.common, x) != Stage::Active {
            return None;
        }
        st.reference.observe(x);
        let x = st.reference.winsorise(x);
        let z = if m.config.increase {
            st.reference.z_up(x)
        } else {
            st.reference.z_down(x)
        };
        st.sum.step(z, m.config.settings.delta);
        let alarm = st.sum.s > threshold;
        let clear = st.sum.r > m.config.settings.exit_lambda;
        match st.life.step(alarm, clear, obs.sample_id, &m.common) {
            Transition::Onset => {
                st.sum.r = 0.0;
                st.reference.onset();
                st.reference.drop_batch();
                return Some(DriftEvent {
                    detector: m.config.kind,
                    statistic: st.sum.s,
                    threshold,
                    magnitude: st.reference.magnitude(),
                    sample_id: obs.sample_id,
                    at,
                });
            }
            Transition::Exit => {
                st.reference.end_episode();
                st.sum = OneSided::default();
            }
            Transition::Reenter => st.sum.r = 0.0,
            Transition::Accept => {
                st.reference.accept_since_onset();
                st.sum = OneSided::default();
            }
            Transition::Resume | Transition::Stay => {
                if st.life.phase == Phase::Monitoring {
                    st.reference.roll(x, &m.common);
                }
            }
        }
        None
    }

    fn statistic(m: &PageHinkley) -> (f64, f64) {
        (m.st.sum.s, m.threshold())
    }

    fn accept(m: &mut PageHinkley, latest: bool, event: &DriftEvent) {
        m.st.reference.accept_event(latest, event.magnitude);
        m.st.sum = OneSided::default();
    }

    fn wrap(&self, state: PageHinkleyState) -> DetectorState {
        match self.kind {
            DetectorKind::PageHinkleyConfidence => DetectorState::PageHinkleyConfidence(state),
            _ => DetectorState::PageHinkleyDistance(state),
        }
    }

    fn unwrap(&self, state: DetectorState) -> Option<PageHinkleyState> {
        let ours = state.kind() == self.kind;
        match state {
            DetectorState::PageHinkleyDistance(st) | DetectorState::PageHinkleyConfidence(st)
                if ours =>
            {
                Some(st)
            }
            _ => None,
        }
    }

    fn validate(m: &PageHinkley, st: &PageHinkleyState) -> Result<(), DriftError> {
        let name = m.config.kind.name();
        st.reference.validate(name)?;
        st.sum.validate(name)
    }
}
