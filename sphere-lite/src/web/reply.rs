//! How the dashboard's handlers answer: rendered pages, redirects, error pages, embedded
//! assets, and domain calls moved to the blocking pool.
//!
//! Why a module of its own: every page answers through these, so a refusal looks the same
//! (an error page with a way back) wherever it happens.

use askama::Template;
use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::pages::{ErrorPage, Nav};
use crate::domain::DomainError;
use crate::http::ApiError;

/// A handler's result: the page, or the refusal to send instead (both complete responses).
pub(super) type Page = Result<Response, Response>;

pub(super) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = warp::reply::with_status(warp::reply::html(body), status).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            warp::reply::with_status("internal server error", StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }
}

pub(super) fn redirect(to: &str) -> Response {
    let mut r = warp::reply::with_status(warp::reply(), StatusCode::SEE_OTHER).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(super) fn error_page(
    nav: Option<Nav>,
    status: StatusCode,
    message: impl Into<String>,
    fix: Option<String>,
    back: &str,
) -> Response {
    html(
        status,
        &ErrorPage {
            nav,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.into(),
            fix,
            outcomes: vec![],
            back: back.to_owned(),
        },
    )
}

pub(super) fn bad_request(nav: Option<Nav>, message: impl Into<String>, back: &str) -> Response {
    error_page(nav, StatusCode::BAD_REQUEST, message, None, back)
}

/// A domain error as a page (storage details are logged, not shown).
pub(super) fn domain_error(nav: Option<Nav>, e: DomainError, back: &str) -> Response {
    let api = ApiError::from(e);
    error_page(nav, api.status, api.error, api.fix, back)
}

/// Run a blocking domain call on the blocking pool.
pub(super) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DomainError> + Send + 'static,
) -> Result<T, DomainError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(crate::ports::StoreError::new("task", e).into()))
}

pub(super) fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Both arms of a handler's result are responses.
pub(super) fn done(page: Page) -> Response {
    page.unwrap_or_else(|r| r)
}
