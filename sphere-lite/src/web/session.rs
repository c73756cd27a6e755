//! The dashboard's session and security: the operator's login session behind the cookie, the
//! CSRF token and origin checks every POST passes, and the security headers every response
//! carries.
//!
//! Why a module of its own: every page relies on these rules, and they are easier to review
//! in one place than spread between the handlers (the module docs of `web` say what they are).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::fields::Fields;
use super::pages::Nav;
use super::reply::{bad_request, domain_error, error_page, redirect, run};
use crate::domain::Sphere;
use crate::ports::Role;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sphere_session";

/// How long a login lasts at most (seconds): the cookie's `Max-Age`, equal to the server-side
/// session's lifetime.
pub const SESSION_SECONDS: u64 = crate::domain::SESSION_LIFETIME_MS / 1000;

/// The `Content-Security-Policy` of every dashboard response.
pub const CSP: &str = "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Longest session cookie value accepted (session ids are 47 bytes).
pub(super) const MAX_TOKEN_BYTES: usize = 256;

/// Everything a handler needs from the request besides its path and body.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) sphere: Arc<Sphere>,
    pub(super) session: Option<String>,
    pub(super) origin: Option<String>,
    pub(super) host: Option<String>,
    pub(super) fetch_site: Option<String>,
    pub(super) https: bool,
}

/// A logged-in operator.
pub(super) struct Session {
    pub(super) name: String,
    /// What the operator may do: read-only sessions see no forms that change anything.
    pub(super) role: Role,
    /// The session id (the cookie's value): the CSRF key.
    pub(super) token: String,
}

impl Session {
    pub(super) fn nav(&self) -> Nav {
        Nav {
            operator: self.name.clone(),
            csrf: csrf_token(&self.token),
            live_device: None,
        }
    }
}

/// The CSRF token of a session: HMAC-SHA256 of a fixed label keyed by the session token, hex.
pub fn csrf_token(session_token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(session_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"sphere-lite dashboard csrf v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a cookie value can be a session id at all (short, URL-safe characters).
pub(crate) fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Adds the security headers every dashboard response carries (kept if already set).
pub(super) fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        // Not `no-referrer`: with it browsers send `Origin: null` on form posts, and the
        // origin check needs the real one. Nothing leaves for other sites either way.
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// The operator behind the session cookie, if it names a live session.
pub(super) async fn session(ctx: &Ctx) -> Result<Option<Session>, Response> {
    let Some(token) = ctx.session.clone().filter(|t| cookie_safe(t)) else {
        return Ok(None);
    };
    let sphere = ctx.sphere.clone();
    let id = token.clone();
    match run(move || sphere.session_operator(&id)).await {
        Ok(Some(operator)) => Ok(Some(Session {
            name: operator.name,
            role: operator.role,
            token,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(domain_error(None, e, "/ui/login")),
    }
}

/// The logged-in operator, or a redirect to the login page.
pub(super) async fn require(ctx: &Ctx) -> Result<Session, Response> {
    session(ctx).await?.ok_or_else(|| redirect("/ui/login"))
}

/// The logged-in operator, or a bare 401 (images, the live stream: no page to redirect).
pub(super) async fn require_401(ctx: &Ctx) -> Result<Session, Response> {
    session(ctx).await?.ok_or_else(|| {
        error_page(
            None,
            StatusCode::UNAUTHORIZED,
            "log in first",
            None,
            "/ui/login",
        )
    })
}

/// Whether a state-changing request comes from a page of this server.
pub(super) fn same_origin(ctx: &Ctx) -> bool {
    same_origin_parts(
        ctx.origin.as_deref(),
        ctx.host.as_deref(),
        ctx.fetch_site.as_deref(),
    )
}

/// A present `Sec-Fetch-Site` must be same-origin (or `none`: typed by the user), and a present
/// `Origin` must be this host (over HTTP or HTTPS).
pub(super) fn same_origin_parts(
    origin: Option<&str>,
    host: Option<&str>,
    fetch_site: Option<&str>,
) -> bool {
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return false;
    }
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

/// Checks a POST (origin, session, CSRF token) and returns the operator and the fields.
pub(super) async fn post_guard(
    ctx: &Ctx,
    body: &[u8],
    allowed: &[&str],
    repeatable: Option<&str>,
) -> Result<(Session, Fields), Response> {
    if !same_origin(ctx) {
        return Err(error_page(
            None,
            StatusCode::FORBIDDEN,
            "this request did not come from a page of this server",
            None,
            "/ui/fleet",
        ));
    }
    let session = require(ctx).await?;
    let raw = String::from_utf8_lossy(body);
    let fields = Fields::parse(&raw, allowed, repeatable)
        .map_err(|e| bad_request(Some(session.nav()), e, "/ui/fleet"))?;
    let expected = csrf_token(&session.token);
    let given = fields.get("csrf").unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(error_page(
            Some(session.nav()),
            StatusCode::FORBIDDEN,
            "the form's security token is missing or wrong",
            Some("reload the page and submit the form again".into()),
            "/ui/fleet",
        ));
    }
    Ok((session, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_depend_on_the_session() {
        let a = csrf_token("slo_a");
        assert_eq!(a, csrf_token("slo_a"));
        assert_ne!(a, csrf_token("slo_b"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn origins_are_checked_when_present() {
        let host = Some("127.0.0.1:8470");
        assert!(same_origin_parts(None, host, None));
        assert!(same_origin_parts(
            Some("http://127.0.0.1:8470"),
            host,
            Some("same-origin")
        ));
        assert!(same_origin_parts(
            Some("https://127.0.0.1:8470"),
            host,
            None
        ));
        assert!(!same_origin_parts(Some("http://evil.example"), host, None));
        assert!(!same_origin_parts(Some("null"), host, None));
        assert!(!same_origin_parts(
            Some("http://127.0.0.1:8470"),
            None,
            None
        ));
        assert!(!same_origin_parts(None, host, Some("cross-site")));
        assert!(!same_origin_parts(None, host, Some("same-site")));
    }
}
