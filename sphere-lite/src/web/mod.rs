//! The web dashboard under `/ui/`: server-rendered pages (fleet, device, Drift Hub, Data Hub in
//! `datahub`),
//! an operator login, live updates over server-sent events, and the sample images.
//!
//! Why: operators review drift and watch the fleet in a browser, without a build step or a CDN:
//! the pages are askama templates compiled into the binary (every value HTML-escaped), the CSS
//! and the small script are embedded files. The rules that keep it safe:
//!
//! * **Login**: the operator pastes their operator token; an active one (not expired, not
//!   revoked) starts a server-side session (`domain::credentials`): a new random session id
//!   goes into an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS) scoped to `/ui`,
//!   and only its hash is stored, bound to the token. The cookie is never the token: it is
//!   worthless as a bearer token on the API, and a token put in the cookie is no session.
//!   Logout deletes the session; it also ends after 12 h, after 1 h without a request, and
//!   when its token is revoked or expires. Device tokens are refused. Pages without a valid
//!   session redirect to the login page; images and the live stream answer 401.
//! * **CSRF**: every POST carries a token derived from the session (HMAC-SHA256 keyed by the
//!   session id), compared in constant time; a present `Origin` must be this host and a
//!   present `Sec-Fetch-Site` must be same-origin.
//! * **Headers**: a strict `Content-Security-Policy` (no inline script, nothing from other
//!   origins, no framing), `nosniff`, no referrer to other sites, `no-store`.
//! * **Input**: unknown or malformed query parameters get a 400 page, pages are bounded and use
//!   cursors; only image files of processed packages are served, as images, sandboxed.

mod alerts;
pub mod chart;
mod classes;
mod config_page;
mod datahub;
mod device;
mod drift;
mod fields;
mod fleet;
mod image;
mod incident;
mod live;
mod login;
pub mod map;
mod models;
mod names;
mod pages;
mod publish;
mod reply;
mod rollout;
mod session;
mod sparkline;
pub mod time;
mod timeline;

use std::sync::Arc;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::domain::Sphere;
use reply::{asset, done, error_page, redirect};
use session::{Ctx, secure};

pub(crate) use names::display_name;
pub(crate) use session::cookie_safe;
pub use session::{CSP, SESSION_COOKIE, SESSION_SECONDS, csrf_token};

/// Devices on one fleet page; packages on one device page; images on one Data Hub page.
const PAGE: usize = 50;

/// Largest form body (bytes).
const MAX_FORM_BYTES: u64 = 64 * 1024;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");
const FAVICON: &str = include_str!("static/favicon.svg");

/// The dashboard's routes (`/` redirects to it). Paths outside `/ui` are not matched, so the
/// API's routes and JSON errors are unaffected.
pub fn routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let ctx = warp::any()
        .map(move || sphere.clone())
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and(warp::header::optional::<String>("sec-fetch-site"))
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(warp::ext::optional::<crate::tls::TlsConnection>())
        .map(
            |sphere, session, origin, host, fetch_site, proto: Option<String>, tls: Option<_>| {
                Ctx {
                    sphere,
                    session,
                    origin,
                    host,
                    fetch_site,
                    // Behind a TLS proxy, or over sphere-lite's own TLS.
                    https: proto.is_some_and(|p| p.eq_ignore_ascii_case("https")) || tls.is_some(),
                }
            },
        );
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let form = warp::body::content_length_limit(MAX_FORM_BYTES).and(warp::body::bytes());

    let root = warp::path::end()
        .and(warp::get())
        .map(|| redirect("/ui/fleet"));
    let ui_root = warp::path!("ui")
        .and(warp::get())
        .map(|| redirect("/ui/fleet"));
    let css = warp::path!("ui" / "static" / "app.css")
        .and(warp::get())
        .map(|| asset(APP_CSS, "text/css; charset=utf-8"));
    let js = warp::path!("ui" / "static" / "app.js")
        .and(warp::get())
        .map(|| asset(APP_JS, "text/javascript; charset=utf-8"));
    // Browsers ask for /favicon.ico whatever the page says: the same icon, not a 404.
    let icon = warp::path!("ui" / "static" / "favicon.svg")
        .or(warp::path!("favicon.ico"))
        .unify()
        .and(warp::get())
        .map(|| asset(FAVICON, "image/svg+xml"));
    let login_get = warp::path!("ui" / "login")
        .and(warp::get())
        .and(ctx.clone())
        .then(|ctx| async move { done(login::login_form(ctx).await) });
    let login_post = warp::path!("ui" / "login")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(login::login(ctx, body).await) });
    let logout_post = warp::path!("ui" / "logout")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(login::logout(ctx, body).await) });
    let fleet_get = warp::path!("ui" / "fleet")
        .and(warp::get())
        .and(ctx.clone())
        .and(query)
        .then(|ctx, raw| async move { done(fleet::fleet(ctx, raw).await) });
    let device_get = warp::path!("ui" / "devices" / String)
        .and(warp::get())
        .and(ctx.clone())
        .and(query)
        .then(|id, ctx, raw| async move { done(device::device(id, ctx, raw).await) });
    let device_edit = warp::path!("ui" / "devices" / String / "edit")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|id, ctx, body| async move { done(device::edit_device(id, ctx, body).await) });
    let class_rename = warp::path!("ui" / "devices" / String / "classes")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|id, ctx, body| async move { done(classes::rename(id, ctx, body).await) });
    let drift_get = warp::path!("ui" / "drift")
        .and(warp::get())
        .and(ctx.clone())
        .and(query)
        .then(|ctx, raw| async move { done(drift::drift(ctx, raw).await) });
    let decide_one = warp::path!("ui" / "drift" / u64 / "decide")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|id, ctx, body| async move {
            done(drift::decide(drift::Target::Event(id), ctx, body).await)
        });
    let incident_get = warp::path!("ui" / "drift" / u64)
        .and(warp::get())
        .and(ctx.clone())
        .then(|id, ctx| async move { done(incident::page(id, ctx).await) });
    let decide_incident = warp::path!("ui" / "drift" / u64 / "incident")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|id, ctx, body| async move {
            done(drift::decide(drift::Target::Incident(id), ctx, body).await)
        });
    let decide_bulk =
        warp::path!("ui" / "drift" / "bulk")
            .and(warp::post())
            .and(ctx.clone())
            .and(form)
            .then(|ctx, body| async move {
                done(drift::decide(drift::Target::Selected, ctx, body).await)
            });
    let data_get = datahub::routes(ctx.clone().boxed(), query.boxed());
    let models_get = warp::path!("ui" / "models")
        .and(warp::get())
        .and(ctx.clone())
        .then(|ctx| async move { done(models::models(ctx).await) });
    let models_post = publish::routes(ctx.clone().boxed());
    let config_get = warp::path!("ui" / "config")
        .and(warp::get())
        .and(ctx.clone())
        .then(|ctx| async move { done(config_page::page(ctx).await) });
    let config_post = warp::path!("ui" / "config")
        .and(warp::post())
        .and(ctx.clone())
        .and(form)
        .then(|ctx, body| async move { done(config_page::save(ctx, body).await) });
    let image_get = warp::path("ui")
        .and(warp::path("img"))
        .and(warp::get())
        .and(warp::path::tail())
        .and(ctx.clone())
        .and(warp::header::optional::<String>("authorization"))
        .then(|tail, ctx, auth| async move { done(image::image(tail, ctx, auth).await) });
    let live_get = warp::path!("ui" / "events")
        .and(warp::get())
        .and(ctx)
        .then(|ctx| async move { done(live::live(ctx).await) });
    let unknown = warp::path("ui").map(|| {
        error_page(
            None,
            StatusCode::NOT_FOUND,
            "no such page",
            None,
            "/ui/fleet",
        )
    });

    // Boxed in groups: one long chain of `or`s makes a type so deep that type-checking it
    // took the compiler minutes per added route.
    let pages = fleet_get
        .or(device_get)
        .unify()
        .or(device_edit)
        .unify()
        .or(drift_get)
        .unify()
        .or(decide_one)
        .unify()
        .or(decide_bulk)
        .unify()
        .or(incident_get)
        .unify()
        .or(decide_incident)
        .unify()
        .boxed();
    let more_pages = data_get
        .or(models_get)
        .unify()
        .or(models_post)
        .unify()
        .or(config_get)
        .unify()
        .or(config_post)
        .unify()
        .or(image_get)
        .unify()
        .or(live_get)
        .unify()
        .or(class_rename)
        .unify()
        .boxed();
    root.or(ui_root)
        .unify()
        .or(css)
        .unify()
        .or(js)
        .unify()
        .or(icon)
        .unify()
        .or(login_get)
        .unify()
        .or(login_post)
        .unify()
        .or(logout_post)
        .unify()
        .or(pages)
        .unify()
        .or(more_pages)
        .unify()
        .or(unknown)
        .unify()
        .map(secure)
}
