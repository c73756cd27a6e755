//! The login page (`/ui/login`) and logout: an operator token in, a session cookie out.

use warp::http::{HeaderValue, StatusCode, header};

use super::fields::Fields;
use super::pages::LoginPage;
use super::reply::{Page, domain_error, html, redirect, run};
use super::session::{
    Ctx, SESSION_COOKIE, SESSION_SECONDS, cookie_safe, post_guard, same_origin, session,
};
use crate::domain::DomainError;

pub(super) async fn login_form(ctx: Ctx) -> Page {
    if session(&ctx).await?.is_some() {
        return Ok(redirect("/ui/fleet"));
    }
    Ok(html(
        StatusCode::OK,
        &LoginPage {
            nav: None,
            error: None,
        },
    ))
}

pub(super) async fn login(ctx: Ctx, body: bytes::Bytes) -> Page {
    let refuse = |status: StatusCode, error: &str| {
        html(
            status,
            &LoginPage {
                nav: None,
                error: Some(error.to_owned()),
            },
        )
    };
    if !same_origin(&ctx) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "this login did not come from this server's login page",
        ));
    }
    let raw = String::from_utf8_lossy(&body);
    let fields =
        Fields::parse(&raw, &["token"], None).map_err(|e| refuse(StatusCode::BAD_REQUEST, &e))?;
    let Some(token) = fields.get("token").map(str::to_owned) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "paste your operator token"));
    };
    if !cookie_safe(&token) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "unknown operator token"));
    }
    let sphere = ctx.sphere.clone();
    match run(move || sphere.login(&token)).await {
        Ok((session_id, _operator)) => {
            let mut r = redirect("/ui/fleet");
            let cookie = format!(
                "{SESSION_COOKIE}={session_id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
                if ctx.https { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(DomainError::Forbidden { .. }) => Err(refuse(
            StatusCode::FORBIDDEN,
            "device tokens cannot log in to the dashboard; use an operator token",
        )),
        Err(DomainError::Unauthorized { error, .. }) => {
            Err(refuse(StatusCode::UNAUTHORIZED, &error))
        }
        Err(e) => Err(domain_error(None, e, "/ui/login")),
    }
}

pub(super) async fn logout(ctx: Ctx, body: bytes::Bytes) -> Page {
    let (session, _) = post_guard(&ctx, &body, &["csrf"], None).await?;
    let sphere = ctx.sphere.clone();
    let id = session.token;
    run(move || sphere.logout(&id))
        .await
        .map_err(|e| domain_error(None, e, "/ui/fleet"))?;
    let mut r = redirect("/ui/login");
    let cookie = format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}
