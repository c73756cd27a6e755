//! The synthetic streams of an evaluation: a learning scenario per (seed, drift order) and
//! the held-out frames every phase is scored on.
//!
//! The learning scenario has the demo's shape (a long normal stretch, then each drift phase
//! followed by normal frames to recover in), with the drift phases in a chosen order, so a
//! result cannot hinge on lighting always coming first. The held-out frames come from
//! another seed ([`HELD_OUT_SEED_OFFSET`]): the model is scored on frames it never learnt
//! from, in every phase, the unseen object included.

use std::fmt;
use std::str::FromStr;

use crate::config::Config;
use crate::frame::SourceKind;
use crate::frame::synthetic::{Phase, PhaseSpec};

/// Held-out frames of seed `s` come from seed `s + HELD_OUT_SEED_OFFSET`.
pub const HELD_OUT_SEED_OFFSET: u64 = 1000;

/// The order of the drift phases in a learning scenario, e.g. `noise,unseen,lighting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftOrder(pub Vec<Phase>);

impl DriftOrder {
    /// The default scenario's order and its reverse: each drift comes first once, and the
    /// unseen object arrives once after lighting, once after noise.
    pub fn defaults() -> Vec<DriftOrder> {
        vec![
            DriftOrder(vec![Phase::Lighting, Phase::Unseen, Phase::Noise]),
            DriftOrder(vec![Phase::Noise, Phase::Unseen, Phase::Lighting]),
        ]
    }

    /// Phase names, in order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|p| p.as_str().to_string()).collect()
    }

    /// The learning scenario: normal × 3, then every drift phase followed by normal × 2, in
    /// units of `phase_frames` (the demo's shape; the default order gives the default scenario).
    pub fn learning_phases(&self, phase_frames: u64) -> Vec<PhaseSpec> {
        let spec = |phase, times: u64| PhaseSpec {
            phase,
            frames: phase_frames.saturating_mul(times),
        };
        let mut phases = vec![spec(Phase::Normal, 3)];
        for &drift in &self.0 {
            phases.push(spec(drift, 1));
            phases.push(spec(Phase::Normal, 2));
        }
        phases
    }
}

impl fmt::Display for DriftOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl FromStr for DriftOrder {
    type Err = String;

    /// A comma-separated list of drift phases, each at most once.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut phases = Vec::new();
        for word in s.split(',').map(str::trim) {
            let phase: Phase = word.parse()?;
            if phase == Phase::Normal {
                return Err(
                    "`normal` is not a drift phase: list lighting, unseen and/or noise".into(),
                );
            }
            if phases.contains(&phase) {
                return Err(format!("`{phase}` is listed twice in `{s}`"));
            }
            phases.push(phase);
        }
        Ok(DriftOrder(phases))
    }
}

/// Held-out frames: `frames` of every phase, normal first.
pub fn held_out_phases(frames: u64) -> Vec<PhaseSpec> {
    Phase::ALL
        .into_iter()
        .map(|phase| PhaseSpec { phase, frames })
        .collect()
}

/// `base` with its source replaced by the synthetic scene of `seed` playing `phases` once,
/// unpaced (the scene's size stays the configured one).
pub fn synthetic(base: &Config, seed: u64, phases: Vec<PhaseSpec>) -> Config {
    let mut config = base.clone();
    config.source.kind = SourceKind::Synthetic;
    let scene = &mut config.source.synthetic;
    scene.seed = seed;
    scene.phases = phases;
    scene.fps = 0.0;
    scene.looping = false;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_order_gives_the_default_scenario() {
        let order: DriftOrder = "lighting,unseen,noise".parse().unwrap();
        assert_eq!(order, DriftOrder::defaults()[0]);
        assert_eq!(
            order.learning_phases(200),
            crate::frame::synthetic::SyntheticConfig::default().phases
        );
        assert_eq!(order.to_string(), "lighting,unseen,noise");
    }

    #[test]
    fn orders_refuse_normal_duplicates_and_unknown_phases() {
        assert!(
            "normal,noise"
                .parse::<DriftOrder>()
                .unwrap_err()
                .contains("drift phase")
        );
        assert!(
            "noise, noise"
                .parse::<DriftOrder>()
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            "night"
                .parse::<DriftOrder>()
                .unwrap_err()
                .contains("unknown phase")
        );
        let short: DriftOrder = "unseen".parse().unwrap();
        assert_eq!(short.learning_phases(10).len(), 3);
    }

    #[test]
    fn held_out_frames_cover_every_phase() {
        let phases = held_out_phases(50);
        assert_eq!(phases.len(), 4);
        assert!(phases.iter().all(|p| p.frames == 50));
        assert_eq!(phases[0].phase, Phase::Normal);
    }
}
