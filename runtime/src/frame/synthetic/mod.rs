//! A deterministic, camera-like synthetic scene: objects on a textured table,
//! seen by a slightly noisy camera, with scripted drift phases.
//!
//! It exists so that the whole runtime (training the default model, demos,
//! benchmarks, tests of the drift detectors) works without a camera, and so that
//! every run with the same seed sees byte-identical frames on x86_64 and
//! aarch64 (integer random numbers, IEEE basic float operations only). Each
//! frame shows at most one object of a known class ([`SceneClass::KNOWN`]),
//! or in the `unseen` phase mostly an object the model has never seen (a star).

mod export;
mod render;
pub(crate) mod rng;
mod scene;
mod tables;

use std::fmt;
use std::str::FromStr;

pub use export::{ExportError, ExportSummary, export_classes, export_dataset};

use super::pace::Pacer;
use super::{Frame, FrameError, FrameSource};
use crate::config_error::ConfigError;
use render::Renderer;
use rng::{Rng, mix};
use scene::Scene;

/// Smallest accepted frame side, in pixels.
pub const MIN_SIDE: u32 = 16;
/// Largest accepted frame side, in pixels.
pub const MAX_SIDE: u32 = 4096;
/// Fraction of `unseen`-phase frames that show the star.
pub const UNSEEN_STAR_SHARE: f32 = 0.8;

/// What a synthetic frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SceneClass {
    /// The bare table.
    Empty,
    /// A ball (shaded disc).
    Ball,
    /// A box (near-square rectangle seen from above).
    Box,
    /// A bar (elongated stick).
    Bar,
    /// A five-pointed star: never in training data, shown in the `unseen` phase.
    Star,
    /// Auxiliary shapes ([`SceneClass::AUXILIARY`]): never in a scenario, only exported
    /// (`tinylcm synth --classes`) so a model's embedding can learn shapes beyond the four it
    /// classifies. A triangle.
    Triangle,
    /// Auxiliary: a ring (a disc with a hole showing the table).
    Ring,
    /// Auxiliary: a plus-shaped cross of two bars.
    Cross,
    /// Auxiliary: half a disc.
    HalfDisc,
}

impl SceneClass {
    /// The classes the default model is trained on, in label order.
    pub const KNOWN: [SceneClass; 4] = [
        SceneClass::Empty,
        SceneClass::Ball,
        SceneClass::Box,
        SceneClass::Bar,
    ];
    /// Every class a scenario shows, known ones first (not the [`SceneClass::AUXILIARY`] shapes).
    pub const ALL: [SceneClass; 5] = [
        SceneClass::Empty,
        SceneClass::Ball,
        SceneClass::Box,
        SceneClass::Bar,
        SceneClass::Star,
    ];

    /// Shapes no phase shows: training material for a feature extractor's embedding (an
    /// auxiliary head learns them, the exported `scores` do not), so the embedding stays
    /// informative about shapes it does not classify. None of them is the star.
    pub const AUXILIARY: [SceneClass; 4] = [
        SceneClass::Triangle,
        SceneClass::Ring,
        SceneClass::Cross,
        SceneClass::HalfDisc,
    ];

    /// The label, as used in folder names and [`super::Truth::label`].
    pub fn as_str(self) -> &'static str {
        match self {
            SceneClass::Empty => "empty",
            SceneClass::Ball => "ball",
            SceneClass::Box => "box",
            SceneClass::Bar => "bar",
            SceneClass::Star => "star",
            SceneClass::Triangle => "triangle",
            SceneClass::Ring => "ring",
            SceneClass::Cross => "cross",
            SceneClass::HalfDisc => "half-disc",
        }
    }
}

impl fmt::Display for SceneClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SceneClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SceneClass::ALL
            .into_iter()
            .chain(SceneClass::AUXILIARY)
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown class `{s}` (expected empty, ball, box, bar or star, or an \
                     auxiliary shape: triangle, ring, cross, half-disc)"
                )
            })
    }
}

/// A stretch of the scenario with one kind of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Known classes under normal light.
    Normal,
    /// Known classes under a strongly changed brightness and colour temperature.
    Lighting,
    /// Mostly the unseen star object.
    Unseen,
    /// Known classes, blurred and with heavy sensor noise.
    Noise,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 4] = [Phase::Normal, Phase::Lighting, Phase::Unseen, Phase::Noise];

    /// The name, as in configuration files and [`super::Truth::phase`].
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Normal => "normal",
            Phase::Lighting => "lighting",
            Phase::Unseen => "unseen",
            Phase::Noise => "noise",
        }
    }

    /// Classes a frame of this phase shows when nothing forces one.
    fn pick_class(self, rng: &mut Rng) -> SceneClass {
        if self == Phase::Unseen && rng.chance(UNSEEN_STAR_SHARE) {
            return SceneClass::Star;
        }
        SceneClass::KNOWN[rng.below(SceneClass::KNOWN.len() as u32) as usize]
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown phase `{s}` (expected normal, lighting, unseen or noise)")
            })
    }
}

/// One entry of the scenario: `frames` frames of `phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PhaseSpec {
    /// Kind of content.
    pub phase: Phase,
    /// Length in frames (at least 1).
    pub frames: u64,
}

/// Settings of the synthetic scene (`[source.synthetic]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyntheticConfig {
    /// Frame width in pixels (default 320).
    pub width: u32,
    /// Frame height in pixels (default 240).
    pub height: u32,
    /// Seed; the same seed gives byte-identical frames everywhere (default 1).
    pub seed: u64,
    /// Target frame rate; 0 delivers frames as fast as they are asked for (default 0).
    pub fps: f64,
    /// The scenario, in order (default: normal 600, then lighting, unseen and noise for 200
    /// each, every drift followed by 400 normal frames to recover in).
    pub phases: Vec<PhaseSpec>,
    /// Start again after the last phase instead of ending (default false).
    #[serde(rename = "loop")]
    pub looping: bool,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            width: 320,
            height: 240,
            seed: 1,
            fps: 0.0,
            phases: vec![
                PhaseSpec {
                    phase: Phase::Normal,
                    frames: 600,
                },
                PhaseSpec {
                    phase: Phase::Lighting,
                    frames: 200,
                },
                PhaseSpec {
                    phase: Phase::Normal,
                    frames: 400,
                },
                PhaseSpec {
                    phase: Phase::Unseen,
                    frames: 200,
                },
                PhaseSpec {
                    phase: Phase::Normal,
                    frames: 400,
                },
                PhaseSpec {
                    phase: Phase::Noise,
                    frames: 200,
                },
                PhaseSpec {
                    phase: Phase::Normal,
                    frames: 400,
                },
            ],
            looping: false,
        }
    }
}

impl SyntheticConfig {
    /// Check every value; keys are reported as `source.synthetic.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_side("source.synthetic.width", self.width)?;
        check_side("source.synthetic.height", self.height)?;
        check_fps("source.synthetic.fps", self.fps)?;
        if self.phases.is_empty() {
            return Err(ConfigError::new(
                "source.synthetic.phases",
                "the scenario has no phases",
                "list at least one phase, e.g. phases = [{ phase = \"normal\", frames = 600 }]",
            ));
        }
        if let Some(i) = self.phases.iter().position(|p| p.frames == 0) {
            return Err(ConfigError::new(
                format!("source.synthetic.phases[{i}].frames"),
                "a phase of 0 frames",
                "give every phase at least 1 frame, or remove it",
            ));
        }
        if self
            .phases
            .iter()
            .try_fold(0u64, |a, p| a.checked_add(p.frames))
            .is_none()
        {
            return Err(ConfigError::new(
                "source.synthetic.phases",
                "the phase lengths add up to more than 2^64 frames",
                "use shorter phases and `loop = true`",
            ));
        }
        Ok(())
    }
}

/// Reject a frame side outside [`MIN_SIDE`]..=[`MAX_SIDE`].
pub(crate) fn check_side(key: &str, v: u32) -> Result<(), ConfigError> {
    if (MIN_SIDE..=MAX_SIDE).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{v} pixels is outside {MIN_SIDE}..={MAX_SIDE}"),
            "use a size such as 320x240 or 640x480",
        ))
    }
}

/// Reject a negative, absurd or non-finite frame rate (0 = unpaced is fine).
pub(crate) fn check_fps(key: &str, fps: f64) -> Result<(), ConfigError> {
    if fps.is_finite() && (0.0..=1000.0).contains(&fps) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{fps} frames per second is outside 0..=1000"),
            "use 0 for as fast as possible, or a rate such as 10 or 30",
        ))
    }
}

/// The synthetic scene as a [`FrameSource`].
pub struct SyntheticSource {
    cfg: SyntheticConfig,
    renderer: Renderer,
    total: u64,
    pacer: Pacer,
}

impl SyntheticSource {
    /// A source for `cfg`; invalid settings give [`FrameError::Open`].
    pub fn new(cfg: SyntheticConfig) -> Result<Self, FrameError> {
        cfg.validate().map_err(|e| FrameError::Open {
            what: "synthetic scene".into(),
            reason: e.to_string(),
        })?;
        let total = cfg.phases.iter().map(|p| p.frames).sum();
        Ok(SyntheticSource {
            renderer: Renderer::new(cfg.width, cfg.height, cfg.seed),
            pacer: Pacer::new(cfg.fps),
            total,
            cfg,
        })
    }

    /// The phase of frame `sequence`, or `None` after the end of a non-looping scenario.
    pub fn phase_at(&self, sequence: u64) -> Option<Phase> {
        let mut pos = if self.cfg.looping {
            sequence % self.total
        } else {
            sequence
        };
        for p in &self.cfg.phases {
            if pos < p.frames {
                return Some(p.phase);
            }
            pos -= p.frames;
        }
        None
    }

    /// Total frames of one pass through the scenario.
    pub fn scenario_len(&self) -> u64 {
        self.total
    }
}

impl FrameSource for SyntheticSource {
    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, FrameError> {
        let Some(phase) = self.phase_at(self.pacer.sequence()) else {
            return Ok(false);
        };
        let mut rng = Rng::new(mix(self.cfg.seed, self.pacer.sequence()));
        let class = phase.pick_class(&mut rng);
        let scene = Scene::sample(&mut rng, phase, class, self.cfg.width, self.cfg.height);
        frame.reshape(self.cfg.width, self.cfg.height);
        self.renderer.draw(&scene, &mut frame.data, &mut rng);
        frame.set_truth(Some(class.as_str()), Some(phase.as_str()));
        self.pacer.deliver(frame);
        Ok(true)
    }

    fn describe(&self) -> String {
        let phases: Vec<String> = self
            .cfg
            .phases
            .iter()
            .map(|p| format!("{} {}", p.phase, p.frames))
            .collect();
        format!(
            "synthetic {}x{} seed {} [{}]{}{}",
            self.cfg.width,
            self.cfg.height,
            self.cfg.seed,
            phases.join(", "),
            if self.cfg.looping { " looping" } else { "" },
            if self.cfg.fps > 0.0 {
                format!(" at {} fps", self.cfg.fps)
            } else {
                String::new()
            },
        )
    }
}
