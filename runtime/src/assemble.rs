//! Build a runnable pipeline from a [`Config`]: pick the model, open the
//! engine, wire preprocessing and outputs, open the frame source.
//!
//! Every subcommand that runs frames goes through here, so `demo`, `run`,
//! `replay` and `bench` cannot disagree about what a setting means.

use std::path::Path;
use std::sync::Arc;

use crate::autonomy::{self, Autonomy, AutonomyError, InitialError, InitialState};
use crate::board::space::{SpaceBudget, Tier, shed_files};
use crate::config::{Config, ModelConfig};
use crate::engine::{self, EngineError};
use crate::frame::{self, FrameError, FrameSource};
use crate::model::{self, LoadedModel, ModelError};
use crate::pipeline::{OutputSelection, Pipeline, PipelineError};
use crate::state::{StateError, Store};
use crate::status::{ModelInfo, StatusError, StatusObserver, StatusOptions};

/// Failures assembling a pipeline, each naming the part that failed.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The model or its manifest could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// No engine could load the model.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Model, manifest and configuration do not fit together.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The frame source could not be opened.
    #[error(transparent)]
    Source(#[from] FrameError),
    /// The autonomy layer could not start.
    #[error(transparent)]
    Autonomy(#[from] AutonomyError),
    /// The state store could not be opened.
    #[error(
        "{0}. Fix: set `state.path` (and `state.snapshots`) to a writable place, or pass --state DIR"
    )]
    State(#[from] StateError),
    /// The status reporter could not start.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// An embedding-only model cannot run as configured (it needs the KNN as classifier).
    #[error("{0}")]
    EmbeddingOnly(String),
}

/// The model the configuration names: a file with its manifest, or the built-in one.
pub fn load_model(config: &ModelConfig) -> Result<LoadedModel, ModelError> {
    match &config.path {
        Some(path) => LoadedModel::from_file(path, config.manifest.as_deref()),
        None => model::builtin(config.builtin),
    }
}

/// Open the engine for `model` and wire it into a pipeline.
pub fn pipeline(config: &Config, model: &LoadedModel) -> Result<Pipeline, AssembleError> {
    let engine = engine::open(&config.engine, &model.source())?;
    let select = OutputSelection {
        scores: config.model.scores.clone(),
        embedding: config.model.embedding.clone(),
    };
    Ok(Pipeline::new(
        engine,
        &model.manifest,
        config.preprocess.as_ref(),
        &select,
    )?)
}

/// Open the configured frame source.
pub fn source(config: &Config) -> Result<Box<dyn FrameSource>, AssembleError> {
    Ok(frame::open(&config.source)?)
}

/// The initial KNN state for `model`: `model.initial-state`, else `<stem>.state` beside a
/// model file, else the one built in with the default model. `None` when a model file has
/// none (the KNN is then off).
pub fn initial_state(config: &ModelConfig) -> Result<Option<(String, InitialState)>, InitialError> {
    if let Some(path) = &config.initial_state {
        return Ok(Some((
            path.display().to_string(),
            InitialState::read(path)?,
        )));
    }
    match &config.path {
        Some(model) => {
            let beside = autonomy::initial::beside(model);
            if beside.is_file() {
                Ok(Some((
                    beside.display().to_string(),
                    InitialState::read(&beside)?,
                )))
            } else {
                Ok(None)
            }
        }
        None => Ok(Some((
            format!("builtin:{:?}", config.builtin).to_lowercase(),
            autonomy::initial::builtin(config.builtin)?,
        ))),
    }
}

/// Open the state store at `config.state.path`, creating its folder, with the data
/// partition's space budget ([`space`]) attached.
pub fn store(config: &Config) -> Result<Arc<Store>, AssembleError> {
    let store = Arc::new(Store::open(&config.state.path, config.state.policy())?);
    store.attach_space(space(config));
    Ok(store)
}

/// How often the space budget looks at the data partition when nobody nudges it.
const SPACE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The data partition's space budget (the state database's folder, `[board] min-free-mib`)
/// with the shedders of the files no running component owns: model downloads, old log
/// files and old snapshots (the thumbnail writer registers its own), and its keeper thread.
pub fn space(config: &Config) -> Arc<SpaceBudget> {
    let state_dir = config
        .state
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf);
    let budget = SpaceBudget::new(state_dir.clone(), config.board.min_free_bytes());
    let downloads = state_dir.join("downloads");
    budget.register_for_life(
        Tier::Downloads,
        Box::new(move |want| shed_files(&downloads, want, |_| true)),
    );
    let logs = crate::sync::logs::log_dir(&state_dir);
    budget.register_for_life(
        Tier::Logs,
        Box::new(move |want| crate::sync::logs::shed_old(&logs, want)),
    );
    if let Ok(snapshots) = crate::state::Snapshots::new(config.state.snapshots.clone(), 1) {
        budget.register_for_life(
            Tier::Snapshots,
            Box::new(move |want| snapshots.shed_old(want)),
        );
    }
    if let Err(e) = budget.start_keeper(SPACE_INTERVAL) {
        tracing::warn!("the disk space keeper did not start: {e}; shedding only when nudged");
    }
    budget
}

/// Start the autonomy layer for `model` running in `pipeline`, keeping its state in `store`
/// and taking human verdicts from its feedback inbox.
pub fn autonomy(
    config: &Config,
    model: &LoadedModel,
    pipeline: &Pipeline,
    store: Option<Arc<Store>>,
) -> Result<Autonomy, AssembleError> {
    autonomy_with(config, model, pipeline, store, true)
}

/// [`autonomy`], with (`inbox`) or without a feedback inbox: `tinylcm eval` scores what the
/// layer learns on its own, so no verdict file may reach it.
pub fn autonomy_with(
    config: &Config,
    model: &LoadedModel,
    pipeline: &Pipeline,
    store: Option<Arc<Store>>,
    inbox: bool,
) -> Result<Autonomy, AssembleError> {
    let initial = initial_state(&config.model).map_err(AutonomyError::from)?;
    let sha = model.manifest.sha256.to_ascii_lowercase();
    let inbox = match &store {
        Some(store) if inbox => Some(
            autonomy::feedback::Inbox::start(
                autonomy::feedback::inbox_dir(&config.state.path),
                Arc::clone(store),
            )
            .map_err(AutonomyError::from)?,
        ),
        _ => None,
    };
    if pipeline.embedding_only() {
        embedding_only_fits(config, model, initial.is_some())?;
    }
    Ok(Autonomy::start(autonomy::Setup {
        config: &config.autonomy,
        knn: &config.knn,
        drift: &config.drift,
        model_sha256: &sha,
        labels: pipeline.labels(),
        embedding_dim: pipeline.embedding_len(),
        initial,
        inbox,
        quarantine: &config.quarantine,
        adaptation: &config.adaptation,
        snapshots: match &store {
            Some(_) => Some(config.state.snapshots()?),
            None => None,
        },
        store,
    })?)
}

/// An embedding-only model is classified by the KNN: refuse a configuration under which
/// nothing would classify its frames.
fn embedding_only_fits(
    config: &Config,
    model: &LoadedModel,
    has_initial: bool,
) -> Result<(), AssembleError> {
    if config.autonomy.classifier == autonomy::Classifier::Model {
        return Err(AssembleError::EmbeddingOnly(format!(
            "autonomy.classifier = \"model\", but the model {} has no class scores (an \
             embedding-only model: its manifest names no `scores` output); its classifier is the \
             KNN. Fix: set autonomy.classifier = \"knn\"",
            model.origin
        )));
    }
    if !has_initial {
        return Err(AssembleError::EmbeddingOnly(format!(
            "the model {} is embedding-only: the KNN classifies its frames and needs an initial \
             state, and none was found. Fix: build one from a folder with one sub-folder of \
             images per class, `tinylcm init-state DIR --config <this config>` (it is written \
             beside the model), or set model.initial-state",
            model.origin
        )));
    }
    Ok(())
}

/// The status reporter of a run of `model` in `pipeline` from `source` (its description),
/// when `[status]` is enabled; `store` is the state store whose figures it reports, `extras`
/// what the caller adds to each report.
pub fn status(
    config: &Config,
    model: &LoadedModel,
    pipeline: &Pipeline,
    source: &str,
    store: Option<Arc<Store>>,
    extras: Option<crate::status::StatusExtras>,
) -> Result<Option<StatusObserver>, AssembleError> {
    if !config.status.enabled {
        return Ok(None);
    }
    let engine = pipeline.engine();
    Ok(Some(StatusObserver::start(StatusOptions {
        path: config.status.path.clone(),
        interval: config.status.interval(),
        model: ModelInfo {
            origin: model.origin.clone(),
            sha256: model.manifest.sha256.to_ascii_lowercase(),
            backend: engine.backend().to_string(),
            accelerator: engine.accelerator().to_string(),
            source: source.to_string(),
        },
        store,
        disk: config.state.path.parent().map(Path::to_path_buf),
        extras,
    })?))
}

/// One line saying what runs: model, backend, accelerator, source.
pub fn describe(pipeline: &Pipeline, model: &str, source: &str) -> String {
    let engine = pipeline.engine();
    format!(
        "model {model} on {} ({}), source: {source}",
        engine.backend(),
        engine.accelerator()
    )
}

/// `dir` as the state location: `dir/state.redb`, `dir/snapshots`, `dir/quarantine` (thumbnails)
/// and `dir/status.json`.
pub fn state_in(config: &mut Config, dir: &Path) {
    config.state.path = dir.join("state.redb");
    config.state.snapshots = dir.join("snapshots");
    config.quarantine.thumbnail_dir = dir.join("quarantine");
    config.status.path = dir.join("status.json");
}
