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
use super::lifecycle::{LifecycleState, SETTLE_SAMPLES, Stage, Transition};
use super::scalar::{OneSided, ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{Detector, DetectorKind, DriftEvent, Observation, Phase};
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
#[derive(Debug, Clone)]
pub struct PageHinkley {
    kind: DetectorKind,
    signal: Signal,
    increase: bool,
    common: CommonConfig,
    config: PageHinkleyConfig,
    injected: Option<ScalarReference>,
    st: PageHinkleyState,
}

impl PageHinkley {
    /// Page-Hinkley on the mean k-NN distance, detecting increases.
    pub fn distance(common: CommonConfig, config: PageHinkleyConfig) -> Self {
        Self::new(
            DetectorKind::PageHinkleyDistance,
            Signal::Distance,
            true,
            common,
            config,
        )
    }

    /// Page-Hinkley on confidence, detecting decreases.
    pub fn confidence(common: CommonConfig, config: PageHinkleyConfig) -> Self {
        Self::new(
            DetectorKind::PageHinkleyConfidence,
            Signal::Confidence,
            false,
            common,
            config,
        )
    }

    fn new(
        kind: DetectorKind,
        signal: Signal,
        increase: bool,
        common: CommonConfig,
        config: PageHinkleyConfig,
    ) -> Self {
        PageHinkley {
            kind,
            signal,
            increase,
            common,
            config,
            injected: None,
            st: PageHinkleyState {
                life: LifecycleState::new(&common, false),
                reference: ScalarState::new(),
                sum: OneSided::default(),
            },
        }
    }

    /// Use `reference` instead of learning one; monitoring starts at once.
    pub fn with_reference(mut self, reference: ScalarReference) -> Result<Self, DriftError> {
        self.st.reference = ScalarState::injected(self.kind.name(), reference)?;
        self.st.life = LifecycleState::new(&self.common, true);
        self.injected = Some(reference);
        Ok(self)
    }

    fn threshold(&self) -> f64 {
        self.config.lambda * self.st.life.threshold_factor
    }
}

impl Detector for PageHinkley {
    fn kind(&self) -> DetectorKind {
        self.kind
    }

    fn update(&mut self, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = self.st.life.begin();
        let Some(x) = self.signal.value(obs) else {
            self.st.life.ignore();
            return None;
        };
        let threshold = self.threshold();
        let st = &mut self.st;
        match st.life.stage(&self.common) {
            Stage::Skip => return None,
            Stage::Learn => {
                st.reference.learn(x);
                return None;
            }
            Stage::LearnLast => {
                st.reference.learn(x);
                st.reference.finish();
                return None;
            }
            Stage::Active => {}
        }
        st.reference.observe(x);
        let x = st.reference.winsorise(x);
        let z = if self.increase {
            st.reference.z_up(x)
        } else {
            st.reference.z_down(x)
        };
        st.sum.step(z, self.config.delta);
        let alarm = st.sum.s > threshold;
        let clear = st.sum.r > self.config.exit_lambda;
        match st.life.step(alarm, clear, obs.sample_id, &self.common) {
            Transition::Onset => {
                st.sum.r = 0.0;
                st.reference.onset();
                st.reference.drop_batch();
                return Some(DriftEvent {
                    detector: self.kind,
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
        (self.st.sum.s, self.threshold())
    }

    fn reset(&mut self) {
        self.st = PageHinkleyState {
            life: LifecycleState::new(&self.common, false),
            reference: ScalarState::new(),
            sum: OneSided::default(),
        };
        if let Some(r) = self.injected {
            if let Ok(reference) = ScalarState::injected(self.kind.name(), r) {
                self.st.reference = reference;
                self.st.life = LifecycleState::new(&self.common, true);
            }
        }
    }

    fn false_alarm(&mut self, event: &DriftEvent) {
        if event.detector != self.kind {
            return;
        }
        let latest = self.st.life.onset_sample == Some(event.sample_id);
        let pending = self
            .st
            .life
            .false_alarm(event.sample_id, SETTLE_SAMPLES, &self.common);
        if !pending {
            self.st.reference.accept_event(latest, event.magnitude);
            self.st.sum = OneSided::default();
        }
    }

    fn save(&self) -> DetectorState {
        match self.kind {
            DetectorKind::PageHinkleyConfidence => {
                DetectorState::PageHinkleyConfidence(self.st.clone())
            }
            _ => DetectorState::PageHinkleyDistance(self.st.clone()),
        }
    }

    fn load(&mut self, state: DetectorState) -> Result<(), DriftError> {
        let found = state.kind();
        let st = match state {
            DetectorState::PageHinkleyDistance(st) | DetectorState::PageHinkleyConfidence(st)
                if found == self.kind =>
            {
                st
            }
            _ => {
                return Err(DriftError::Kind {
                    found,
                    expected: self.kind,
                });
            }
        };
        let name = self.kind.name();
        st.life.validate(name, &self.common)?;
        st.reference.validate(name)?;
        st.sum.validate(name)?;
        self.st = st;
        Ok(())
    }
}
