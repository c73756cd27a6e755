//! `tinylcm demo`: the built-in model on the built-in synthetic camera.
//!
//! Needs no camera, no files and no server: the scene renders normal frames,
//! then a lighting change, an unseen object and sensor noise, and the summary
//! shows how the model fares in each phase.

use std::path::PathBuf;

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
    /// Frames per scenario phase (normal gets three times as many).
    #[arg(long, default_value_t = 200)]
    phase_frames: u64,
    /// Inference backend (overrides `engine.backend`).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Built-in model variant (overrides `model.builtin`).
    #[arg(long, value_enum)]
    model: Option<Variant>,
    /// Scene seed (overrides `source.synthetic.seed`).
    #[arg(long)]
    seed: Option<u64>,
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
    let config = args.scenario.config(args.fps)?;
    crate::run::run_config(&config)
}

impl ScenarioArgs {
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
        for phase in &mut scene.phases {
            phase.frames = if phase.phase == tinylcm::frame::synthetic::Phase::Normal {
                args.phase_frames.saturating_mul(3)
            } else {
                args.phase_frames
            };
        }
        if let Some(backend) = args.backend {
            config.engine.backend = match backend {
                Backend::Auto => BackendChoice::Auto,
                Backend::TfliteC => BackendChoice::TfliteC,
                Backend::Litert => BackendChoice::Litert,
            };
        }
        if let Some(model) = args.model {
            config.model.path = None;
            config.model.builtin = match model {
                Variant::Int8 => BuiltinVariant::Int8,
                Variant::F32 => BuiltinVariant::F32,
            };
        }
        config.validate()?;
        Ok(config)
    }
}
