//! The credential lifecycle against a real server, on the embedded default and again on
//! MLflow + S3 (`support::backend`): dashboard sessions are server-side and are not tokens,
//! logout ends them, revoked and expired operator tokens and enrollment keys are refused, a
//! read-only token cannot write through any route, and listings never show a secret.

use std::sync::Arc;

use sphere_lite::domain::Sphere;
use sphere_lite::http::openapi::documented_routes;
use sphere_lite::ports::{EnrollmentKey, OperatorToken, Role};
use sphere_lite::secret;

#[path = "support/backend.rs"]
mod backend;
#[path = "support/server.rs"]
mod server;

use backend::each_backend;
use server::TestServer;

/// A client that does not follow redirects (a redirect to the login page is the answer).
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// GET a dashboard page with the cookie `session`: (status, `Location`, body).
fn page(server: &TestServer, path: &str, session: &str) -> (u16, Option<String>, String) {
    let r = server.get_with_session(&agent(), path, session);
    let location = r.header("location").map(str::to_owned);
    (r.status(), location, r.into_string().unwrap_or_default())
}

/// POST a dashboard form with the cookie `session`: (status, body).
fn form(server: &TestServer, path: &str, session: &str, body: &str) -> (u16, String) {
    let r = agent()
        .post(&server.url(path))
        .set("Cookie", &format!("sphere_session={session}"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(body);
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (r.status(), r.into_string().unwrap_or_default())
}

/// The first `name="csrf"` value of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

fn logged_in(server: &TestServer, session: &str) -> bool {
    match page(server, "/ui/fleet", session) {
        (200, _, _) => true,
        (303, Some(to), _) if to == "/ui/login" => false,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Fails before this change: the cookie was the operator token itself, so it worked as a
/// bearer token on the API, and the token pasted into a cookie was a session.
#[test]
fn the_session_cookie_is_not_a_bearer_token_and_a_token_is_not_a_session() {
    each_backend(
        "the_session_cookie_is_not_a_bearer_token_and_a_token_is_not_a_session",
        |b| {
            let sphere = b.open();
            let operator = sphere.create_operator_token("alice").unwrap();
            let server = TestServer::start(sphere);
            let session = server.login(&operator);
            assert_ne!(session, operator);
            assert!(session.starts_with("sls_"), "{session}");
            assert!(logged_in(&server, &session));
            let (status, body) = server.get("/api/v2/devices", Some(&session));
            assert_eq!(status, 401, "the cookie worked as a bearer token: {body}");
            let (status, _) = server.get("/metrics", Some(&session));
            assert_eq!(status, 401);
            assert!(
                !logged_in(&server, &operator),
                "the token worked as a session cookie"
            );
            let (status, _) = server.get("/api/v2/devices", Some(&operator));
            assert_eq!(status, 200);
        },
    );
}

/// Fails before this change: logout only asked the browser to forget the cookie; the same
/// cookie sent again was still logged in.
#[test]
fn logout_ends_the_session_on_the_server() {
    each_backend("logout_ends_the_session_on_the_server", |b| {
        let sphere = b.open();
        let operator = sphere.create_operator_token("alice").unwrap();
        let server = TestServer::start(sphere);
        let session = server.login(&operator);
        let other = server.login(&operator);
        let (status, _, html) = page(&server, "/ui/fleet", &session);
        assert_eq!(status, 200);
        let (status, _) = form(
            &server,
            "/ui/logout",
            &session,
            &format!("csrf={}", csrf_of(&html)),
        );
        assert_eq!(status, 303);
        assert!(!logged_in(&server, &session), "the session outlived logout");
        // Only that session ended; the token and the other login still work.
        assert!(logged_in(&server, &other));
        let (status, _) = server.get("/api/v2/devices", Some(&operator));
        assert_eq!(status, 200);
    });
}

/// Fails before this change: tokens could not expire or be revoked (no such operations).
#[test]
fn revoked_and_expired_operator_tokens_are_refused_and_their_sessions_end() {
    each_backend(
        "revoked_and_expired_operator_tokens_are_refused_and_their_sessions_end",
        |b| {
            // A token whose expiry has passed (stored directly: no test waits for a clock).
            let expired = secret::generate(secret::SecretKind::OperatorToken).unwrap();
            let hash = secret::hash(&expired);
            b.tracking()
                .add_operator_token(&OperatorToken {
                    id: secret::public_id("tok-", &hash),
                    name: "carol".into(),
                    role: Role::Admin,
                    token_hash: hash,
                    created_unix_ms: 1,
                    expires_unix_ms: Some(2),
                    revoked_unix_ms: None,
                    last_used_unix_ms: None,
                })
                .unwrap();
            let sphere = Arc::new(b.open());
            let keep = sphere.create_operator_token("alice").unwrap();
            let (gone, view) = sphere
                .issue_operator_token("bob", Role::Admin, Some(3_600_000))
                .unwrap();
            assert!(view.expires_unix_ms.is_some());
            let server = TestServer::start_shared(sphere.clone(), None);

            let (status, body) = server.get("/api/v2/devices", Some(&expired));
            assert_eq!(status, 401);
            assert!(
                body["error"].as_str().unwrap().contains("expired"),
                "{body}"
            );
            let r = agent()
                .post(&server.url("/ui/login"))
                .set("Content-Type", "application/x-www-form-urlencoded")
                .send_string(&format!("token={expired}"));
            assert!(matches!(r, Err(ureq::Error::Status(401, _))), "{r:?}");

            let session = server.login(&gone);
            assert!(logged_in(&server, &session));
            let (status, _) = server.get("/api/v2/devices", Some(&gone));
            assert_eq!(status, 200);
            let revoked = sphere.revoke_operator_token("bob").unwrap();
            assert_eq!(revoked.state, "revoked");
            let (status, body) = server.get("/api/v2/devices", Some(&gone));
            assert_eq!(status, 401);
            assert!(
                body["error"].as_str().unwrap().contains("revoked"),
                "{body}"
            );
            assert!(
                !logged_in(&server, &session),
                "the session outlived its token"
            );
            // Another operator's token is untouched.
            let (status, _) = server.get("/api/v2/devices", Some(&keep));
            assert_eq!(status, 200);
            // Revoking by an unknown id or name is an error, not a silent success.
            assert!(sphere.revoke_operator_token("tok-000000000000").is_err());
        },
    );
}

/// Fails before this change: enrollment keys had no expiry and could not be revoked.
#[test]
fn revoked_expired_and_used_up_enrollment_keys_are_refused_with_the_reason() {
    each_backend(
        "revoked_expired_and_used_up_enrollment_keys_are_refused_with_the_reason",
        |b| {
            let expired = secret::generate(secret::SecretKind::EnrollmentKey).unwrap();
            let hash = secret::hash(&expired);
            b.tracking()
                .add_enrollment_key(&EnrollmentKey {
                    id: secret::public_id("key-", &hash),
                    name: None,
                    key_hash: hash,
                    remaining: Some(3),
                    used: 0,
                    created_unix_ms: 1,
                    expires_unix_ms: Some(2),
                    revoked_unix_ms: None,
                })
                .unwrap();
            let sphere = Arc::new(b.open());
            let (revoked, view) = sphere
                .issue_enrollment_key(Some(5), None, Some("batch-7"))
                .unwrap();
            let once = sphere.create_enrollment_key(1).unwrap();
            let (many, _) = sphere
                .issue_enrollment_key(None, Some(3_600_000), None)
                .unwrap();
            let server = TestServer::start_shared(sphere.clone(), None);

            assert_eq!(sphere.revoke_enrollment_key("batch-7").unwrap().id, view.id);
            let refused = |key: &str, why: &str| {
                let (status, body) = server.enroll(key);
                assert_eq!(status, 403, "{body}");
                let error = body["error"].as_str().unwrap();
                assert!(error.contains(why), "{error}");
            };
            refused(&revoked, "revoked");
            refused(&expired, "expired");
            server.enrolled(&once);
            refused(&once, "used up");
            for _ in 0..3 {
                server.enrolled(&many);
            }
            let (status, _) = server.enroll("sle_not-a-key");
            assert_eq!(status, 401);

            let keys = sphere.list_enrollment_keys().unwrap();
            let state = |id: &str| keys.iter().find(|k| k.id == id).unwrap().state;
            assert_eq!(state(&view.id), "revoked");
            assert_eq!(state(&secret::public_id("key-", &hash)), "expired");
            assert_eq!(
                state(&secret::public_id("key-", &secret::hash(&once))),
                "used-up"
            );
            let unlimited = keys
                .iter()
                .find(|k| k.id == secret::public_id("key-", &secret::hash(&many)))
                .unwrap();
            assert_eq!((unlimited.remaining, unlimited.used), (None, 3));
            let listed = serde_json::to_string(&keys).unwrap();
            for secret in [&revoked, &once, &many, &expired] {
                assert!(!listed.contains(secret.as_str()));
            }
        },
    );
}

/// Every dashboard route that answers a POST, from the dashboard's source: the path of each
/// `warp::path!(...)` whose filter chain continues with `warp::post()`.
fn dashboard_writes() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let starts: Vec<usize> = text.match_indices("warp::path!(").map(|(i, _)| i).collect();
        for (n, &i) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(text.len());
            let chain = &text[i..end];
            let chain = &chain[..chain.find(';').unwrap_or(chain.len())];
            if !chain.contains("warp::post()") {
                continue;
            }
            let inner = &chain[12..chain.find(')').unwrap()];
            let segments: Vec<String> = inner
                .split('/')
                .map(|s| {
                    let s = s.trim();
                    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(literal) => literal.to_owned(),
                        None => "1".to_owned(),
                    }
                })
                .collect();
            out.push(format!("/{}", segments.join("/")));
        }
    }
    out.sort();
    out
}

/// Fails before this change: there was one operator role, and every token could write.
/// Every write route is tried: those of the OpenAPI document (every API route is in it, see
/// `tests/openapi.rs`) with the read-only bearer token, and every dashboard POST with a
/// read-only session; each is refused before it runs, while reads still work.
#[test]
fn a_read_only_token_reads_everything_and_cannot_write_anything() {
    each_backend(
        "a_read_only_token_reads_everything_and_cannot_write_anything",
        |b| {
            let sphere = b.open();
            let key = sphere.create_enrollment_key(1).unwrap();
            let admin = sphere.create_operator_token("alice").unwrap();
            let (reader, _) = sphere
                .issue_operator_token("grafana", Role::ReadOnly, Some(30 * 86_400_000))
                .unwrap();
            let server = TestServer::start(sphere);
            let (device, _) = server.enrolled(&key);

            // Reads: the API's listings, Prometheus, the dashboard.
            for path in ["/api/v2/devices", "/api/v2/drift-events", "/metrics"] {
                let r = ureq::get(&server.url(path))
                    .set("Authorization", &format!("Bearer {reader}"))
                    .call();
                assert!(r.is_ok(), "GET {path}: {r:?}");
            }
            let session = server.login(&reader);
            let (status, _, html) = page(&server, "/ui/fleet", &session);
            assert_eq!(status, 200);
            let csrf = csrf_of(&html);
            let (status, _, _) = page(&server, &format!("/ui/devices/{device}"), &session);
            assert_eq!(status, 200);

            let writes: Vec<(&str, &str)> = documented_routes()
                .into_iter()
                .filter(|(m, _)| !m.eq_ignore_ascii_case("get"))
                .collect();
            assert!(writes.len() >= 15, "{writes:?}");
            let concrete = |path: &str| {
                path.split('/')
                    .map(|s| {
                        if s.starts_with('{') {
                            device.as_str()
                        } else {
                            s
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let send = |method: &str, path: &str, token: &str| {
                let r = ureq::request(&method.to_uppercase(), &server.url(&concrete(path)))
                    .set("Authorization", &format!("Bearer {token}"))
                    .send_string("{}");
                match r {
                    Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
                    Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
                    Err(e) => panic!("{method} {path}: {e}"),
                }
            };
            for (method, path) in &writes {
                let (status, body) = send(method, path, &reader);
                assert_eq!(
                    status, 403,
                    "{method} {path} with a read-only token: {body}"
                );
                assert!(body.contains("read-only"), "{method} {path}: {body}");
            }
            let ui_writes = dashboard_writes();
            assert!(
                ui_writes.iter().any(|p| p == "/ui/drift/bulk")
                    && ui_writes.iter().any(|p| p == "/ui/config"),
                "{ui_writes:?}"
            );
            for path in ui_writes
                .iter()
                .filter(|p| !["/ui/login", "/ui/logout"].contains(&p.as_str()))
            {
                let (status, body) = form(
                    &server,
                    path,
                    &session,
                    &format!("csrf={csrf}&action=validate&id=1&scope=all&toml="),
                );
                assert_eq!(status, 403, "POST {path} with a read-only session: {body}");
                assert!(body.contains("read-only"), "POST {path}: {body}");
            }
            // Nothing was changed: the device is still there, in no group.
            let (status, body) =
                server.get(&format!("/api/v2/devices/{device}/settings"), Some(&admin));
            assert_eq!(status, 200);
            assert_eq!(body["decommissioned"], false, "{body}");
            // The same requests with an admin token are not refused for their role (they run:
            // that is why they come last).
            for (method, path) in &writes {
                let (_, body) = send(method, path, &admin);
                assert!(
                    !body.contains("read-only"),
                    "{method} {path} as admin: {body}"
                );
            }
            // Logging out is not a write that needs an admin.
            let (status, _) = form(&server, "/ui/logout", &session, &format!("csrf={csrf}"));
            assert_eq!(status, 303);
        },
    );
}

/// Fails before this change: there was no listing. It shows names, roles and states, never a
/// token or its hash.
#[test]
fn the_token_list_shows_no_secret() {
    each_backend("the_token_list_shows_no_secret", |b| {
        let sphere: Sphere = b.open();
        let (admin, _) = sphere
            .issue_operator_token("alice", Role::Admin, None)
            .unwrap();
        let (reader, view) = sphere
            .issue_operator_token("grafana", Role::ReadOnly, Some(30 * 86_400_000))
            .unwrap();
        let list = sphere.list_operator_tokens().unwrap();
        assert_eq!(list.len(), 2);
        let g = list.iter().find(|t| t.id == view.id).unwrap();
        assert_eq!(
            (g.name.as_str(), g.role, g.state),
            ("grafana", Role::ReadOnly, "active")
        );
        let text = serde_json::to_string(&list).unwrap();
        for token in [&admin, &reader] {
            assert!(!text.contains(token.as_str()), "{text}");
            let hash: String = secret::hash(token)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(!text.contains(&hash), "{text}");
            assert!(!text.contains(&hash[..16]), "{text}");
        }
    });
}
