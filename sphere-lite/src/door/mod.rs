//! The door: everything between a client's socket and the routes, the same for plain HTTP and
//! native TLS.
//!
//! Why one module in front of the routes: warp 0.4 serves through hyper without a timer (no
//! header-read timeout), without a body deadline, and accepts every connection it can, so a
//! handful of slow or idle sockets held the server; and abuse is cheapest to refuse before any
//! route, store or credential is touched. [`accept::serve`] runs the one accept loop every
//! listener goes through; [`Door::handle`] checks each request before and after routing:
//!
//! * a bounded number of open connections ([`settings::DoorSettings::max_connections`]);
//!   beyond it, new connections wait in the kernel's listen backlog rather than being accepted
//!   and closed: file descriptors stay bounded, and a waiting client is served as soon as a slot
//!   frees (idle ones are closed by the header timeout), where a closed connection would be an
//!   error the client has to retry;
//! * hyper's header-read timeout, which starts when a connection waits for a request, so it
//!   also closes idle keep-alive connections;
//! * a deadline for each request's body ([`body`]): 408 and the connection closed;
//! * a body a route answered without reading is read to its end afterwards, within bounds
//!   ([`linger`]), so the client reads the answer instead of a reset;
//! * the `Host` allow-list ([`hosts`]): 421 before routing;
//! * the failed-authentication budget per source ([`failures`], [`source`]): a 401 answer
//!   (bad bearer token, unknown enrollment key, unknown login token, no session) or a session
//!   cookie sent back to the login page counts as a failure; a source whose budget is used up
//!   gets 429 with `Retry-After` for every request that carries a credential (an
//!   `Authorization` or `Cookie` header) or is not a GET/HEAD, before the routes look at it.
//!   Counting answers rather than hooking each credential check keeps every check site
//!   unchanged and covers new ones automatically.

pub mod accept;
pub mod body;
pub mod failures;
pub mod hosts;
pub mod linger;
pub mod settings;
pub mod source;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, Request, StatusCode, header};
use tinylcm_protocol::api::ErrorResponse;
use warp::Reply as _;
use warp::reply::Response;

use self::body::DeadlineBody;
use self::failures::FailureBudget;
use self::hosts::HostAllowList;
pub use self::settings::{DoorSettings, ServerSection};
use self::source::Source;

/// What the door knows about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The client's address (a reverse proxy's, behind one).
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: IpAddr,
    /// Whether it is a native TLS connection.
    pub tls: bool,
}

/// The per-request checks (see the module docs); shared by every connection of a server.
#[derive(Debug)]
pub struct Door {
    settings: DoorSettings,
    hosts: HostAllowList,
    failures: FailureBudget,
}

impl Door {
    /// The door `settings` describe.
    pub fn new(settings: &DoorSettings) -> Self {
        Door {
            hosts: HostAllowList::new(&settings.allowed_hosts),
            failures: FailureBudget::new(settings.auth_failure_burst, settings.auth_failure_refill),
            settings: settings.clone(),
        }
    }

    /// Check `request`, pass it to `routes` with its body under the deadline, and count the
    /// answer against the source's budget.
    pub async fn handle<B, S>(&self, request: Request<B>, conn: Connection, routes: S) -> Response
    where
        B: hyper::body::Body + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S: hyper::service::Service<
                Request<DeadlineBody<B>>,
                Response = Response,
                Error = Infallible,
            >,
    {
        let host = request
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("\u{0}"))
            .or(request.uri().authority().map(|a| a.as_str()));
        if !self.hosts.allows(host, conn.local) {
            tracing::debug!(peer = %conn.peer, host = ?host, "refused: Host not allowed");
            return misdirected(host.unwrap_or_default());
        }
        let source = Source::of_request(
            conn.peer.ip(),
            request.headers(),
            &self.settings.trusted_proxies,
        );
        let now = std::time::Instant::now();
        if presents_credentials(&request) {
            if let Some(wait) = self.failures.wait(source, now) {
                return too_many(wait);
            }
        }
        let cookie = sends_session_cookie(request.headers());
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = tokio::time::Instant::now() + self.settings.request_body_timeout;
        let mut request = request.map(|b| DeadlineBody::new(b, deadline, timed_out.clone()));
        if conn.tls {
            request
                .extensions_mut()
                .insert(crate::tls::TlsConnection { peer: conn.peer });
        }
        let response = match routes.call(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if timed_out.load(Ordering::Acquire) {
            tracing::debug!(peer = %conn.peer, "request body timed out");
            return body_timed_out(self.settings.request_body_timeout.as_secs());
        }
        let failed =
            response.status() == StatusCode::UNAUTHORIZED || (cookie && to_login(&response));
        if failed && self.failures.fail(source, now) {
            tracing::warn!(%source, "failed authentications: budget used up, answering 429");
        }
        response
    }
}

/// Whether a blocked source's request would test a credential (see the module docs).
fn presents_credentials<B>(request: &Request<B>) -> bool {
    !matches!(*request.method(), Method::GET | Method::HEAD)
        || request.headers().contains_key(header::AUTHORIZATION)
        || request.headers().contains_key(header::COOKIE)
}

fn sends_session_cookie(headers: &http::HeaderMap) -> bool {
    let name = format!("{}=", crate::web::SESSION_COOKIE);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|c| c.trim().starts_with(&name)))
}

/// A redirect to the login page: what the dashboard answers a session it does not accept.
fn to_login(response: &Response) -> bool {
    response.status().is_redirection()
        && response
            .headers()
            .get(header::LOCATION)
            .is_some_and(|l| l.as_bytes().starts_with(b"/ui/login"))
}

fn error(status: StatusCode, error: String, fix: &str) -> Response {
    let body = ErrorResponse::new(error, Some(fix.to_owned()));
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn misdirected(host: &str) -> Response {
    let shown: String = host.chars().take(100).collect();
    let mut r = error(
        StatusCode::MISDIRECTED_REQUEST,
        format!("this server does not answer to the host {shown:?}"),
        "use the server's configured name or address; an operator adds names to allowed_hosts in the [server] section",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed authentications from this address".to_owned(),
        "check the token or key; retry after the number of seconds in Retry-After",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

fn body_timed_out(limit_secs: u64) -> Response {
    let mut r = error(
        StatusCode::REQUEST_TIMEOUT,
        format!("the request body did not arrive within {limit_secs} s; nothing was stored"),
        "retry on a faster link, or ask the operator to raise request_body_timeout_secs",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
