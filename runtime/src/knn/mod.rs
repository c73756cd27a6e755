//! K-nearest-neighbour classification on feature vectors: the label-free
//! view of "does this frame look like what the model was set up with".
//!
//! Why a KNN beside the model: its neighbour distances and vote shares are
//! what the drift detectors watch, and its memory can grow with validated or
//! pseudo-labelled samples on the device without retraining the model.
//!
//! What differs from the original proof of concept, on purpose:
//!
//! * plain textbook distances ([`distance`]), not "inflated" ones;
//! * one search per frame into a reused [`Prediction`] (the original searched
//!   twice per frame and logged every neighbour);
//! * vote share divides by the neighbours actually found, not by `k`;
//! * bounded memory with FIFO or class-balanced eviction, add and remove by
//!   [`SampleId`], deterministic tie rules ([`search`]);
//! * a versioned state validated on load ([`KnnState`]);
//! * reference statistics without self-matches ([`build_initial`]).

mod config;
pub mod distance;
mod folder;
mod initial;
mod labels;
mod memory;
pub mod search;
mod state;

pub use config::{Eviction, KnnConfig, MAX_K, MAX_SAMPLES, MAX_STORED_VALUES, Vote};
pub use distance::Metric;
pub use folder::build_initial_from_folder;
pub use initial::{
    ClassStats, DistanceStats, Initial, InitialOptions, MAX_INITIAL_VALUES, ReferenceStats,
    build_initial,
};
pub use labels::{LabelId, LabelTable, MAX_LABEL_BYTES, MAX_LABELS};
pub use memory::{Added, Knn, SampleId, SampleRef};
pub use search::{Neighbor, Prediction, WEIGHT_EPSILON};
pub use state::{KnnState, STATE_VERSION};

/// Failures of the KNN and of building its initial state.
#[derive(Debug, thiserror::Error)]
pub enum KnnError {
    /// A setting is out of bounds.
    #[error("invalid KNN setting: {0}")]
    Config(String),
    /// A vector has the wrong length.
    #[error("feature vector of {got} values, the KNN holds {expected}-d vectors")]
    Dimension {
        /// The KNN's dimensionality.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("feature vector value {index} is not finite")]
    NonFinite {
        /// Index of the first bad value.
        index: usize,
    },
    /// A label id not in the label table.
    #[error("label id {0} is not in the label table")]
    UnknownLabel(u16),
    /// A label name that cannot be added.
    #[error("invalid label: {0}")]
    Label(String),
    /// A persisted state that is inconsistent or of another version.
    #[error("invalid KNN state: {0}")]
    InvalidState(String),
    /// The initial state cannot be built from the samples given.
    #[error("cannot build the initial state: {0}")]
    Initial(String),
    /// The image folder could not be read.
    #[error("cannot read the labelled images: {0}")]
    Source(String),
    /// The embedding function failed on an image.
    #[error("embedding failed (class: error): {0}")]
    Embed(String),
}
