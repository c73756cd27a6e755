//! Sample images (`/ui/img/{key}`): only image files of processed packages, served as images
//! in a sandbox, to a logged-in operator or a script with an operator token.

use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::reply::{Page, domain_error, error_page, run};
use super::session::{Ctx, require_401};

pub(super) fn image_url(key: &str) -> String {
    format!("/ui/img/{key}")
}

/// A sample image, for a logged-in operator or a script with an operator token (the
/// embedding export's `sample_url` on the embedded backend points here).
pub(super) async fn image(tail: warp::path::Tail, ctx: Ctx, authorization: Option<String>) -> Page {
    match authorization {
        Some(auth) => {
            let sphere = ctx.sphere.clone();
            run(move || sphere.authorize_operator(Some(&auth)))
                .await
                .map_err(|e| domain_error(None, e, "/ui/login"))?;
        }
        None => {
            require_401(&ctx).await?;
        }
    }
    let key = tail.as_str().to_owned();
    let sphere = ctx.sphere.clone();
    let k = key.clone();
    let bytes = run(move || sphere.sample_image(&k))
        .await
        .map_err(|e| domain_error(None, e, "/ui/data"))?;
    let Some(bytes) = bytes else {
        return Err(error_page(
            None,
            StatusCode::NOT_FOUND,
            "no such image",
            None,
            "/ui/data",
        ));
    };
    let content_type = if key.to_ascii_lowercase().ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    let mut r = Response::new(bytes.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(r)
}
