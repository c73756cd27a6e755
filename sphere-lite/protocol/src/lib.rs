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
//! * [`ids`]: the one rule for device and package ids (they become path segments and keys).
//! * [`package`]: the sync package format (plain TAR + `manifest.json` with per-file SHA-256)
//!   and its limits; see that module for the full format description and the safety rules.

#![deny(missing_docs)]

pub mod api;
pub mod ids;
pub mod package;

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
    }
}
