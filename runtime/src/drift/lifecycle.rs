//! The state machine every detector shares: warm-up → reference → monitoring → drift →
//! cooldown → monitoring, the one-event-per-onset rule, and pending false-alarm acceptance.

use serde::{Deserialize, Serialize};

use super::config::CommonConfig;
use super::error::{DriftError, invalid};
use super::{Phase, STATE_VERSION};

/// Persistent life-cycle state of one detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Current phase.
    pub phase: Phase,
    /// Observations given so far (valid or not).
    pub received: u64,
    /// Valid samples since entering the current phase.
    pub in_phase: u64,
    /// Observations ignored as invalid.
    pub ignored: u64,
    /// Onsets (events) so far.
    pub onsets: u64,
    /// Sample id of the last onset.
    pub onset_sample: Option<u64>,
    /// Multiplier on the configured threshold (raised by false alarms).
    pub threshold_factor: f64,
    /// False alarms reported.
    pub false_alarms: u64,
    /// Confirmations reported.
    pub confirmed: u64,
    /// The reference was injected (kept across [`reset`](super::Detector::reset)).
    pub injected: bool,
    /// A false alarm arrived during drift: accept the condition after this many more samples.
    pub pending_accept: Option<u64>,
}

/// What a sample did to the life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing changed.
    Stay,
    /// Monitoring → drift: emit the event.
    Onset,
    /// Drift → cooldown (or monitoring when the cooldown is 0).
    Exit,
    /// Cooldown → drift again, silently.
    Reenter,
    /// Cooldown → monitoring.
    Resume,
    /// A pending false alarm is due: accept the current condition, return to monitoring.
    Accept,
}

/// What to do with a valid sample before the statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Warm-up: ignore it.
    Skip,
    /// Add it to the reference.
    Learn,
    /// Add it to the reference, which is now complete: finish it.
    LearnLast,
    /// Monitoring, drift or cooldown: compute the statistic.
    Active,
}

/// Samples a false alarm waits in drift before the condition is accepted, unless a detector
/// needs longer (its window).
pub(crate) const SETTLE_SAMPLES: u64 = 30;

impl LifecycleState {
    /// A fresh life cycle; monitoring at once when the reference was injected.
    pub(crate) fn new(common: &CommonConfig, injected: bool) -> Self {
        let phase = if injected {
            Phase::Monitoring
        } else if common.warm_up > 0 {
            Phase::WarmUp
        } else {
            Phase::Reference
        };
        LifecycleState {
            version: STATE_VERSION,
            phase,
            received: 0,
            in_phase: 0,
            ignored: 0,
            onsets: 0,
            onset_sample: None,
            threshold_factor: 1.0,
            false_alarms: 0,
            confirmed: 0,
            injected,
            pending_accept: None,
        }
    }

    /// Count an observation; returns its index.
    pub(crate) fn begin(&mut self) -> u64 {
        let at = self.received;
        self.received = self.received.saturating_add(1);
        at
    }

    /// Count an invalid observation.
    pub(crate) fn ignore(&mut self) {
        self.ignored = self.ignored.saturating_add(1);
    }

    /// Advance warm-up / reference counting for a valid sample.
    pub(crate) fn stage(&mut self, common: &CommonConfig) -> Stage {
        match self.phase {
            Phase::WarmUp => {
                self.in_phase = self.in_phase.saturating_add(1);
                if self.in_phase >= u64::from(common.warm_up) {
                    self.enter(Phase::Reference);
                }
                Stage::Skip
            }
            Phase::Reference => {
                self.in_phase = self.in_phase.saturating_add(1);
                if self.in_phase >= u64::from(common.reference_samples) {
                    self.enter(Phase::Monitoring);
                    Stage::LearnLast
                } else {
                    Stage::Learn
                }
            }
            _ => Stage::Active,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.in_phase = 0;
    }

    /// Apply this sample's alarm (statistic above threshold) and clear (exit rule) flags.
    pub(crate) fn step(
        &mut self,
        alarm: bool,
        clear: bool,
        sample_id: u64,
        common: &CommonConfig,
    ) -> Transition {
        match self.phase {
            Phase::Monitoring => {
                self.in_phase = self.in_phase.saturating_add(1);
                if alarm {
                    self.enter(Phase::Drift);
                    self.onsets = self.onsets.saturating_add(1);
                    self.onset_sample = Some(sample_id);
                    Transition::Onset
                } else {
                    Transition::Stay
                }
            }
            Phase::Drift => {
                self.in_phase = self.in_phase.saturating_add(1);
                if let Some(left) = self.pending_accept {
                    if left <= 1 || clear {
                        self.pending_accept = None;
                        self.enter(Phase::Monitoring);
                        return Transition::Accept;
                    }
                    self.pending_accept = Some(left - 1);
                    return Transition::Stay;
                }
                if clear {
                    if common.cooldown == 0 {
                        self.enter(Phase::Monitoring);
                    } else {
                        self.enter(Phase::Cooldown);
                    }
                    Transition::Exit
                } else {
                    Transition::Stay
                }
            }
            Phase::Cooldown => {
                self.in_phase = self.in_phase.saturating_add(1);
                if alarm {
                    self.enter(Phase::Drift);
                    Transition::Reenter
                } else if self.in_phase >= u64::from(common.cooldown) {
                    self.enter(Phase::Monitoring);
                    Transition::Resume
                } else {
                    Transition::Stay
                }
            }
            Phase::WarmUp | Phase::Reference => Transition::Stay,
        }
    }

    /// The threshold factor after one more false alarm.
    pub(crate) fn raise(&mut self, common: &CommonConfig) {
        self.false_alarms = self.false_alarms.saturating_add(1);
        self.threshold_factor =
            (self.threshold_factor * common.false_alarm_raise).min(common.max_threshold_factor);
    }

    /// Record a false alarm. Returns true when the detector is still in the drift of that
    /// event: then acceptance waits `settle` samples (see [`Transition::Accept`]); otherwise
    /// the caller accepts the event's recorded condition at once.
    pub(crate) fn false_alarm(
        &mut self,
        sample_id: u64,
        settle: u64,
        common: &CommonConfig,
    ) -> bool {
        self.raise(common);
        let current = self.onset_sample == Some(sample_id);
        match self.phase {
            Phase::Drift if current => {
                self.pending_accept = Some(settle.max(1).saturating_sub(self.in_phase).max(1));
                true
            }
            Phase::Cooldown if current => {
                self.enter(Phase::Monitoring);
                false
            }
            _ => false,
        }
    }

    /// Check a loaded state.
    pub(crate) fn validate(
        &self,
        name: &'static str,
        common: &CommonConfig,
    ) -> Result<(), DriftError> {
        if self.version != STATE_VERSION {
            return Err(DriftError::Version {
                detector: name,
                found: self.version,
                expected: STATE_VERSION,
            });
        }
        if !self.threshold_factor.is_finite()
            || self.threshold_factor < 1.0
            || self.threshold_factor > common.max_threshold_factor.max(1.0)
        {
            return Err(invalid(name, "threshold factor is out of range"));
        }
        if self.ignored > self.received {
            return Err(invalid(name, "more ignored observations than received"));
        }
        let bound = match self.phase {
            Phase::WarmUp => u64::from(common.warm_up),
            Phase::Reference => u64::from(common.reference_samples),
            _ => u64::MAX,
        };
        if self.in_phase > bound {
            return Err(invalid(name, "phase counter beyond its phase length"));
        }
        Ok(())
    }

    /// True when the statistic is being compared with the threshold.
    pub(crate) fn active(&self) -> bool {
        matches!(
            self.phase,
            Phase::Monitoring | Phase::Drift | Phase::Cooldown
        )
    }
}
