//! The per-frame path: frame → input tensor → model → prediction, timed by stage.
//!
//! [`Pipeline`] is the synchronous step for one frame and owns every buffer it
//! needs, so the steady state allocates nothing (but the resize library's filter
//! coefficients when a frame is resized: see [`crate::preprocess`]). [`runner`]
//! drives it from a [`crate::frame::FrameSource`] with capture on its own thread,
//! and reports progress to an observer.

pub mod capture;
pub mod outputs;
pub mod runner;

use crate::engine::{Engine, EngineError, ResolveTensor, TensorRef};
use crate::frame::Frame;
use crate::model::ModelManifest;
use crate::preprocess::{PreprocessConfig, PreprocessError, Preprocessor};
use outputs::{OutputBuffer, top_class};

/// Failures of the per-frame path.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The model or one of its tensors failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The frame could not be turned into model input.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The model does not fit its manifest or the configuration.
    #[error("model does not match its manifest: {0}")]
    Mismatch(String),
}

/// The label of an embedding-only model's frame that nothing classified (no KNN runs).
pub const UNCLASSIFIED: &str = "unknown";

/// The result of one frame.
///
/// For an embedding-only model the pipeline knows no class: `class` 0, `label`
/// [`UNCLASSIFIED`], `confidence` NaN and no `scores`, until the runner puts the KNN's
/// class and confidence in (see [`runner`]).
#[derive(Debug, Clone, Copy)]
pub struct Prediction<'a> {
    /// Index of the top class.
    pub class: usize,
    /// Its label.
    pub label: &'a str,
    /// Its score (softmax probability for the default model).
    pub confidence: f32,
    /// All class scores, dequantised (empty for an embedding-only model).
    pub scores: &'a [f32],
    /// The embedding, if the model has one.
    pub embedding: Option<&'a [f32]>,
}

/// Which outputs to read, when the configuration overrides the manifest.
#[derive(Debug, Clone, Default)]
pub struct OutputSelection {
    /// Scores output.
    pub scores: Option<TensorRef>,
    /// Embedding output.
    pub embedding: Option<TensorRef>,
}

/// Model, preprocessing and output buffers for the per-frame step.
pub struct Pipeline {
    engine: Box<dyn Engine>,
    preprocessor: Preprocessor,
    input: Vec<u8>,
    /// `None`: an embedding-only model.
    scores: Option<OutputBuffer>,
    embedding: Option<OutputBuffer>,
    labels: Vec<String>,
}

impl Pipeline {
    /// Wire `engine` to its manifest; `preprocess` overrides the manifest's input spec.
    pub fn new(
        engine: Box<dyn Engine>,
        manifest: &ModelManifest,
        preprocess: Option<&PreprocessConfig>,
        select: &OutputSelection,
    ) -> Result<Self, PipelineError> {
        let input_info = engine
            .inputs()
            .first()
            .ok_or_else(|| PipelineError::Mismatch("the model has no input tensor".into()))?;
        if engine.inputs().len() != 1 {
            return Err(PipelineError::Mismatch(format!(
                "the model has {} inputs; only single-image models are supported",
                engine.inputs().len()
            )));
        }
        let spec_config = PreprocessConfig::from(&manifest.input);
        let preprocessor = Preprocessor::new(preprocess.unwrap_or(&spec_config), input_info)?;
        let (width, height) = preprocessor.input_size();
        let spec = &manifest.input;
        if (width, height) != (spec.width as usize, spec.height as usize) {
            return Err(PipelineError::Mismatch(format!(
                "the manifest says the input is {}x{} but the model's input tensor `{}` is {width}x{height} ({:?})",
                spec.width, spec.height, input_info.name, input_info.shape
            )));
        }
        let input = vec![0; preprocessor.output_len()];

        let scores = match select.scores.as_ref().or(manifest.outputs.scores.as_ref()) {
            Some(r) => {
                let scores = OutputBuffer::new(engine.as_ref(), r.resolve(engine.outputs())?)?;
                if scores.info().element_count() != manifest.labels.len() {
                    return Err(PipelineError::Mismatch(format!(
                        "scores output `{}` has {} values but the manifest lists {} labels",
                        scores.info().name,
                        scores.info().element_count(),
                        manifest.labels.len()
                    )));
                }
                Some(scores)
            }
            None => None,
        };
        let embedding_ref = match (
            select
                .embedding
                .as_ref()
                .or(manifest.outputs.embedding.as_ref()),
            &scores,
        ) {
            (Some(r), _) => Some(r.resolve(engine.outputs())?),
            (None, Some(_)) => None,
            // Embedding-only and unnamed: the model's one output.
            (None, None) if engine.outputs().len() == 1 => Some(0),
            (None, None) => {
                return Err(PipelineError::Mismatch(format!(
                    "the manifest names neither a scores nor an embedding output and the model \
                     has {} outputs; name them in `[outputs]` (`scores = \"...\"`, \
                     `embedding = \"...\"`)",
                    engine.outputs().len()
                )));
            }
        };
        let embedding = match embedding_ref {
            Some(index) => Some(OutputBuffer::new(engine.as_ref(), index)?),
            None => None,
        };
        Ok(Pipeline {
            engine,
            preprocessor,
            input,
            scores,
            embedding,
            labels: manifest.labels.clone(),
        })
    }

    /// The engine, e.g. to report its backend.
    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// The model has no class scores: the KNN on its embedding is the classifier.
    pub fn embedding_only(&self) -> bool {
        self.scores.is_none()
    }

    /// Length of the embedding output, when the model has one.
    pub fn embedding_len(&self) -> Option<usize> {
        self.embedding.as_ref().map(|e| e.info().element_count())
    }

    /// Class labels in score order (empty for an embedding-only model).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Prepare `frame` as the model's input (the preprocess stage alone).
    pub fn load_input(&mut self, frame: &Frame) -> Result<(), PipelineError> {
        self.preprocessor.run(frame, &mut self.input)?;
        self.engine.set_input(0, &self.input)?;
        Ok(())
    }

    /// Run the model on the input already loaded (the invoke stage alone).
    pub fn invoke(&mut self) -> Result<(), PipelineError> {
        self.engine.invoke()?;
        Ok(())
    }

    /// Run one frame through preprocess, invoke and output reading.
    pub fn process(&mut self, frame: &Frame) -> Result<Prediction<'_>, PipelineError> {
        self.load_input(frame)?;
        self.invoke()?;
        self.read_outputs()
    }

    /// Read the outputs of the last invoke as a prediction.
    pub fn read_outputs(&mut self) -> Result<Prediction<'_>, PipelineError> {
        if let Some(embedding) = self.embedding.as_mut() {
            embedding.read(self.engine.as_mut())?;
        }
        let embedding = self.embedding.as_ref().map(OutputBuffer::values);
        let Some(scores) = self.scores.as_mut() else {
            return Ok(Prediction {
                class: 0,
                label: UNCLASSIFIED,
                confidence: f32::NAN,
                scores: &[],
                embedding,
            });
        };
        scores.read(self.engine.as_mut())?;
        let scores = scores.values();
        let (class, confidence) = top_class(scores).ok_or_else(|| {
            PipelineError::Mismatch("the scores output has no finite value".into())
        })?;
        Ok(Prediction {
            class,
            label: &self.labels[class],
            confidence,
            scores,
            embedding,
        })
    }
}
