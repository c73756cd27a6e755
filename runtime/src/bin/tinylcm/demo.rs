//! `tinylcm demo`: the built-in model on the built-in synthetic camera.
//!
//! Needs no camera, no files and no server: the scene renders normal frames,
//! then a lighting change, an unseen object and sensor noise, and the summary
//! shows how the model fares in each phase.

use std::path::PathBuf;

use anyhow::Context;

use tinylcm::config::{BuiltinVariant, Config};
use tinylcm::engine::BackendChoice;
use tinylcm::frame::SourceKind;

/// Options of `tinylcm demo`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Camera frame rate; 0 runs as fast as the model allows.
    #[arg(long, default_value_t = 60.0)]
    fps: f64,
}

/// The synthetic scenario and model choice, shared by `demo` and `report`.
#[derive(clap::Args)]
pub struct ScenarioArgs {
    /// Configuration file; its `[source]` is replaced by the synthetic camera.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Frames per drift phase (the first normal phase gets three times as many, the
    /// recovery phases twice as many).
    #[arg(long, default_value_t = 200)]
    phase_frames: u64,
    #[command(flatten)]
    model: ModelArgs,
    /// Scene seed (overrides `source.synthetic.seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the state (KNN, detectors, events, snapshots) in DIR and continue from what is
    /// there; default: a fresh temporary folder, removed at the end.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

/// Backend and built-in model overrides, shared by `demo`, `report` and `eval`.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Inference backend (overrides `engine.backend`).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Built-in model variant (overrides `model.builtin`).
    #[arg(long, value_enum)]
    model: Option<Variant>,
}

/// Where a scenario keeps its state; a temporary folder lives as long as this value.
pub struct StateDir {
    /// The folder.
    pub path: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Backend {
    Auto,
    TfliteC,
    Litert,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Variant {
    Int8,
    F32,
}

/// Run the demo.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = args.scenario.config(args.fps)?;
    let state = args.scenario.state_dir()?;
    tinylcm::assemble::state_in(&mut config, &state.path);
    crate::run::run_config(&config)
}

impl ScenarioArgs {
    /// The `--state` folder, or a fresh temporary one.
    pub fn state_dir(&self) -> anyhow::Result<StateDir> {
        Ok(match &self.state {
            Some(path) => StateDir {
                path: path.clone(),
                _temporary: None,
            },
            None => {
                let t = tempfile::Builder::new()
                    .prefix("tinylcm-demo-")
                    .tempdir()
                    .context("cannot create a temporary state folder")?;
                StateDir {
                    path: t.path().to_path_buf(),
                    _temporary: Some(t),
                }
            }
        })
    }

    /// The configuration for the scenario at `fps` (0: unpaced).
    pub fn config(&self, fps: f64) -> anyhow::Result<Config> {
        let args = self;
        let mut config = Config::load(args.config.as_deref())?;
        config.source.kind = SourceKind::Synthetic;
        let scene = &mut config.source.synthetic;
        scene.fps = fps;
        scene.looping = false;
        if let Some(seed) = args.seed {
            scene.seed = seed;
        }
        // The first normal stretch is long enough for every detector to learn its
        // reference; later ones long enough to recover and cool down before the next drift.
        for (i, phase) in scene.phases.iter_mut().enumerate() {
            let times = match (phase.phase, i) {
                (tinylcm::frame::synthetic::Phase::Normal, 0) => 3,
                (tinylcm::frame::synthetic::Phase::Normal, _) => 2,
                _ => 1,
            };
            phase.frames = args.phase_frames.saturating_mul(times);
        }
        args.model.apply(&mut config);
        config.validate()?;
        Ok(config)
    }
}

impl ModelArgs {
    /// Put the overrides into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(backend) = self.backend {
            config.engine.backend = match backend {
                Backend::Auto => BackendChoice::Auto,
                Backend::TfliteC => BackendChoice::TfliteC,
                Backend::Litert => BackendChoice::Litert,
            };
        }
        if let Some(model) = self.model {
            config.model.path = None;
            config.model.builtin = match model {
                Variant::Int8 => BuiltinVariant::Int8,
                Variant::F32 => BuiltinVariant::F32,
            };
        }
    }
}
