//! Publishing a release from the models page (`POST /ui/models/publish`): the operator
//! uploads the model file and its signed release (`.release.json`) in one multipart form, and
//! the server checks and stores them through [`crate::domain::Sphere::publish_release`], as
//! `POST /api/v2/models` does.
//!
//! Why its own handler rather than the dashboard's form filter: the body is a file of up to
//! [`MAX_MODEL_BYTES`], so it is read part by part, under a bound per part, the model streamed
//! to a spool file instead of memory while it arrives. The CSRF token is the form's first part
//! and is checked before any file is read, so a forged form uploads nothing; every part is
//! named and may come once, so the body's size is bounded by the parts' bounds even without a
//! `Content-Length`. A refused release (unsigned, signed by an unknown key, not the file it was
//! signed for, not a TFLite model) is an error page saying why; nothing is stored.

use bytes::Buf;
use futures_util::StreamExt;
use subtle::ConstantTimeEq;
use tinylcm_protocol::release::{MAX_MANIFEST_BYTES, MAX_MODEL_BYTES};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::pages::Nav;
use super::reply::{Page, bad_request, domain_error, done, error_page, redirect, run};
use super::session::{Ctx, csrf_token, require, same_origin};
use crate::http::spool::{self, SpoolError};
use crate::ports::Role;

/// Largest `csrf` part (the token is 64 hex digits).
const MAX_CSRF_BYTES: u64 = 256;

/// Largest `release` part: the API's bound for a signed release.
const MAX_RELEASE_BYTES: u64 = 2 * MAX_MANIFEST_BYTES as u64;

/// Room for the multipart framing (boundaries, part headers) of the form's three parts.
const MAX_FRAMING_BYTES: u64 = 16 * 1024;

/// The largest body the publish form may send.
pub const MAX_PUBLISH_BYTES: u64 =
    MAX_CSRF_BYTES + MAX_RELEASE_BYTES + MAX_MODEL_BYTES + MAX_FRAMING_BYTES;

/// Where every refusal sends the operator back to.
const BACK: &str = "/ui/models";

/// The routes of the models page's forms: publish (multipart) and roll out (a plain form).
pub(super) fn routes(ctx: BoxedFilter<(Ctx,)>) -> BoxedFilter<(Response,)> {
    // A POST that is not multipart reaches the handler without a form (a 400 page) instead
    // of falling through to "no such page".
    let multipart = warp::multipart::form()
        .max_length(None)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let publish = warp::path!("ui" / "models" / "publish")
        .and(warp::post())
        .and(ctx.clone())
        .and(warp::header::optional::<u64>("content-length"))
        .and(multipart)
        .then(|ctx, length, form| async move { done(publish(ctx, length, form).await) });
    let rollout = warp::path!("ui" / "models" / "rollout")
        .and(warp::post())
        .and(ctx)
        .and(warp::body::content_length_limit(super::MAX_FORM_BYTES))
        .and(warp::body::bytes())
        .then(|ctx, body| async move { done(super::rollout::rollout(ctx, body).await) });
    publish.or(rollout).unify().boxed()
}

/// A malformed or broken-off body.
fn unreadable(nav: &Nav, e: impl std::fmt::Display) -> Response {
    bad_request(
        Some(nav.clone()),
        format!("the upload is malformed or broke off: {e}"),
        BACK,
    )
}

/// One small part read into memory, refused as soon as it passes `max` bytes.
async fn collect(
    part: warp::multipart::Part,
    max: u64,
    what: &str,
    nav: &Nav,
) -> Result<Vec<u8>, Response> {
    let mut data = Vec::new();
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreadable(nav, e))?;
        if data.len() as u64 + chunk.remaining() as u64 > max {
            return Err(too_large(nav, what, max));
        }
        data.extend_from_slice(chunk.chunk());
    }
    Ok(data)
}

fn too_large(nav: &Nav, what: &str, max: u64) -> Response {
    error_page(
        Some(nav.clone()),
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the {what} is larger than {max} bytes"),
        Some("choose the files `tinylcm model sign` wrote".into()),
        BACK,
    )
}

/// `POST /ui/models/publish`: publish the form's `model` file with its `release`.
async fn publish(ctx: Ctx, length: Option<u64>, form: Option<warp::multipart::FormData>) -> Page {
    if !same_origin(&ctx) {
        return Err(error_page(
            None,
            StatusCode::FORBIDDEN,
            "this request did not come from a page of this server",
            None,
            BACK,
        ));
    }
    let session = require(&ctx).await?;
    let nav = session.nav();
    // `http::access` refuses a read-only session's writes before this; kept for the handler's
    // own sake, before a byte of the file is read.
    if session.role != Role::Admin {
        return Err(error_page(
            Some(nav),
            StatusCode::FORBIDDEN,
            "this operator is read-only: it cannot publish releases",
            None,
            BACK,
        ));
    }
    if let Some(length) = length.filter(|l| *l > MAX_PUBLISH_BYTES) {
        return Err(too_large(
            &nav,
            &format!("upload ({length} bytes)"),
            MAX_PUBLISH_BYTES,
        ));
    }
    let Some(mut form) = form else {
        return Err(bad_request(
            Some(nav),
            "send the publish form of the models page (multipart/form-data)",
            BACK,
        ));
    };
    let spooled = ctx
        .sphere
        .spool_file()
        .map_err(|e| domain_error(Some(nav.clone()), e, BACK))?;
    let expected = csrf_token(&session.token);
    let (mut checked, mut release, mut model) = (false, None, false);
    while let Some(part) = form.next().await {
        let part = part.map_err(|e| unreadable(&nav, e))?;
        let name = part.name().to_owned();
        match name.as_str() {
            "csrf" if !checked => {
                let given = collect(part, MAX_CSRF_BYTES, "security token", &nav).await?;
                if !bool::from(given.ct_eq(expected.as_bytes())) {
                    break;
                }
                checked = true;
            }
            // Nothing else is read before the token.
            _ if !checked => break,
            "release" if release.is_none() => {
                release = Some(collect(part, MAX_RELEASE_BYTES, "signed release", &nav).await?);
            }
            "model" if !model => {
                spool::write(&spooled, part.stream(), MAX_MODEL_BYTES)
                    .await
                    .map_err(|e| match e {
                        SpoolError::TooLarge => too_large(&nav, "model file", MAX_MODEL_BYTES),
                        SpoolError::Body(e) => unreadable(&nav, e),
                        SpoolError::Io(e) => {
                            tracing::error!(error = %e, "cannot spool a published model");
                            error_page(
                                Some(nav.clone()),
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the server could not store the upload",
                                None,
                                BACK,
                            )
                        }
                    })?;
                model = true;
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(bad_request(
                    Some(nav),
                    format!("unexpected or repeated form field {shown:?}"),
                    BACK,
                ));
            }
        }
    }
    if !checked {
        return Err(error_page(
            Some(nav),
            StatusCode::FORBIDDEN,
            "the form's security token is missing or wrong",
            Some("reload the page and submit the form again".into()),
            BACK,
        ));
    }
    let (Some(release), true) = (release, model) else {
        return Err(bad_request(
            Some(nav),
            "choose both files: the model and its signed release (.release.json)",
            BACK,
        ));
    };
    let sphere = ctx.sphere.clone();
    let operator = session.name.clone();
    let summary = run(move || {
        // Bounded by the spool's cut-off: at most MAX_MODEL_BYTES.
        let model = std::fs::read(spooled.path()).map_err(|e| {
            crate::ports::StoreError::new("spool", format!("read the spooled model: {e}"))
        })?;
        sphere.publish_release(&operator, &release, &model)
    })
    .await
    .map_err(|e| domain_error(Some(nav), e, BACK))?;
    tracing::info!(
        release = %format!("{} {}", summary.name, summary.version),
        operator = %session.name,
        "release published in the dashboard"
    );
    Ok(redirect(BACK))
}
