//! The MLflow `Tracking` adapter: sphere-lite with no state of its own.
//!
//! Why: with tracking in MLflow and blobs in S3, a sphere-lite process keeps nothing locally,
//! so several replicas can serve one fleet and operators see devices, packages and drift
//! events in the MLflow UI. Submodules: [`client`] (typed REST calls, MLflow error mapping,
//! pagination, bounded answers), [`filter`] (injection-proof search filters), [`artifacts`]
//! (paths on MLflow's artifact proxy), [`package_objects`] (package records as S3 objects)
//! and [`tracking`] (the mapping).
//!
//! # Layout (namespace `<ns>`, default `sphere-lite`)
//!
//! Every experiment name starts with `<ns>/`, so several fleets (or test runs) can share one
//! MLflow without seeing each other's data.
//!
//! * `<ns>/auth`: operator tokens as experiment tags `sphere.operator_token.<sha256 hex>` =
//!   operator name; enrollment keys as runs tagged `sphere.key_sha256` and `sphere.uses`.
//! * `<ns>/device/<id>`: one experiment per device; tags `sphere.device_id`, `sphere.name`,
//!   `sphere.hardware`, `sphere.token_sha256`, `sphere.enrolled_unix_ms`,
//!   `sphere.last_seen_unix_ms` (its package count is the number of its package records in
//!   S3, below). Its one run `feedback-queue` holds the
//!   feedback items as params `feedback.<id>` (JSON), the acknowledgement watermark as the
//!   metric `sphere.feedback_acked`, and the device's result of each item (applied, or refused
//!   with its reason) as the write-once param `result.<id>` (JSON; the first report stands).
//!   Before an item is written, an empty S3 object `feedback/<device>/<id>` marks its id
//!   (beside the package records, `tracking::feedback_marks`): a device's poll lists those
//!   marks and reads the queue run only when one lies after its cursor, so polling an empty
//!   queue costs no MLflow call and an item queued through one replica is delivered by the
//!   next poll on any.
//!   One run per UTC day with metric points, `metrics-YYYY-MM-DD` (tags `sphere.kind` =
//!   `device-metrics`, `sphere.day`, `sphere.device`; `FINISHED`, spanning the day), holds
//!   every point of that day as its key's history: timestamp = the point's time, step = the
//!   second of the day. That is what a data scientist charts in the MLflow UI, and what the
//!   server reads back: a series is one search of the device's day runs and one
//!   `metrics/get-history` per day in its range; a processed package adds one `runs/log-batch`.
//! * Packages are **not** in MLflow: each accepted package is a small record object in S3
//!   ([`package_objects`]: the record, a pending copy until processed, a newest-first index
//!   entry), so accepting an upload makes no MLflow call at all and any replica finds pending
//!   work by listing one prefix.
//! * `<ns>/drift-events`: one run per drift event (run name `<device>/<event_seq>`), the report
//!   as the JSON tag `sphere.event`, filter tags `sphere.device`, `sphere.event_seq`,
//!   `sphere.detector_hex`, `sphere.status`, and metrics `sphere.id` (the server id, ordered
//!   and compared numerically) and `sphere.unix_ms` (device time, for `since`/`until`). A
//!   decision is the write-once param `sphere.decision`; its note and feedback sit in the
//!   tags `sphere.note.<nonce>` / `sphere.feedback.<nonce>` of that attempt.
//! * `<ns>/predictions`: the Data Hub's index, one run per prediction sample (run name = its
//!   blob key), filter tags `sphere.device`, `sphere.package_id`, `sphere.class` (class names
//!   are a filter-safe set), the sample as the JSON tag `sphere.prediction`, metrics
//!   `sphere.unix_ms` (device time: range filters and the newest-first order) and
//!   `sphere.confidence`. Chosen over an index blob per package or per device because MLflow
//!   filters and orders runs on the server: a gallery page is one search whatever the fleet
//!   size, nothing is read-modify-written (so replicas cannot lose each other's writes), and
//!   no replica keeps state. Re-processing skips samples whose run exists; two replicas
//!   racing on one package can leave two runs of a sample, and listings drop the copy.
//!   Log files and drift-sample embeddings stay in the blob store only (`domain::datahub`).
//! * `<ns>/releases`: one run per published release (run name `<name>-<version>`, the record
//!   as JSON in tags `sphere.record.<i>`), `FINISHED` once complete, with the artifacts
//!   `model/model.tflite`, `model/model.toml` (the model manifest) and `model/release.json`
//!   (the signed release), written through MLflow's artifact proxy ([`artifacts`]). Each is
//!   a version of the registered model `<ns with / as .>.<name>` whose source
//!   `runs:/<run>/model` is that folder, so `mlflow artifacts download -u
//!   models:/<model>/<version>` returns those three files.
//!
//! Only hashes of tokens and keys are stored. Values from devices or operators enter search
//! filters only as checked literals or as hex (see [`filter`]).
//!
//! # Several replicas on one MLflow
//!
//! MLflow has no compare-and-set, but it has two operations the database makes exclusive:
//! creating an experiment (names are unique) and logging a param (a run's param cannot change
//! value: of concurrent writers of different values exactly one succeeds). The adapter builds
//! on those where exactness matters, and on idempotency keys elsewhere:
//!
//! * **Enrollment keys are exact**: each use is a write-once param `use.<i>` on the key's run;
//!   a key of n uses enrolls at most n devices however many replicas race. A crash between
//!   claiming a use and creating the device loses that use (never grants an extra one).
//! * **Decisions are exact**: the first `sphere.decision` param wins; every other attempt gets
//!   `AlreadyDecided` (409). The winner then sets the `sphere.status` tag and queues the
//!   feedback. If it dies in between, the status tag lags (listings still filter on the param
//!   after the search) and the next decision attempt, once the decision is
//!   [`DECISION_REPAIR_AFTER_MS`](tracking::DECISION_REPAIR_AFTER_MS) old, sets the tag and
//!   queues the winner's feedback (idempotent: keyed `drift-event/<id>/<n>`).
//! * **Feedback ids are exact and increasing per device**: each id is claimed as a write-once
//!   param `feedback.<id>`; the ack watermark is a metric logged with `step` = watermark, and
//!   MLflow's latest value is the largest step, so concurrent acks never move it backwards.
//!   Acknowledged items stay as params (runs' params cannot be deleted) but are never
//!   delivered again.
//! * **Packages** are keyed by (device, package id) in S3: one record object per id, so two
//!   replicas accepting the *same* package at the same moment (a device's retry racing its
//!   original) can both answer "accepted", but there is one record, counted once, and its
//!   processing is idempotent (drift and learning events write-once, metric points identical
//!   on re-logging, blobs rewritten with the same bytes). No package is lost: its pending copy
//!   is written before the 200 and removed only after it was processed; a replica that dies
//!   in between leaves it for any other (or itself, restarted) to finish.
//! * **Drift events** are keyed by (device, event_seq) the same way (the copy with the smaller
//!   id stays). Their ids are `unix ms × 1024 + k`, increasing per process, checked after
//!   writing: if another run holds the same id, the later checker takes a new one. Across
//!   replicas ids follow arrival order only as closely as the clocks agree, so a listing that
//!   pages with `after` can miss an event stored by another replica with a smaller id in the
//!   same instant.
//! * **A device's day run** (`metrics-YYYY-MM-DD`) created by two replicas at once: both
//!   search afterwards and keep the canonical one (earliest start, then smallest run id); the
//!   other is deleted. A writer that had chosen the deleted copy in between has its
//!   `log-batch` refused and retries once on the kept run; points it logged into the copy
//!   before the deletion are not charted (a window of milliseconds at a device's first batch
//!   of a day on two replicas at once; the package's `metrics.json` keeps them).
//! * **Package counts are exact**: a listing of the device's records, not a counter.
//!   `sphere.last_seen_unix_ms` is a last-writer-wins tag (written once a minute per device
//!   per replica), so it can step back by the overlap of two replicas' writes.
//! * **Device records are cached** per replica (an upload's authorisation then costs no
//!   MLflow call). With S3 (a server), a device token rotated or revoked through one replica is
//!   announced by an empty object `device-changes/<unix ms>-<device>-<nonce>`; every replica
//!   lists those once every [`DEVICE_CHANGES_POLL`](tracking::DEVICE_CHANGES_POLL) and drops
//!   the records named, so the old token keeps working on another replica for about that long
//!   (`tracking::device_changes`); records are otherwise trusted for
//!   [`DEVICE_CACHE_TTL_ANNOUNCED`](tracking::DEVICE_CACHE_TTL_ANNOUNCED), which bounds how
//!   stale another replica's name, hardware and package count of a device are. Without S3 the
//!   records are trusted for [`DEVICE_CACHE_TTL`](tracking::DEVICE_CACHE_TTL), the bound on a
//!   rotated token then. The replica that made a change drops its copy at once.
//! * **Operator tokens are cached** for [`OPERATOR_CACHE_TTL`](tracking::OPERATOR_CACHE_TTL)
//!   (a removed token stays valid that long on a replica that cached it); an unknown token
//!   re-reads the list at most every
//!   [`OPERATOR_MISS_REFRESH`](tracking::OPERATOR_MISS_REFRESH), so a new token works on every
//!   replica within that time.
//!
//! MLflow's database enforces the exclusive operations; the file store (deprecated) does not,
//! so use a database backend (`--backend-store-uri sqlite:///...` or PostgreSQL/MySQL).
//! MLflow 3 accepts only `localhost`/`127.0.0.1` as `Host` by default: a remote MLflow needs
//! `--allowed-hosts`. Tested against MLflow 3.17.2.

pub mod artifacts;
pub mod client;
pub mod filter;
pub mod kept_keys;
pub mod package_objects;
pub mod tracking;

pub use kept_keys::KeptKeys;
pub use tracking::MlflowTracking;

/// Default namespace (experiment name prefix).
pub const DEFAULT_NAMESPACE: &str = "sphere-lite";

/// Where the MLflow server is and which part of it is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowSettings {
    /// Base URL, e.g. `http://127.0.0.1:5000`.
    pub url: String,
    /// Experiment name prefix ([`valid_namespace`]).
    pub namespace: String,
    /// The metric keys logged as MLflow metrics ([`KeptKeys`]; all by default).
    pub metric_keys: KeptKeys,
}

/// Whether `ns` can be a namespace: 1..=100 bytes of `[A-Za-z0-9.-]` in `/`-separated
/// non-empty segments. No `_` or `%`: they are wildcards in the `LIKE` searches of device
/// experiments.
pub fn valid_namespace(ns: &str) -> bool {
    names::valid_namespace(ns)
}

/// Experiment names of a namespace.
pub(crate) mod names {
    pub fn valid_namespace(ns: &str) -> bool {
        (1..=100).contains(&ns.len())
            && ns.split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            })
    }

    pub fn auth(ns: &str) -> String {
        format!("{ns}/auth")
    }

    pub fn drift_events(ns: &str) -> String {
        format!("{ns}/drift-events")
    }

    pub fn predictions(ns: &str) -> String {
        format!("{ns}/predictions")
    }

    pub fn releases(ns: &str) -> String {
        format!("{ns}/releases")
    }

    pub fn device(ns: &str, device_id: &str) -> String {
        format!("{ns}/device/{device_id}")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn namespaces_are_checked() {
            for good in ["sphere-lite", "fleet-a/prod", "t.1", "A-9"] {
                assert!(valid_namespace(good), "{good}");
            }
            for bad in [
                "",
                "a_b",
                "a%",
                "/a",
                "a/",
                "a//b",
                "a b",
                "a'b",
                "ä",
                &"a".repeat(101),
            ] {
                assert!(!valid_namespace(bad), "{bad:?}");
            }
            assert_eq!(device("ns", "dev-1"), "ns/device/dev-1");
        }
    }
}
