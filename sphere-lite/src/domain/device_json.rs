//! Every parser of what a device sends inside a package — drift events, Data Hub parts
//! (prediction samples, log lines), metrics — run on one package without a store.
//!
//! Why: package processing ([`Sphere::process`](super::Sphere::process)) runs these same
//! functions and then stores what they return; the fuzz targets in `tests/fuzz` run them
//! millions of times and must not pay for a database write per input.

use tinylcm_protocol::package::Package;

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
    /// Problems found (a problem never fails a package; the rest of it is kept).
    pub problems: Vec<String>,
}

/// Run the drift-event, Data Hub and metrics parsers on `package`, as processing does.
pub fn parse(package: &Package, received_unix_ms: u64) -> Parsed {
    let drift = super::drift::events_of(package, received_unix_ms);
    let datahub = super::datahub::datahub_parts_of(package);
    let (points, metric_problems) = super::metrics::metrics_of(package);
    let mut problems = drift.problems;
    problems.extend(datahub.problems);
    problems.extend(metric_problems);
    Parsed {
        drift_events: drift.events.len(),
        embeddings: drift.embeddings.len(),
        predictions: datahub.predictions.len(),
        metric_points: points.len(),
        problems,
    }
}
