//! Every HTTP error as a JSON `ErrorResponse` with the right status and a fix where one exists.
//!
//! Why: the original server leaked tracebacks and server paths; here domain errors become
//! client-facing text chosen in the domain, storage details are logged only, and warp's own
//! rejections (unknown route, too large, no Content-Length) get the same JSON shape. Every
//! one carries `"origin": "sphere-lite"` ([`tinylcm_protocol::api::ERROR_ORIGIN`]): a device
//! treats a refusal as final only with that marker, so a reverse proxy's own 413 or 400 in
//! front of this server never costs a device its data.

use std::convert::Infallible;

use tinylcm_protocol::api::{DecisionConflict, DriftEventView, ERROR_ORIGIN, ErrorResponse};
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::domain::DomainError;

/// A refusal carrying its status and client-facing body.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Client-facing message.
    pub error: String,
    /// What the client should do.
    pub fix: Option<String>,
    /// For a 409 on a decided drift event: the event as it stands (sent as
    /// [`DecisionConflict`], which is an `ErrorResponse` plus `current`).
    pub current: Option<Box<DriftEventView>>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// An error with `status`, `error` and optional `fix`.
    pub fn new(status: StatusCode, error: impl Into<String>, fix: Option<&str>) -> Self {
        ApiError {
            status,
            error: error.into(),
            fix: fix.map(str::to_owned),
            current: None,
        }
    }

    /// As a warp reply.
    pub fn reply(&self) -> warp::reply::Response {
        if let Some(current) = &self.current {
            let body = DecisionConflict {
                error: self.error.clone(),
                fix: self.fix.clone(),
                origin: Some(ERROR_ORIGIN.to_owned()),
                current: (**current).clone(),
            };
            return warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        }
        let body = ErrorResponse::new(self.error.clone(), self.fix.clone());
        warp::reply::with_status(warp::reply::json(&body), self.status).into_response()
    }

    /// The generic 500 (details go to the log, not to the client).
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error",
            Some("retry later; the server log has the details"),
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let (status, error, fix) = match e {
            DomainError::Unauthorized { error, fix } => (StatusCode::UNAUTHORIZED, error, fix),
            DomainError::Forbidden { error, fix } => (StatusCode::FORBIDDEN, error, fix),
            DomainError::BadRequest { error, fix } => (StatusCode::BAD_REQUEST, error, fix),
            DomainError::TooLarge { error, fix } => (StatusCode::PAYLOAD_TOO_LARGE, error, fix),
            DomainError::InsufficientStorage { error, fix } => {
                (StatusCode::INSUFFICIENT_STORAGE, error, fix)
            }
            DomainError::NotFound { error, fix } => (StatusCode::NOT_FOUND, error, fix),
            DomainError::Exists { error, fix } => (StatusCode::CONFLICT, error, fix),
            DomainError::Conflict {
                error,
                fix,
                current,
            } => {
                return ApiError {
                    status: StatusCode::CONFLICT,
                    error,
                    fix,
                    current: Some(current),
                };
            }
            other => {
                tracing::error!(error = %other, "request failed");
                return ApiError::internal();
            }
        };
        ApiError {
            status,
            error,
            fix,
            current: None,
        }
    }
}

impl From<DomainError> for Rejection {
    fn from(e: DomainError) -> Self {
        warp::reject::custom(ApiError::from(e))
    }
}

/// Turn any rejection into a JSON error reply.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    use warp::reject as r;
    let error = if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.reply());
    } else if rejection.is_not_found() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such route",
            Some("see sphere-lite/README.md for the API"),
        )
    } else if rejection.find::<r::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            Some("send smaller packages"),
        )
    } else if rejection.find::<r::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "Content-Length is required",
            Some("send the body with a Content-Length header (no chunked encoding)"),
        )
    } else if let Some(e) = rejection.find::<r::InvalidQuery>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {e}"),
            Some("see sphere-lite/README.md for the parameters of this route"),
        )
    } else if rejection.find::<r::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None)
    } else if rejection.find::<r::InvalidHeader>().is_some()
        || rejection.find::<r::MissingHeader>().is_some()
    {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid or missing header", None)
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::new(StatusCode::BAD_REQUEST, "bad request", None)
    };
    Ok(error.reply())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Every error this server answers, its own refusals and warp's rejections alike, carries
    /// the origin marker a device checks before it treats a refusal as final. Fails before
    /// this change: the bodies had no `origin`, so a device could not tell them from a proxy's.
    #[tokio::test]
    async fn every_error_carries_the_origin_marker() {
        let mut conflict = ApiError::new(StatusCode::CONFLICT, "already decided", None);
        conflict.current = Some(Box::new(
            serde_json::from_value(serde_json::json!({
                "id": 1, "device_id": "d", "package_id": "p", "event_seq": 1, "incident": 1,
                "detector": "x", "statistic": 1.0, "threshold": 1.0, "magnitude": 1.0,
                "sample_id": 1, "unix_ms": 1, "received_unix_ms": 1, "samples": [],
                "status": "rejected"
            }))
            .unwrap(),
        ));
        let rejections = [
            warp::reject::not_found(),
            warp::reject::custom(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad package",
                Some("rebuild it"),
            )),
            warp::reject::custom(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too big",
                None,
            )),
            warp::reject::custom(ApiError::internal()),
            warp::reject::custom(conflict),
        ];
        for rejection in rejections {
            let response = recover(rejection).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(status.is_client_error() || status.is_server_error());
            assert!(
                tinylcm_protocol::api::is_sphere_lite_error(&body),
                "{status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
