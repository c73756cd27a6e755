//! Tabular CUSUM on a chosen signal and direction (the original's `AccuracyCUSUM`, made
//! label-free): `S⁺ ← max(0, S⁺ + z⁺ − k)`, `S⁻ ← max(0, S⁻ + z⁻ − k)` with `z⁺`, `z⁻` the
//! sample's distance above / below the accepted band in reference σ. Alarm when a watched
//! side exceeds `h`; drift ends when that side's recovery sum exceeds `exit-h`.
//!
//! Page-Hinkley and CUSUM share this arithmetic; CUSUM is the configurable one (signal,
//! both directions), the Page-Hinkley detectors are the fixed-purpose monitors.

use serde::{Deserialize, Serialize};

use super::config::{CommonConfig, CusumConfig, Direction};
use super::error::DriftError;
use super::lifecycle::{LifecycleState, SETTLE_SAMPLES, Stage, Transition};
use super::scalar::{OneSided, ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{Detector, DetectorKind, DriftEvent, Observation, Phase};

const KIND: DetectorKind = DetectorKind::Cusum;

/// Persistent state of a [`Cusum`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CusumState {
    /// Life cycle.
    pub life: LifecycleState,
    /// Reference.
    pub reference: ScalarState,
    /// Upper sums.
    pub up: OneSided,
    /// Lower sums.
    pub down: OneSided,
    /// Side of the current drift: true for an increase.
    pub rising: bool,
}

/// Tabular CUSUM.
#[derive(Debug, Clone)]
pub struct Cusum {
    common: CommonConfig,
    config: CusumConfig,
    injected: Option<ScalarReference>,
    st: CusumState,
}

impl Cusum {
    /// A detector that learns its reference.
    pub fn new(common: CommonConfig, config: CusumConfig) -> Self {
        Cusum {
            common,
            config,
            injected: None,
            st: Self::fresh(&common),
        }
    }

    fn fresh(common: &CommonConfig) -> CusumState {
        CusumState {
            life: LifecycleState::new(common, false),
            reference: ScalarState::new(),
            up: OneSided::default(),
            down: OneSided::default(),
            rising: true,
        }
    }

    /// Use `reference` instead of learning one; monitoring starts at once.
    pub fn with_reference(mut self, reference: ScalarReference) -> Result<Self, DriftError> {
        self.st.reference = ScalarState::injected(KIND.name(), reference)?;
        self.st.life = LifecycleState::new(&self.common, true);
        self.injected = Some(reference);
        Ok(self)
    }

    fn threshold(&self) -> f64 {
        self.config.h * self.st.life.threshold_factor
    }

    fn watched(&self) -> (bool, bool) {
        match self.config.direction {
            Direction::Increase => (true, false),
            Direction::Decrease => (false, true),
            Direction::Both => (true, true),
        }
    }

    fn current(&self) -> f64 {
        let (up, down) = self.watched();
        let u = if up { self.st.up.s } else { 0.0 };
        let d = if down { self.st.down.s } else { 0.0 };
        u.max(d)
    }
}

impl Detector for Cusum {
    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn update(&mut self, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = self.st.life.begin();
        let Some(x) = self.config.signal.value(obs) else {
            self.st.life.ignore();
            return None;
        };
        let threshold = self.threshold();
        let (watch_up, watch_down) = self.watched();
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
        let k = self.config.k;
        st.up.step(st.reference.z_up(x), k);
        st.down.step(st.reference.z_down(x), k);
        let up_alarm = watch_up && st.up.s > threshold;
        let down_alarm = watch_down && st.down.s > threshold;
        let recovery = if st.rising { st.up.r } else { st.down.r };
        let clear = recovery > self.config.exit_h;
        match st
            .life
            .step(up_alarm || down_alarm, clear, obs.sample_id, &self.common)
        {
            Transition::Onset => {
                st.rising = up_alarm && (!down_alarm || st.up.s >= st.down.s);
                st.up.r = 0.0;
                st.down.r = 0.0;
                st.reference.onset();
                st.reference.drop_batch();
                return Some(DriftEvent {
                    detector: KIND,
                    statistic: st.up.s.max(st.down.s),
                    threshold,
                    magnitude: st.reference.magnitude(),
                    sample_id: obs.sample_id,
                    at,
                });
            }
            Transition::Exit => {
                st.reference.end_episode();
                st.up = OneSided::default();
                st.down = OneSided::default();
            }
            Transition::Reenter => {
                st.rising = up_alarm;
                st.up.r = 0.0;
                st.down.r = 0.0;
            }
            Transition::Accept => {
                st.reference.accept_since_onset();
                st.up = OneSided::default();
                st.down = OneSided::default();
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
        (self.current(), self.threshold())
    }

    fn reset(&mut self) {
        self.st = Self::fresh(&self.common);
        if let Some(r) = self.injected {
            if let Ok(reference) = ScalarState::injected(KIND.name(), r) {
                self.st.reference = reference;
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
            self.st.up = OneSided::default();
            self.st.down = OneSided::default();
        }
    }

    fn save(&self) -> DetectorState {
        DetectorState::Cusum(self.st.clone())
    }

    fn load(&mut self, state: DetectorState) -> Result<(), DriftError> {
        let DetectorState::Cusum(st) = state else {
            return Err(DriftError::Kind {
                found: state.kind(),
                expected: KIND,
            });
        };
        st.life.validate(KIND.name(), &self.common)?;
        st.reference.validate(KIND.name())?;
        st.up.validate(KIND.name())?;
        st.down.validate(KIND.name())?;
        self.st = st;
        Ok(())
    }
}
