//! The wire protocol between the TinyLCM runtime (`tinylcm`) and its fleet server
//! (`sphere-lite`): the versioned API's request and response types, and sync packages.
//!
//! One crate used by both sides, so a device and the server cannot disagree about a field,
//! a path or a package rule: the device builds packages with [`package::PackageBuilder`] and
//! the server accepts them with [`package::read_package`], which is the only place where the
//! ingest safety rules live.
//!
//! * [`paths`]: the HTTP routes of API [`API_VERSION`] (`/api/v2/...`).
//! * [`api`]: the JSON bodies of those routes.
//! * [`blob_key`]: the one rule for the keys the server stores device files under.
//! * [`datahub`]: what devices send for the Data Hub (prediction samples, log lines,
//!   drift-sample embeddings) and the listings built from it.
//! * [`device_json`]: the server's parsers of the JSON inside a package (drift events,
//!   prediction samples, metrics).
//! * [`feedback_file`]: the device's feedback inbox file (human verdicts) and the translation
//!   of the server's feedback items into one.
//! * [`ids`]: the one rule for device and package ids (they become path segments and keys).
//! * [`learning`]: what a device learnt on its own (adaptation rounds, proposed classes,
//!   rollbacks, closed incidents, class renames) as it reports it, and an operator's naming of
//!   a proposed class.
//! * [`legacy`]: what the original TinyLCM clients upload (their JSON, TAR / `.tar.gz`
//!   archives) and its translation into a v2 package.
//! * [`metric_keys`]: the metric keys the runtime always sends and the dashboard charts.
//! * [`model_manifest`]: the model manifest (`<model>.toml`: labels, input spec, output roles,
//!   goldens) that travels inside a signed release.
//! * [`package`]: the sync package format (plain TAR + `manifest.json` with per-file SHA-256)
//!   and its limits; see that module for the full format description and the safety rules.
//! * [`release`]: signed model releases (Ed25519) and release keys.
//! * [`release_policy`]: what a device accepts of a signed release (trusted and revoked keys,
//!   size limit, epoch floor, compatible, the model bytes and manifest).
//! * [`remote_config`]: configuration pushed from the server, its layers and revisions.
//! * [`tflite`]: the bounds-checking walk over a `.tflite` flatbuffer that guards LiteRT,
//!   model signing and release publishing.
//! * [`time`]: Unix milliseconds and their UTC renderings.

#![deny(missing_docs)]

pub mod api;
pub mod blob_key;
pub mod datahub;
pub mod device_json;
pub mod feedback_file;
pub mod ids;
pub mod learning;
pub mod legacy;
pub mod metric_keys;
pub mod model_manifest;
pub mod package;
pub mod release;
pub mod release_policy;
pub mod remote_config;
#[doc(hidden)]
pub mod test_support;
pub mod tflite;
pub mod time;

/// The API version this crate describes; every route lives under `/api/{API_VERSION}/`.
pub const API_VERSION: &str = "v2";

/// HTTP routes of the v2 API.
///
/// Routes are constants (or functions for routes with an id in them) so the client and the
/// server router are written from the same strings.
pub mod paths {
    /// `GET`: service name, version and API version ([`crate::api::StatusResponse`]); no auth.
    pub const STATUS: &str = "/api/v2/status";
    /// `POST`: a device trades an enrollment key for its id and token
    /// ([`crate::api::EnrollRequest`] → [`crate::api::EnrollResponse`]).
    pub const ENROLL: &str = "/api/v2/devices/enroll";

    /// `POST`: upload one sync package (body = the plain TAR, `Content-Type:`
    /// [`crate::package::CONTENT_TYPE`]) as device `device_id` ([`crate::api::UploadResponse`];
    /// refusals are [`crate::api::ErrorResponse`], 413 when
    /// [`crate::package::PackageError::is_too_large`], else 400).
    ///
    /// The id is inserted as given; callers pass ids that pass [`crate::ids::valid_device_id`],
    /// which never need percent-encoding.
    pub fn packages(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/packages")
    }

    /// `GET ?after=N`: the device's unacknowledged feedback with ids above `N`
    /// ([`crate::api::FeedbackPage`]); device token of `device_id` only.
    pub fn feedback(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/feedback")
    }

    /// `POST`: acknowledge applied feedback ([`crate::api::AckRequest`] →
    /// [`crate::api::AckResponse`]); device token of `device_id` only.
    pub fn feedback_ack(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/feedback/ack")
    }

    /// `POST`: what became of applied feedback items on the device, applied or refused with
    /// its reason ([`crate::api::FeedbackResults`] → [`crate::api::FeedbackResultsAnswer`]);
    /// device token of `device_id` only. An older server answers 404.
    pub fn feedback_results(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/feedback/results")
    }

    /// `GET`: the model release this device should run ([`crate::api::ModelAssignment`]), or
    /// 204 No Content when none is assigned; device token of `device_id` only.
    pub fn model(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/model")
    }

    /// `GET`: the model file of release `name`/`version` (supports `Range: bytes=N-` to resume
    /// a download); device token of `device_id` only.
    pub fn model_file(device_id: &str, name: &str, version: &str) -> String {
        format!("/api/v2/devices/{device_id}/models/{name}/{version}")
    }

    /// `POST` (operator, multipart `release` = [`crate::release::SignedRelease`] JSON, `model` =
    /// the file): publish a release. `GET` (operator): releases and rollouts.
    pub const MODELS: &str = "/api/v2/models";

    /// `POST` (operator, [`crate::api::RolloutRequest`]): assign release `name`/`version` to a
    /// device group.
    pub fn rollout(name: &str, version: &str) -> String {
        format!("/api/v2/models/{name}/{version}/rollout")
    }

    /// `GET` / `PUT` ([`crate::api::ConfigRequest`]): the device's own configuration layer and
    /// its delivery state ([`crate::api::DeviceConfigState`]); operator token.
    pub fn device_config(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/config")
    }

    /// `POST`: the device refused a remote configuration ([`crate::api::ConfigRefusal`] →
    /// [`crate::api::ConfigRefused`]); device token of `device_id` only.
    pub fn config_refusal(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/config/refusal")
    }

    /// `GET`: every fleet-wide and group layer ([`crate::api::ConfigLayer`]s); operator token.
    pub const CONFIG: &str = "/api/v2/config";

    /// `PUT` ([`crate::api::ConfigRequest`] → [`crate::api::ScopeConfigResult`]): the layer of
    /// `scope`, `"all"` or a group name; operator token.
    pub fn scope_config(scope: &str) -> String {
        format!("/api/v2/config/{scope}")
    }

    /// `GET`: drift events, filtered and paginated ([`crate::api::DriftEventQuery`] as the
    /// query string → [`crate::api::DriftEventList`]); operator token.
    pub const DRIFT_EVENTS: &str = "/api/v2/drift-events";

    /// `GET`: one drift event ([`crate::api::DriftEventView`]); operator token.
    pub fn drift_event(id: u64) -> String {
        format!("/api/v2/drift-events/{id}")
    }

    /// `POST`: pending → validated ([`crate::api::ValidateRequest`] →
    /// [`crate::api::DriftEventView`]; 409 [`crate::api::DecisionConflict`] if decided already).
    pub fn drift_event_validate(id: u64) -> String {
        format!("/api/v2/drift-events/{id}/validate")
    }

    /// `POST`: pending → rejected ([`crate::api::RejectRequest`] →
    /// [`crate::api::DriftEventView`]; 409 [`crate::api::DecisionConflict`] if decided already).
    pub fn drift_event_reject(id: u64) -> String {
        format!("/api/v2/drift-events/{id}/reject")
    }

    /// `GET`: prediction samples, filtered and paginated ([`crate::datahub::PredictionQuery`]
    /// → [`crate::datahub::PredictionList`]); operator token.
    pub const PREDICTIONS: &str = "/api/v2/predictions";

    /// `GET`: a device's log lines, newest first ([`crate::datahub::LogQuery`] →
    /// [`crate::datahub::LogPage`]); operator token.
    pub fn device_logs(device_id: &str) -> String {
        format!("/api/v2/devices/{device_id}/logs")
    }

    /// `GET`: drift-sample embeddings as NDJSON [`crate::datahub::EmbeddingExportLine`]s
    /// ([`crate::datahub::EmbeddingExportQuery`]); operator token.
    pub const EMBEDDINGS_EXPORT: &str = "/api/v2/exports/embeddings";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_api_version() {
        let prefix = format!("/api/{API_VERSION}/");
        assert!(paths::STATUS.starts_with(&prefix));
        assert!(paths::ENROLL.starts_with(&prefix));
        assert_eq!(paths::packages("pi-7"), "/api/v2/devices/pi-7/packages");
        assert!(paths::DRIFT_EVENTS.starts_with(&prefix));
        assert_eq!(paths::feedback("pi-7"), "/api/v2/devices/pi-7/feedback");
        assert_eq!(
            paths::feedback_ack("pi-7"),
            "/api/v2/devices/pi-7/feedback/ack"
        );
        assert_eq!(paths::drift_event(4), "/api/v2/drift-events/4");
        assert_eq!(
            paths::drift_event_validate(4),
            "/api/v2/drift-events/4/validate"
        );
        assert_eq!(
            paths::drift_event_reject(4),
            "/api/v2/drift-events/4/reject"
        );
    }
}
