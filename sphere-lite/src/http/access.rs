//! Read-only operators: the one place that refuses every write to a `read-only` token or to a
//! dashboard session logged in with one.
//!
//! Why one filter in front of every route instead of a check in each handler: a route added
//! later cannot forget it. The rule is by method: `GET`, `HEAD` and `OPTIONS` read (the
//! dashboard's pages, the API's listings, the Prometheus endpoint); every other method writes,
//! except logging in and out of the dashboard. Requests without an operator credential pass
//! through untouched (device routes check device tokens themselves, enrollment its key, and
//! operator routes refuse a missing or unknown token).

use std::sync::Arc;

use warp::http::{Method, StatusCode};
use warp::{Filter, Rejection};

use super::{ApiError, blocking};
use crate::domain::Sphere;
use crate::ports::Role;
use crate::web::SESSION_COOKIE;

/// Writes that a read-only operator may still make: logging in (the token is in the form) and
/// logging out.
pub const READ_ONLY_WRITES: [&str; 2] = ["/ui/login", "/ui/logout"];

/// Whether a request with `method` to `path` changes state, i.e. needs an admin.
pub fn needs_admin(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !READ_ONLY_WRITES.contains(&path)
}

/// Passes every request except a write made with a read-only token or session (403).
pub(crate) fn read_only_gate(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
        .and(warp::any().map(move || sphere.clone()))
        .and_then(
            |method: Method,
             path: warp::path::FullPath,
             auth: Option<String>,
             cookie: Option<String>,
             sphere: Arc<Sphere>| async move {
                if !needs_admin(&method, path.as_str()) {
                    return Ok(());
                }
                // Only the dashboard reads the session cookie; the API never does.
                let dashboard = path.as_str().starts_with("/ui/");
                let role = blocking(move || {
                    if let Some(role) = sphere.bearer_role(auth.as_deref())? {
                        return Ok(Some(role));
                    }
                    match cookie.filter(|_| dashboard) {
                        Some(id) if crate::web::cookie_safe(&id) => {
                            Ok(sphere.session_operator(&id)?.map(|o| o.role))
                        }
                        _ => Ok(None),
                    }
                })
                .await?;
                if role == Some(Role::ReadOnly) {
                    return Err(warp::reject::custom(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "this operator token is read-only: it cannot change anything",
                        Some("use an admin token (`sphere-lite token create --role admin`)"),
                    )));
                }
                Ok::<_, Rejection>(())
            },
        )
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_the_login_pass_everything_else_needs_an_admin() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!needs_admin(&m, "/api/v2/devices"));
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(needs_admin(&m, "/api/v2/devices"));
            assert!(needs_admin(&m, "/ui/drift/bulk"));
        }
        assert!(!needs_admin(&Method::POST, "/ui/login"));
        assert!(!needs_admin(&Method::POST, "/ui/logout"));
    }
}
