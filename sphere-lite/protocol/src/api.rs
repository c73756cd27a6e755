//! JSON bodies of the v2 API.
//!
//! Requests are parsed with `deny_unknown_fields`: a misspelt field is an error the client sees,
//! not a silently ignored setting. Responses tolerate unknown fields so a newer server can add
//! fields without breaking older devices.

use serde::{Deserialize, Serialize};

/// `GET /api/v2/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Service name, e.g. `"sphere-lite"`.
    pub service: String,
    /// Service version (the crate version).
    pub version: String,
    /// API version, [`crate::API_VERSION`].
    pub api: String,
}

/// `POST /api/v2/devices/enroll` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The fleet's enrollment key, configured on the server by an operator.
    pub enrollment_key: String,
    /// Optional human-readable device name.
    #[serde(default)]
    pub name: Option<String>,
    /// Optional hardware description (e.g. `"Raspberry Pi Zero 2 W"`).
    #[serde(default)]
    pub hardware: Option<String>,
}

/// `POST /api/v2/devices/enroll` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The id the server assigned (passes [`crate::ids::valid_device_id`]).
    pub device_id: String,
    /// The device's bearer token; shown once, the server keeps only a hash.
    pub token: String,
}

/// What the server did with an uploaded package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadOutcome {
    /// First time this package id was seen; it is stored.
    Accepted,
    /// The package id was already stored; nothing changed. The device treats this as success,
    /// which makes uploads idempotent (a retry after a lost response is harmless).
    Duplicate,
}

/// `POST /api/v2/devices/{id}/packages` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    /// The package id from the package's manifest.
    pub package_id: String,
    /// Stored now or already stored before.
    pub outcome: UploadOutcome,
}

/// Body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What is wrong, in one sentence.
    pub error: String,
    /// What the caller can do about it, when the server knows.
    #[serde(default)]
    pub fix: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_kebab_case() {
        let r = UploadResponse {
            package_id: "p1".into(),
            outcome: UploadOutcome::Duplicate,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"package_id":"p1","outcome":"duplicate"}"#);
        assert_eq!(serde_json::from_str::<UploadResponse>(&json).unwrap(), r);
    }

    #[test]
    fn enroll_request_refuses_unknown_fields_and_allows_missing_options() {
        let ok: EnrollRequest = serde_json::from_str(r#"{"enrollment_key":"k"}"#).unwrap();
        assert_eq!(ok.name, None);
        assert!(
            serde_json::from_str::<EnrollRequest>(r#"{"enrollment_key":"k","nmae":"x"}"#).is_err()
        );
    }

    #[test]
    fn error_response_fix_is_optional() {
        let e: ErrorResponse = serde_json::from_str(r#"{"error":"bad"}"#).unwrap();
        assert_eq!(e.fix, None);
    }
}
