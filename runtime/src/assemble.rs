//! Build a runnable pipeline from a [`Config`]: pick the model, open the
//! engine, wire preprocessing and outputs, open the frame source.
//!
//! Every subcommand that runs frames goes through here, so `demo`, `run`,
//! `replay` and `bench` cannot disagree about what a setting means.

use crate::config::{Config, ModelConfig};
use crate::engine::{self, EngineError};
use crate::frame::{self, FrameError, FrameSource};
use crate::model::{self, LoadedModel, ModelError};
use crate::pipeline::{OutputSelection, Pipeline, PipelineError};

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
