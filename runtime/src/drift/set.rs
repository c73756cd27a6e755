//! Every configured detector, run per sample, with one persisted state for all of them.

use serde::{Deserialize, Serialize};

use super::adwin::{Adwin, AdwinState};
use super::config::DriftConfig;
use super::cusum::{Cusum, CusumState};
use super::distribution::{DistributionShift, DistributionState};
use super::embedding::{EmbeddingShift, EmbeddingState};
use super::error::DriftError;
use super::ewma::{EwmaMonitor, EwmaState};
use super::page_hinkley::{PageHinkley, PageHinkleyState};
use super::{Detector, DetectorKind, DriftEvent, Observation, STATE_VERSION};

/// The persisted state of one detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum DetectorState {
    /// [`PageHinkley::distance`].
    PageHinkleyDistance(PageHinkleyState),
    /// [`EwmaMonitor`].
    EwmaConfidence(EwmaState),
    /// [`PageHinkley::confidence`].
    PageHinkleyConfidence(PageHinkleyState),
    /// [`Cusum`].
    Cusum(CusumState),
    /// [`DistributionShift`].
    Distribution(DistributionState),
    /// [`EmbeddingShift`].
    Embedding(EmbeddingState),
    /// [`Adwin`].
    Adwin(AdwinState),
}

impl DetectorState {
    /// Which detector this state belongs to.
    pub fn kind(&self) -> DetectorKind {
        match self {
            DetectorState::PageHinkleyDistance(_) => DetectorKind::PageHinkleyDistance,
            DetectorState::EwmaConfidence(_) => DetectorKind::EwmaConfidence,
            DetectorState::PageHinkleyConfidence(_) => DetectorKind::PageHinkleyConfidence,
            DetectorState::Cusum(_) => DetectorKind::Cusum,
            DetectorState::Distribution(_) => DetectorKind::Distribution,
            DetectorState::Embedding(_) => DetectorKind::Embedding,
            DetectorState::Adwin(_) => DetectorKind::Adwin,
        }
    }
}

/// The persisted state of a [`DetectorSet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSetState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// One state per detector, in the set's order.
    pub detectors: Vec<DetectorState>,
}

/// Every configured detector; [`update`](DetectorSet::update) runs them all on one sample.
pub struct DetectorSet {
    detectors: Vec<Box<dyn Detector>>,
    events: Vec<DriftEvent>,
}

impl std::fmt::Debug for DetectorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorSet")
            .field("detectors", &self.kinds().collect::<Vec<_>>())
            .finish()
    }
}

impl DetectorSet {
    /// The enabled detectors of `config` (validated first), in [`DetectorKind::ALL`] order.
    pub fn from_config(config: &DriftConfig) -> Result<Self, DriftError> {
        config.validate()?;
        let c = config.common();
        let mut detectors: Vec<Box<dyn Detector>> = Vec::new();
        if config.page_hinkley_distance.enabled {
            detectors.push(Box::new(PageHinkley::distance(
                c,
                config.page_hinkley_distance.clone(),
            )));
        }
        if config.ewma_confidence.enabled {
            detectors.push(Box::new(EwmaMonitor::new(
                c,
                config.ewma_confidence.clone(),
            )));
        }
        if config.page_hinkley_confidence.enabled {
            detectors.push(Box::new(PageHinkley::confidence(
                c,
                config.page_hinkley_confidence.clone(),
            )));
        }
        if config.cusum.enabled {
            detectors.push(Box::new(Cusum::new(c, config.cusum.clone())));
        }
        if config.distribution.enabled {
            detectors.push(Box::new(DistributionShift::new(
                c,
                config.distribution.clone(),
            )));
        }
        if config.embedding.enabled {
            detectors.push(Box::new(EmbeddingShift::new(c, config.embedding.clone())));
        }
        if config.adwin.enabled {
            detectors.push(Box::new(Adwin::new(c, config.adwin.clone())));
        }
        Ok(Self::new(detectors))
    }

    /// A set of explicitly built detectors (e.g. with injected references).
    pub fn new(detectors: Vec<Box<dyn Detector>>) -> Self {
        let events = Vec::with_capacity(detectors.len());
        DetectorSet { detectors, events }
    }

    /// Run every detector on `obs`; the events of this sample (usually none).
    pub fn update(&mut self, obs: &Observation<'_>) -> &[DriftEvent] {
        self.events.clear();
        for d in &mut self.detectors {
            if let Some(e) = d.update(obs) {
                self.events.push(e);
            }
        }
        &self.events
    }

    /// Take the detectors out of the set.
    pub fn into_detectors(self) -> Vec<Box<dyn Detector>> {
        self.detectors
    }

    /// The detectors, in order.
    pub fn detectors(&self) -> &[Box<dyn Detector>] {
        &self.detectors
    }

    /// The kinds, in order.
    pub fn kinds(&self) -> impl Iterator<Item = DetectorKind> + '_ {
        self.detectors.iter().map(|d| d.kind())
    }

    /// The detector of `kind`, if configured.
    pub fn get_mut(&mut self, kind: DetectorKind) -> Option<&mut (dyn Detector + 'static)> {
        self.detectors
            .iter_mut()
            .find(|d| d.kind() == kind)
            .map(|d| d.as_mut())
    }

    /// Pass a false-alarm verdict to the detector that raised `event`.
    pub fn false_alarm(&mut self, event: &DriftEvent) {
        if let Some(d) = self.get_mut(event.detector) {
            d.false_alarm(event);
        }
    }

    /// Pass a confirmation to the detector that raised `event`.
    pub fn confirmed(&mut self, event: &DriftEvent) {
        if let Some(d) = self.get_mut(event.detector) {
            d.confirmed(event);
        }
    }

    /// Reset every detector.
    pub fn reset(&mut self) {
        for d in &mut self.detectors {
            d.reset();
        }
    }

    /// The state of every detector.
    pub fn save(&self) -> DetectorSetState {
        DetectorSetState {
            version: STATE_VERSION,
            detectors: self.detectors.iter().map(|d| d.save()).collect(),
        }
    }

    /// Load a saved state: all or nothing (on error no detector changes).
    pub fn load(&mut self, state: DetectorSetState) -> Result<(), DriftError> {
        if state.version != STATE_VERSION {
            return Err(DriftError::Version {
                detector: "set",
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        if state.detectors.len() != self.detectors.len() {
            return Err(DriftError::SetMismatch {
                found: state.detectors.len(),
                expected: self.detectors.len(),
            });
        }
        let before = self.save();
        for (d, s) in self.detectors.iter_mut().zip(state.detectors) {
            if let Err(e) = d.load(s) {
                for (d, s) in self.detectors.iter_mut().zip(before.detectors) {
                    let _ = d.load(s);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
