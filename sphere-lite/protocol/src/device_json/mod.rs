//! Every parser of the JSON a device sends inside a sync package, as sphere-lite's package
//! processing runs it: drift events ([`drift`]), prediction samples for the Data Hub
//! ([`predictions`]), metrics ([`metrics`]), the release a device refused ([`refusal`]) and learning events ([`learning`]); each never
//! fails: a bad member or entry is a problem of its package, and the rest is kept. And the log viewer's reading of a device's
//! log lines ([`logs`]).
//!
//! Why in the protocol crate: these parse outside input and need no server state, so the fuzz
//! targets in `tests/fuzz` run the very functions the server runs, millions of times, without
//! building the server's dependency tree or paying for a database write per input.
//! sphere-lite re-exports them from its `domain` modules and stores what they return.

pub mod drift;
pub mod learning;
pub mod logs;
pub mod metrics;
pub mod predictions;
pub mod refusal;

use crate::package::Package;

/// What the parsers made of a package (counts only: what processing would store).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// Drift events kept.
    pub drift_events: usize,
    /// Embeddings kept with them.
    pub embeddings: usize,
    /// Prediction samples indexed.
    pub predictions: usize,
    /// Metric points.
    pub metric_points: usize,
    /// Learning events (adaptation rounds, proposed classes, ...).
    pub learning_events: usize,
    /// Problems found (a problem never fails a package; the rest of it is kept).
    pub problems: Vec<String>,
}

/// Run the drift-event, prediction, metrics and learning parsers on `package`, as
/// processing does.
pub fn parse(package: &Package, received_unix_ms: u64) -> Parsed {
    let drift = drift::events_of(package, received_unix_ms);
    let predictions = predictions::predictions_of(package);
    let (points, metric_problems) = metrics::metrics_of(package);
    let learning = learning::learning_of(package, received_unix_ms);
    let mut problems = drift.problems;
    problems.extend(predictions.problems);
    problems.extend(metric_problems);
    problems.extend(learning.problems);
    Parsed {
        drift_events: drift.events.len(),
        embeddings: drift.embeddings.len(),
        predictions: predictions.predictions.len(),
        metric_points: points.len(),
        learning_events: learning.events.len(),
        problems,
    }
}
