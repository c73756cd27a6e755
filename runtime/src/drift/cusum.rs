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
use super::lifecycle::{LifecycleState, Stage, Transition};
use super::monitor::{Monitor, Statistic, life_in_field, state_variant};
use super::scalar::{OneSided, ScalarReference, ScalarState};
use super::set::DetectorState;
use super::{DetectorKind, DriftEvent, Observation, Phase};

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
pub type Cusum = Monitor<CusumConfig>;

impl Cusum {
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

impl Statistic for CusumConfig {
    type State = CusumState;
    type Reference = ScalarReference;

    fn kind(&self) -> DetectorKind {
        KIND
    }

    fn fresh(&self, common: &CommonConfig) -> CusumState {
        CusumState {
            life: LifecycleState::new(common, false),
            reference: ScalarState::new(),
            up: OneSided::default(),
            down: OneSided::default(),
            rising: true,
        }
    }

    life_in_field!();

    fn inject(m: &mut Cusum, reference: &ScalarReference) -> Result<(), DriftError> {
        m.st.reference = ScalarState::injected(KIND.name(), *reference)?;
        Ok(())
    }

    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent> {
        let at = m.st.life.begin();
        let Some(x) = m.config.signal.value(obs) else {
            m.st.life.ignore();
            return None;
        };
        let threshold = m.threshold();
        let (watch_up, watch_down) = m.watched();
        let st = &mut m.st;
        if st.reference.admit(&mut st.life, &m.common, x) != Stage::Active {
            return None;
        }
        st.reference.observe(x);
        let x = st.reference.winsorise(x);
        let k = m.config.k;
        st.up.step(st.reference.z_up(x), k);
        st.down.step(st.reference.z_down(x), k);
        let up_alarm = watch_up && st.up.s > threshold;
        let down_alarm = watch_down && st.down.s > threshold;
        let recovery = if st.rising { st.up.r } else { st.down.r };
        let clear = recovery > m.config.exit_h;
        match st
            .life
            .step(up_alarm || down_alarm, clear, obs.sample_id, &m.common)
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
                    st.reference.roll(x, &m.common);
                }
            }
        }
        None
    }

    fn statistic(m: &Cusum) -> (f64, f64) {
        (m.current(), m.threshold())
    }

    fn accept(m: &mut Cusum, latest: bool, event: &DriftEvent) {
        m.st.reference.accept_event(latest, event.magnitude);
        m.st.up = OneSided::default();
        m.st.down = OneSided::default();
    }

    state_variant!(Cusum);

    fn validate(_: &Cusum, st: &CusumState) -> Result<(), DriftError> {
        st.reference.validate(KIND.name())?;
        st.up.validate(KIND.name())?;
        st.down.validate(KIND.name())
    }
}
