//! The shared life-cycle wrapper every detector runs in.
//!
//! Each detector used to repeat the same 40–50 lines around its statistic: the kind check
//! and bookkeeping of false-alarm feedback, reset to the injected reference, save and load
//! with their kind check. [`Monitor`] holds what all of them hold (the common settings, the
//! detector's own settings, the injected reference a reset returns to, the persisted state)
//! and implements [`Detector`] once; a detector adds only what is its own through
//! [`Statistic`], implemented on its settings type. `Cusum` is `Monitor<CusumConfig>`, and
//! so on.

use super::config::CommonConfig;
use super::error::DriftError;
use super::lifecycle::{LifecycleState, SETTLE_SAMPLES};
use super::set::DetectorState;
use super::{Detector, DetectorKind, DriftEvent, Observation};

/// What one detector adds to the shared life cycle of [`Monitor`]: its statistic, its state
/// and how feedback and a loaded state touch them. Implemented on the detector's settings.
pub trait Statistic: Clone + std::fmt::Debug + Send + Sized {
    /// The persisted state (it holds the detector's [`LifecycleState`]).
    type State: Clone + std::fmt::Debug + Send;
    /// A reference given instead of learnt.
    type Reference: Clone + std::fmt::Debug + Send;
    /// Which detector this is.
    fn kind(&self) -> DetectorKind;
    /// A state with nothing learnt yet.
    fn fresh(&self, common: &CommonConfig) -> Self::State;
    /// The life cycle inside `state`.
    fn life(state: &Self::State) -> &LifecycleState;
    /// The same, mutable.
    fn life_mut(state: &mut Self::State) -> &mut LifecycleState;
    /// Put `reference` (checked first; on error nothing is changed) into the fresh state of
    /// `m`; the life cycle is set to monitoring afterwards by the caller.
    fn inject(m: &mut Monitor<Self>, reference: &Self::Reference) -> Result<(), DriftError>;
    /// The detector's part of [`Detector::update`].
    fn update(m: &mut Monitor<Self>, obs: &Observation<'_>) -> Option<DriftEvent>;
    /// The current statistic and threshold ([`Detector::statistic`]).
    fn statistic(m: &Monitor<Self>) -> (f64, f64);
    /// Samples a false alarm waits in drift before its condition is accepted.
    fn settle(&self) -> u64 {
        SETTLE_SAMPLES
    }
    /// Accept the condition of the false alarm `event` now (the life cycle has recorded it
    /// and is not waiting); `latest` tells whether `event` is the detector's last onset.
    fn accept(m: &mut Monitor<Self>, latest: bool, event: &DriftEvent);
    /// `state` as the persisted state of this kind of detector.
    fn wrap(&self, state: Self::State) -> DetectorState;
    /// The state inside `state` when it is this detector's kind.
    fn unwrap(&self, state: DetectorState) -> Option<Self::State>;
    /// Check a loaded state beyond its life cycle (sizes, finiteness, ranges).
    fn validate(m: &Monitor<Self>, state: &Self::State) -> Result<(), DriftError>;
}

/// [`Statistic::life`] and [`Statistic::life_mut`] for a state that keeps its life cycle in
/// its `life` field, as every detector's does.
macro_rules! life_in_field {
    () => {
        fn life(state: &Self::State) -> &LifecycleState {
            &state.life
        }

        fn life_mut(state: &mut Self::State) -> &mut LifecycleState {
            &mut state.life
        }
    };
}
pub(super) use life_in_field;

/// [`Statistic::wrap`] and [`Statistic::unwrap`] for a detector whose state is always the
/// one [`DetectorState`] variant `$variant` (every detector but Page-Hinkley, whose variant
/// depends on the signal it watches).
macro_rules! state_variant {
    ($variant:ident) => {
        fn wrap(&self, state: Self::State) -> DetectorState {
            DetectorState::$variant(state)
        }

        fn unwrap(&self, state: DetectorState) -> Option<Self::State> {
            match state {
                DetectorState::$variant(st) => Some(st),
                _ => None,
            }
        }
    };
}
pub(super) use state_variant;

/// A detector: the statistic `S` inside the shared life cycle.
#[derive(Debug, Clone)]
pub struct Monitor<S: Statistic> {
    pub(super) common: CommonConfig,
    pub(super) config: S,
    pub(super) injected: Option<S::Reference>,
    pub(super) st: S::State,
}

impl<S: Statistic> Monitor<S> {
    /// A detector that learns its reference.
    pub fn new(common: CommonConfig, config: S) -> Self {
        let st = config.fresh(&common);
        Monitor {
            common,
            config,
            injected: None,
            st,
        }
    }

    /// Use `reference` instead of learning one; monitoring starts at once.
    pub fn with_reference(mut self, reference: S::Reference) -> Result<Self, DriftError> {
        self.st = self.config.fresh(&self.common);
        S::inject(&mut self, &reference)?;
        *S::life_mut(&mut self.st) = LifecycleState::new(&self.common, true);
        self.injected = Some(reference);
        Ok(self)
    }
}

impl<S: Statistic> Detector for Monitor<S> {
    fn kind(&self) -> DetectorKind {
        self.config.kind()
    }

    fn update(&mut self, obs: &Observation<'_>) -> Option<DriftEvent> {
        S::update(self, obs)
    }

    fn lifecycle(&self) -> &LifecycleState {
        S::life(&self.st)
    }

    fn lifecycle_mut(&mut self) -> &mut LifecycleState {
        S::life_mut(&mut self.st)
    }

    fn statistic(&self) -> (f64, f64) {
        S::statistic(self)
    }

    fn reset(&mut self) {
        self.st = self.config.fresh(&self.common);
        if let Some(reference) = self.injected.take() {
            if S::inject(self, &reference).is_ok() {
                *S::life_mut(&mut self.st) = LifecycleState::new(&self.common, true);
            } else {
                self.st = self.config.fresh(&self.common);
            }
            self.injected = Some(reference);
        }
    }

    fn false_alarm(&mut self, event: &DriftEvent) {
        if event.detector != self.config.kind() {
            return;
        }
        let latest = S::life(&self.st).onset_sample == Some(event.sample_id);
        let settle = self.config.settle();
        let pending = S::life_mut(&mut self.st).false_alarm(event.sample_id, settle, &self.common);
        if !pending {
            S::accept(self, latest, event);
        }
    }

    fn save(&self) -> DetectorState {
        self.config.wrap(self.st.clone())
    }

    fn load(&mut self, state: DetectorState) -> Result<(), DriftError> {
        let expected = self.config.kind();
        let found = state.kind();
        let Some(st) = self.config.unwrap(state) else {
            return Err(DriftError::Kind { found, expected });
        };
        S::life(&st).validate(expected.name(), &self.common)?;
        S::validate(self, &st)?;
        self.st = st;
        Ok(())
    }
}
