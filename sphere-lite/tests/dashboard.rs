//! The web dashboard against a real sphere-lite on 127.0.0.1:0: login and sessions, CSRF and
//! origin checks, escaping of device-supplied strings, bad parameters, the live stream, and a
//! real headless Chromium (Debian's `chromium` + `chromium-driver`, driven over WebDriver)
//! that logs in, finds the device, validates a drift event by clicking, and sees the fleet page
//! update live.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sphere_lite::ports::Role;
use sphere_lite::server::open_embedded;
use tinylcm_protocol::api::{DriftVerdict, FeedbackItem, FeedbackVerdict};
use tinylcm_protocol::metric_keys::{FPS, LATENCY_P50_US};
use tinylcm_protocol::paths;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/drift.rs"]
mod drift;
#[path = "support/release.rs"]
mod release;
#[path = "support/server.rs"]
mod server;

use browser::{BROWSER_WAIT, Driver};
use server::TestServer;

const THUMB: &str = "samples/00000000000000000012.jpg";
const XSS_NAME: &str = "<script>alert(1)</script>";
const XSS_HARDWARE: &str = "<img src=x onerror=alert(2)>";
const XSS_DETECTOR: &str = "<b onmouseover=alert(3)>adwin</b>";

/// A drift report as the device writes it (device time derived from `seq`).
fn report(seq: u64, detector: &str, samples: &[&str]) -> Value {
    drift::report(seq, detector, 1_764_147_600_000u64 + seq, samples)
}

/// A package with the drift events `events` and one JPEG-ish quarantine thumbnail.
fn drift_package(device: &str, id: &str, events: &Value) -> Vec<u8> {
    drift::drift_package(device, id, events, &[THUMB])
}

/// A raw HTTP reply: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Fixture {
    // Field order: the server stops before the directory is removed.
    server: TestServer,
    _dir: tempfile::TempDir,
    key: String,
    operator: String,
    /// A read-only operator token.
    reader: String,
    http: ureq::Agent,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sphere = open_embedded(dir.path()).unwrap();
        let key = sphere.create_enrollment_key(100).unwrap();
        let operator = sphere.create_operator_token("alice").unwrap();
        let (reader, _) = sphere
            .issue_operator_token("bob", Role::ReadOnly, None)
            .unwrap();
        Fixture {
            server: TestServer::start(sphere),
            _dir: dir,
            key,
            operator,
            reader,
            http: ureq::AgentBuilder::new().redirects(0).build(),
        }
    }

    /// Enroll a device named `name` with `hardware`; (id, token).
    fn enroll(&self, name: &str, hardware: &str) -> (String, String) {
        let (status, body) = self.server.post(
            paths::ENROLL,
            None,
            json!({"enrollment_key": self.key, "name": name, "hardware": hardware})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        (
            body["device_id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    fn upload(&self, device: &str, token: &str, package: &[u8]) {
        let (status, body) = self
            .server
            .post(&paths::packages(device), Some(token), package);
        assert_eq!(status, 200, "{body}");
    }

    /// The device's drift events as the operator API lists them, once there are `n`.
    fn wait_events(&self, device: &str, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let (status, body) = self.server.get(
                &format!("{}?device={device}", paths::DRIFT_EVENTS),
                Some(&self.operator),
            );
            assert_eq!(status, 200, "{body}");
            let events = body["events"].as_array().unwrap().clone();
            if events.len() >= n {
                return events;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "events not processed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn event(&self, id: u64) -> Value {
        let (status, body) = self
            .server
            .get(&paths::drift_event(id), Some(&self.operator));
        assert_eq!(status, 200, "{body}");
        body
    }

    fn feedback(&self, device: &str, token: &str) -> Vec<FeedbackItem> {
        let (status, body) = self.server.get(&paths::feedback(device), Some(token));
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body["items"].clone()).unwrap()
    }

    fn send(&self, request: ureq::Request, body: Option<&str>) -> Reply {
        let result = match body {
            Some(b) => request
                .set("Content-Type", "application/x-www-form-urlencoded")
                .send_string(b),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                response
                    .all(&n)
                    .into_iter()
                    .map(|v| (n.to_ascii_lowercase(), v.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let body = response.into_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET `path` with the session cookie `session`, if any.
    fn page(&self, path: &str, session: Option<&str>) -> Reply {
        let mut r = self.http.get(&self.server.url(path));
        if let Some(s) = session {
            r = r.set("Cookie", &format!("sphere_session={s}"));
        }
        self.send(r, None)
    }

    /// POST the form `body` to `path` with the session cookie and extra headers.
    fn form(
        &self,
        path: &str,
        session: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut r = self.http.post(&self.server.url(path));
        if let Some(s) = session {
            r = r.set("Cookie", &format!("sphere_session={s}"));
        }
        for (n, v) in headers {
            r = r.set(n, v);
        }
        self.send(r, Some(body))
    }

    /// Log in through the form; the session cookie's value.
    fn login(&self) -> String {
        self.login_as(&self.operator)
    }

    /// Log in with `token` through the form; the session cookie's value.
    fn login_as(&self, token: &str) -> String {
        let reply = self.form("/ui/login", None, &[], &format!("token={token}"));
        assert_eq!(reply.status, 303, "{}", reply.body);
        let cookie = reply.header("set-cookie").unwrap().to_owned();
        cookie
            .strip_prefix("sphere_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// `html` with numeric character references spelt as named ones (askama writes `&#60;`), so
/// assertions can name one form.
fn named_entities(html: &str) -> String {
    html.replace("&#60;", "&lt;")
        .replace("&#62;", "&gt;")
        .replace("&#34;", "&quot;")
        .replace("&#39;", "&apos;")
        .replace("&#38;", "&amp;")
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn the_models_page_lists_releases_and_rollouts() {
    let dir = tempfile::tempdir().unwrap();
    let signer = tinylcm_protocol::release::SigningKey::generate().unwrap();
    let sphere = open_embedded(dir.path())
        .unwrap()
        .with_release_keys(vec![signer.public()]);
    let key = sphere.create_enrollment_key(1).unwrap();
    let operator = sphere.create_operator_token("alice").unwrap();
    let f = Fixture {
        server: TestServer::start(sphere),
        _dir: dir,
        key,
        operator,
        reader: String::new(),
        http: ureq::AgentBuilder::new().redirects(0).build(),
    };
    assert_eq!(f.page("/ui/models", None).status, 303);
    let session = f.login();
    let empty = f.page("/ui/models", Some(&session));
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("No releases yet"), "{}", empty.body);

    let model = release::model_bytes("3");
    let (status, body) = f.server.post_multipart(
        paths::MODELS,
        Some(&f.operator),
        &[
            (
                "release",
                None,
                &release::signed(&signer, "shapes", "3", &model),
            ),
            ("model", Some("m.tflite"), &model),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = f.server.post(
        &paths::rollout("shapes", "3"),
        Some(&f.operator),
        br#"{"group": "lab", "percent": 25}"#,
    );
    assert_eq!(status, 200);
    let page = f.page("/ui/models", Some(&session));
    assert_eq!(page.status, 200);
    for text in [
        "<td>shapes</td><td>3</td>",
        "<td>lab</td><td>shapes 3</td><td>25 %</td>",
    ] {
        assert!(page.body.contains(text), "{text} missing in {}", page.body);
    }
    assert!(page.body.contains(&signer.public().id()));

    // The fleet overview shows which release each device is assigned.
    f.server.add_device(&f.operator, "cam-9");
    let fleet = f.page("/ui/fleet", Some(&session));
    assert!(
        fleet.body.contains(r#"<td class="model">—</td>"#),
        "{}",
        fleet.body
    );
    let (status, _) = f.server.post(
        &paths::rollout("shapes", "3"),
        Some(&f.operator),
        br#"{"group": "all"}"#,
    );
    assert_eq!(status, 200);
    let fleet = f.page("/ui/fleet", Some(&session));
    // It reports no model of its own: the assigned release, said as such.
    assert!(
        fleet
            .body
            .contains(r#"<td class="model">shapes 3 (assigned)</td>"#),
        "{}",
        fleet.body
    );
}

#[test]
fn the_configuration_page_pushes_layers_and_shows_which_devices_applied_them() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("pi", "zero2w");
    let session = f.login();
    let page = f.page("/ui/config", Some(&session));
    assert_eq!(page.status, 200);
    // Fails before this change: the page said "Set by never set" and showed example TOML as
    // placeholders that looked like settings.
    assert!(
        page.body
            .contains("Not set: devices run their own configuration file."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Set by never set") && !page.body.contains("placeholder="));
    assert!(
        page.body.contains("none: its own file only"),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);

    // A TOML comment is free text: it must come back as text inside the textarea.
    let toml =
        "[drift.page-hinkley-distance]\r\nlambda = 80.0 # </textarea><script>alert(1)</script>\r\n";
    let saved = f.form(
        "/ui/config",
        Some(&session),
        &[],
        &format!("csrf={csrf}&scope=all&toml={}", enc(toml)),
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    let items = f.feedback(&dev, &token);
    let Some(FeedbackItem {
        id,
        verdict: FeedbackVerdict::Config { toml: sent, .. },
        ..
    }) = items.last()
    else {
        panic!("no configuration item in {items:?}");
    };
    assert!(sent.contains("lambda = 80.0"), "{sent}");
    let page = f.page("/ui/config", Some(&session));
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(named_entities(&page.body).contains("&lt;/textarea&gt;&lt;script&gt;"));
    assert!(
        page.body.contains("waiting for the device"),
        "{}",
        page.body
    );
    // Each device's effective configuration is shown (as text), under its display name.
    assert!(
        named_entities(&page.body)
            .contains(r#"<pre class="effective">[drift.page-hinkley-distance]"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(">pi ({})<", &dev[4..10])),
        "{}",
        page.body
    );

    // The device acknowledges: the page says it runs the configuration.
    let (status, _) = f.server.post(
        &paths::feedback_ack(&dev),
        Some(&token),
        json!({ "up_to": id }).to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    let page = f.page("/ui/config", Some(&session));
    assert!(page.body.contains("applied"), "{}", page.body);

    // An unsafe section is refused with a page that says why; a missing CSRF token is refused.
    let refused = f.form(
        "/ui/config",
        Some(&session),
        &[],
        &format!(
            "csrf={csrf}&scope=all&toml={}",
            enc("[model]\npath = \"x\"")
        ),
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("cannot be set remotely"),
        "{}",
        refused.body
    );
    let forged = f.form("/ui/config", Some(&session), &[], "scope=all&toml=");
    assert_eq!(forged.status, 403);
    assert_eq!(f.feedback(&dev, &token).len(), 0, "nothing new was queued");
}

/// Fails before this change: a device could not report a refusal, and the page said
/// "applied" for a configuration the device had set aside.
#[test]
fn the_configuration_page_shows_a_refusal_with_the_devices_reason() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("pi", "zero2w");
    let session = f.login();
    let csrf = csrf_of(&f.page("/ui/config", Some(&session)).body);
    let saved = f.form(
        "/ui/config",
        Some(&session),
        &[],
        &format!("csrf={csrf}&scope=all&toml={}", enc("[knn]\nk = 7\n")),
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    let items = f.feedback(&dev, &token);
    let Some(FeedbackItem {
        id,
        verdict: FeedbackVerdict::Config { revision, .. },
        ..
    }) = items.last()
    else {
        panic!("no configuration item in {items:?}");
    };
    let (status, _) = f.server.post(
        &paths::feedback_ack(&dev),
        Some(&token),
        json!({ "up_to": id }).to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    let reason = "generation failed: <b>cannot create</b> the thumbnail folder";
    let (status, body) = f.server.post(
        &paths::config_refusal(&dev),
        Some(&token),
        json!({ "revision": revision, "reason": reason })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let page = f.page("/ui/config", Some(&session));
    let text = named_entities(&page.body);
    assert!(
        text.contains("refused by the device: generation failed: &lt;b&gt;cannot create&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>cannot"), "{}", page.body);
}

#[test]
fn pages_need_an_operator_session_and_device_tokens_cannot_log_in() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("pi", "zero2w");

    for path in [
        "/ui/fleet",
        "/ui/drift",
        "/ui/data",
        "/ui/config",
        &format!("/ui/devices/{dev}"),
        "/",
    ] {
        let r = f.page(path, None);
        assert_eq!(r.status, 303, "{path}");
        let to = r.header("location").unwrap();
        assert!(to == "/ui/login" || to == "/ui/fleet", "{path} → {to}");
    }
    // A made-up or device token in the cookie is no session either.
    assert_eq!(
        f.page("/ui/fleet", Some(&token)).header("location"),
        Some("/ui/login")
    );
    assert_eq!(f.page("/ui/fleet", Some("slo_nope")).status, 303);
    // Images and the live stream answer 401 (nothing to redirect).
    assert_eq!(
        f.page(&format!("/ui/img/devices/{dev}/packages/p/{THUMB}"), None)
            .status,
        401
    );
    assert_eq!(f.page("/ui/events", None).status, 401);

    // The login page itself is public and carries the security headers.
    let login = f.page("/ui/login", None);
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap();
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(login.header("x-content-type-options"), Some("nosniff"));
    assert!(!login.body.contains("<script>"), "no inline script");

    // A device token cannot log in; an unknown one neither; no cookie is set.
    let r = f.form("/ui/login", None, &[], &format!("token={token}"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("device tokens cannot log in"));
    assert!(r.header("set-cookie").is_none());
    let r = f.form("/ui/login", None, &[], "token=slo_unknown");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    // A login posted from another site is refused.
    let r = f.form(
        "/ui/login",
        None,
        &[("Origin", "http://evil.example")],
        &format!("token={}", f.operator),
    );
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());

    // The operator logs in: an HttpOnly, SameSite=Strict cookie scoped to /ui.
    let r = f.form("/ui/login", None, &[], &format!("token={}", f.operator));
    assert_eq!(r.status, 303);
    let cookie = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Behind a TLS proxy the cookie is Secure.
    let r = f.form(
        "/ui/login",
        None,
        &[("X-Forwarded-Proto", "https")],
        &format!("token={}", f.operator),
    );
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));

    let session = f.login();
    let fleet = f.page("/ui/fleet", Some(&session));
    assert_eq!(fleet.status, 200);
    assert!(fleet.body.contains(&dev));
    assert!(fleet.body.contains(r#"data-status="ok""#));

    // Logging out needs the CSRF token, and clears the cookie.
    let r = f.form("/ui/logout", Some(&session), &[], "csrf=wrong");
    assert_eq!(r.status, 403);
    let r = f.form(
        "/ui/logout",
        Some(&session),
        &[],
        &format!("csrf={}", csrf_of(&fleet.body)),
    );
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[test]
fn device_supplied_markup_is_shown_as_text_never_as_markup() {
    let f = Fixture::new();
    let (dev, token) = f.enroll(XSS_NAME, XSS_HARDWARE);
    f.upload(
        &dev,
        &token,
        &drift_package(&dev, "pkg-1", &json!([report(1, XSS_DETECTOR, &[THUMB])])),
    );
    let events = f.wait_events(&dev, 1);
    let id = events[0]["id"].as_u64().unwrap();
    let session = f.login();

    // An operator label with markup, through the dashboard's own form.
    let drift = f.page("/ui/drift", Some(&session));
    let label = "<i>cat</i>\"'&";
    let r = f.form(
        &format!("/ui/drift/{id}/decide"),
        Some(&session),
        &[],
        &format!(
            "csrf={}&return=status%3Dany&action=validate&label={}&note={}",
            csrf_of(&drift.body),
            enc(label),
            enc("<script>alert(4)</script>")
        ),
    );
    assert_eq!(r.status, 303, "{}", r.body);

    for path in [
        "/ui/fleet".to_owned(),
        format!("/ui/devices/{dev}"),
        "/ui/drift?status=any".to_owned(),
        format!("/ui/drift?status=any&detector={}", enc(XSS_DETECTOR)),
        format!("/ui/data?device={dev}"),
    ] {
        let page = f.page(&path, Some(&session));
        assert_eq!(page.status, 200, "{path}");
        let body = &page.body;
        for raw in [
            "<script>alert",
            "<img src=x",
            "<b onmouseover",
            "<i>cat</i>",
            "onerror=alert(2)>",
        ] {
            assert!(!body.contains(raw), "{path} contains raw {raw:?}");
        }
        // The only script element is the dashboard's own file.
        assert_eq!(body.matches("<script").count(), 1, "{path}");
        assert!(body.contains(r#"<script src="/ui/static/app.js" defer></script>"#));
    }
    let fleet = named_entities(&f.page("/ui/fleet", Some(&session)).body);
    assert!(
        fleet.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{fleet}"
    );
    assert!(fleet.contains("&lt;img src=x onerror=alert(2)&gt;"));
    let drift = named_entities(&f.page("/ui/drift?status=any", Some(&session)).body);
    assert!(
        drift.contains("&lt;b onmouseover=alert(3)&gt;adwin&lt;/b&gt;"),
        "{drift}"
    );
    assert!(
        drift.contains("&lt;i&gt;cat&lt;/i&gt;&quot;&apos;&amp;"),
        "{drift}"
    );
    // The filter field refills with the typed detector, escaped inside the attribute.
    let filtered = named_entities(
        &f.page(
            &format!("/ui/drift?status=any&detector={}", enc(XSS_DETECTOR)),
            Some(&session),
        )
        .body,
    );
    assert!(filtered.contains("value=\"&lt;b onmouseover=alert(3)&gt;adwin&lt;/b&gt;\""));
    // The label was stored as given (data), and reached the device as data.
    assert_eq!(f.event(id)["label"], label);
    let items = f.feedback(&dev, &token);
    assert!(items.iter().any(|i| matches!(
        &i.verdict,
        FeedbackVerdict::Sample { id: 12, label: Some(l), .. } if l == label
    )));
}

#[test]
fn decisions_need_the_csrf_token_and_a_same_origin_post() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("pi", "zero2w");
    f.upload(
        &dev,
        &token,
        &drift_package(
            &dev,
            "pkg-1",
            &json!([
                report(1, "adwin", &[THUMB]),
                report(2, "adwin", &[]),
                report(3, "cusum", &[])
            ]),
        ),
    );
    let events = f.wait_events(&dev, 3);
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let session = f.login();
    let csrf = csrf_of(&f.page("/ui/drift", Some(&session)).body);
    let path = format!("/ui/drift/{}/decide", ids[0]);

    // Missing or wrong token, another session's token, a foreign origin, a cross-site fetch:
    // all refused and nothing changes.
    let other_session = {
        let dir = tempfile::tempdir().unwrap();
        let other = open_embedded(dir.path()).unwrap();
        other.create_operator_token("mallory").unwrap()
    };
    let refusals: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![], "action=validate&label=cat".into()),
        (vec![], "csrf=00&action=validate&label=cat".into()),
        (
            vec![],
            format!(
                "csrf={}&action=validate",
                sphere_lite::web::csrf_token(&other_session)
            ),
        ),
        (
            vec![("Origin", "http://evil.example")],
            format!("csrf={csrf}&action=validate"),
        ),
        (
            vec![("Sec-Fetch-Site", "cross-site")],
            format!("csrf={csrf}&action=validate"),
        ),
    ];
    for (headers, body) in &refusals {
        let r = f.form(&path, Some(&session), headers, body);
        assert_eq!(r.status, 403, "{body}: {}", r.body);
    }
    // Without a session: back to the login page.
    let r = f.form(&path, None, &[], &format!("csrf={csrf}&action=validate"));
    assert_eq!(r.header("location"), Some("/ui/login"));
    // Bad fields: 400 pages.
    for body in [
        format!("csrf={csrf}&action=maybe"),
        format!("csrf={csrf}&action=validate&extra=1"),
        format!("csrf={csrf}&action=validate&label={}", "x".repeat(300)),
    ] {
        let r = f.form(&path, Some(&session), &[], &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    assert_eq!(f.event(ids[0])["status"], "pending");
    assert!(f.feedback(&dev, &token).is_empty());

    // The real form: validated, back to the same filtered view.
    let r = f.form(
        &path,
        Some(&session),
        &[("Origin", &format!("http://{}", f.server.addr))],
        &format!(
            "csrf={csrf}&return={}&action=validate&label=cat",
            enc(&format!("device={dev}"))
        ),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("/ui/drift?device={dev}&status=pending").as_str())
    );
    assert_eq!(f.event(ids[0])["status"], "validated");
    assert_eq!(f.event(ids[0])["decided_by"], "alice");
    // A second decision is a conflict, shown as a 409 page.
    let r = f.form(
        &path,
        Some(&session),
        &[],
        &format!("csrf={csrf}&action=reject"),
    );
    assert_eq!(r.status, 409);

    // Bulk reject of the other two (the decided one again is reported, not changed).
    let r = f.form(
        "/ui/drift/bulk",
        Some(&session),
        &[],
        &format!(
            "csrf={csrf}&action=reject&note=glare&id={}&id={}",
            ids[1], ids[2]
        ),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    for id in &ids[1..] {
        assert_eq!(f.event(*id)["status"], "rejected");
        assert_eq!(f.event(*id)["note"], "glare");
    }
    let r = f.form(
        "/ui/drift/bulk",
        Some(&session),
        &[],
        &format!("csrf={csrf}&action=reject"),
    );
    assert_eq!(r.status, 400, "nothing selected");

    let verdicts: Vec<FeedbackVerdict> = f
        .feedback(&dev, &token)
        .into_iter()
        .map(|i| i.verdict)
        .collect();
    assert_eq!(
        verdicts,
        vec![
            FeedbackVerdict::Drift {
                incident: None,
                event: Some(1),
                verdict: DriftVerdict::Confirmed
            },
            FeedbackVerdict::Sample {
                id: 12,
                label: Some("cat".into()),
                reject: false
            },
            FeedbackVerdict::Drift {
                incident: None,
                event: Some(2),
                verdict: DriftVerdict::FalseAlarm
            },
            FeedbackVerdict::Drift {
                incident: None,
                event: Some(3),
                verdict: DriftVerdict::FalseAlarm
            },
        ]
    );
}

#[test]
fn bad_parameters_get_a_400_page_and_lists_are_paginated() {
    let f = Fixture::new();
    let mut devices = Vec::new();
    for i in 0..55 {
        devices.push(f.enroll(&format!("pi-{i}"), "zero2w").0);
    }
    devices.sort();
    let session = f.login();
    for path in [
        "/ui/fleet?page=2",
        "/ui/fleet?after=..%2Fx",
        "/ui/drift?status=open",
        "/ui/drift?since=yesterday",
        "/ui/drift?after=-3",
        "/ui/drift?device=a%20b",
        "/ui/data?after=incoming%2Fx.tar",
        "/ui/devices/dev-1?after=..",
    ] {
        let r = f.page(path, Some(&session));
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    assert_eq!(f.page("/ui/devices/dev-0000", Some(&session)).status, 404);
    assert_eq!(f.page("/ui/nothing-here", Some(&session)).status, 404);
    assert_eq!(
        f.page("/ui/img/incoming/x/p.tar", Some(&session)).status,
        404
    );

    // 55 devices: 50 on the first page, the rest behind the cursor, none twice.
    let first = f.page("/ui/fleet", Some(&session)).body;
    let next = format!("/ui/fleet?after={}", devices[49]);
    assert!(first.contains(&next.replace('&', "&amp;")), "next link");
    let second = f.page(&next, Some(&session)).body;
    for (i, d) in devices.iter().enumerate() {
        let row = format!("data-device=\"{d}\"");
        assert_eq!(first.contains(&row), i < 50, "{d}");
        assert_eq!(second.contains(&row), i >= 50, "{d}");
    }
    assert!(!second.contains("rel=\"next\""));
}

#[test]
fn the_live_stream_reports_processed_packages_and_decisions() {
    let f = Fixture::new();
    let (dev, token) = f.server.enrolled(&f.key);
    let session = f.login();
    let response = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(10))
        .build()
        .get(&f.server.url("/ui/events"))
        .set("Cookie", &format!("sphere_session={session}"))
        .call()
        .unwrap();
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let mut lines = BufReader::new(response.into_reader()).lines();
    f.upload(
        &dev,
        &token,
        &drift_package(&dev, "pkg-1", &json!([report(1, "adwin", &[THUMB])])),
    );
    let mut next_event = || -> (String, Value) {
        let mut name = String::new();
        loop {
            let line = lines.next().expect("stream open").expect("read");
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                return (name, serde_json::from_str(d.trim()).unwrap());
            }
        }
    };
    let (name, data) = next_event();
    assert_eq!(name, "package");
    assert_eq!(data, json!({"kind": "package", "device": dev}));
    let id = f.wait_events(&dev, 1)[0]["id"].as_u64().unwrap();
    let (status, _) = f
        .server
        .post(&paths::drift_event_reject(id), Some(&f.operator), b"{}");
    assert_eq!(status, 200);
    let (name, data) = next_event();
    assert_eq!(name, "decided");
    assert_eq!(data, json!({"kind": "decided", "id": id, "device": dev}));
}

// --- Headless Chromium -----------------------------------------------------------------------

#[test]
fn an_operator_validates_drift_in_headless_chromium_and_the_device_gets_the_feedback() {
    if !browser::available() {
        return;
    }
    let f = Fixture::new();
    let (dev, token) = f.enroll("kitchen-cam", "cm4");
    f.upload(
        &dev,
        &token,
        &drift_package(
            &dev,
            "pkg-1",
            &json!([report(4, "page-hinkley-distance", &[THUMB])]),
        ),
    );
    let id = f.wait_events(&dev, 1)[0]["id"].as_u64().unwrap();
    let driver = Driver::start();
    let base = f.server.url("");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::Locator;
        let wait = BROWSER_WAIT;
        // Not logged in: the dashboard sends the browser to the login page.
        let client = driver
            .logged_in(
                &format!("{base}/ui/fleet"),
                &f.operator,
                &["--window-size=1400,1000"],
            )
            .await;

        // The fleet page lists the device.
        let row = match client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css(&format!("tr.device[data-device=\"{dev}\"]")))
            .await
        {
            Ok(row) => row,
            Err(e) => panic!(
                "{e}: no device row at {:?}: {}",
                client.current_url().await.map(|u| u.to_string()),
                client.source().await.unwrap_or_default()
            ),
        };
        let text = row.text().await.unwrap();
        assert!(text.contains("kitchen-cam"), "{text}");
        // Its pending drift makes it an alert, with the reason.
        assert!(
            text.contains("alert") && text.contains("1 open drift incident"),
            "{text}"
        );

        // Live: another package arrives while the page is open; the row updates by itself.
        let packages_cell = format!("tr.device[data-device=\"{dev}\"] td.packages");
        assert_eq!(
            client
                .find(Locator::Css(&packages_cell))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "1"
        );
        f.upload(&dev, &token, &drift_package(&dev, "pkg-2", &json!([])));
        let start = Instant::now();
        loop {
            let cell = client.find(Locator::Css(&packages_cell)).await;
            if let Ok(cell) = cell {
                if cell.text().await.unwrap_or_default() == "2" {
                    break;
                }
            }
            assert!(start.elapsed() < wait, "the fleet page did not update live");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Drift Hub: type a label and click Validate on the incident's card.
        client
            .find(Locator::LinkText("Drift Hub"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let row = format!("article.incident[data-incident=\"{id}\"]");
        client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css(&format!("{row} input[name=label]")))
            .await
            .unwrap()
            .send_keys("cat")
            .await
            .unwrap();
        // The sample image loads through the authenticated image route.
        let loaded = client
            .execute(
                &format!(
                    "var i = document.querySelector('{} img'); return i !== null && i.complete;",
                    row.replace('"', "\\\"")
                ),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(loaded, json!(true));
        client
            .find(Locator::Css(&format!("{row} button.validate")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // Back on the pending list, which is now empty.
        client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("#no-events"))
            .await
            .unwrap();
        client.close().await.unwrap();
    });
    drop(driver);

    // The decision reached the device's feedback queue.
    assert_eq!(f.event(id)["status"], "validated");
    assert_eq!(f.event(id)["label"], "cat");
    let verdicts: Vec<FeedbackVerdict> = f
        .feedback(&dev, &token)
        .into_iter()
        .map(|i| i.verdict)
        .collect();
    assert_eq!(
        verdicts,
        vec![
            FeedbackVerdict::Drift {
                incident: None,
                event: Some(4),
                verdict: DriftVerdict::Confirmed
            },
            FeedbackVerdict::Sample {
                id: 12,
                label: Some("cat".into()),
                reject: false
            },
        ]
    );
}

#[test]
fn metric_charts_and_the_fleet_map_show_device_data_escaped() {
    let f = Fixture::new();
    let session = f.login();
    let (dev, token) = f.enroll(XSS_NAME, "zero2w");
    for (i, (p50, fps)) in [(11.8, 29.5), (12.4, 30.0)].into_iter().enumerate() {
        let mut b = tinylcm_protocol::package::PackageBuilder::new(
            format!("m{i}"),
            dev.as_str(),
            1_764_147_600_000 + i as u64 * 60_000,
        )
        .unwrap();
        // The runtime's layout: `latency.total.p50_us`, `fps_interval` (both default charts).
        let doc =
            json!({"latency": {"total": {"p50_us": p50}}, "fps_interval": fps, "<b>bad</b>": 1});
        b.add(
            "metrics.json",
            tinylcm_protocol::package::FileKind::Metrics,
            doc.to_string().into_bytes(),
        )
        .unwrap();
        f.upload(&dev, &token, &b.finish().unwrap());
    }
    // Processing runs in the background: wait for both points through the operator API.
    let series = format!("/api/v2/devices/{dev}/metrics?key={LATENCY_P50_US}");
    let start = Instant::now();
    loop {
        let (status, body) = f.server.get(&series, Some(&f.operator));
        assert_eq!(status, 200, "{body}");
        if body["points"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = f.server.get(&series, Some(&token));
    assert!(
        status == 401 || status == 403,
        "a device token reads no fleet metrics"
    );
    let keys_path = format!("/api/v2/devices/{dev}/metrics/keys");
    let (status, keys) = f.server.get(&keys_path, Some(&f.operator));
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["keys"], json!([FPS, LATENCY_P50_US]));

    // The device page charts both default keys it has: nice value ticks with grid lines,
    // round time labels (a minute apart: every 30 s), the newest, smallest and largest value
    // in the caption.
    let page = f.page(&format!("/ui/devices/{dev}"), Some(&session));
    assert_eq!(page.status, 200, "{}", page.body);
    let html = named_entities(&page.body);
    assert!(html.contains("<svg"), "{html}");
    assert!(
        html.contains(&format!("<code>{LATENCY_P50_US}</code>")),
        "{html}"
    );
    assert!(html.contains(&format!("<code>{FPS}</code>")), "{html}");
    assert!(
        html.contains("latest <strong>12.4</strong> · min 11.8 · max 12.4"),
        "{html}"
    );
    assert!(html.contains(r#"class="chart-grid""#), "{html}");
    assert!(
        html.contains(">09:00:00<") && html.contains(">09:00:30<") && html.contains(">09:01:00<"),
        "{html}"
    );
    assert!(html.contains(r#"width="100%""#), "responsive: {html}");
    assert!(!html.contains("<script>alert(1)") && html.contains("&lt;script&gt;alert(1)"));
    assert!(
        !html.contains("<b>bad</b>") && !html.contains("&lt;b&gt;bad"),
        "refused key"
    );
    // One chosen key; a hostile key in the query is a 400, never echoed as markup.
    let one = f.page(&format!("/ui/devices/{dev}?key={FPS}"), Some(&session));
    assert!(
        one.body.contains(&format!("<code>{FPS}</code>"))
            && !one.body.contains(&format!("<code>{LATENCY_P50_US}"))
    );
    let bad = f.page(
        &format!("/ui/devices/{dev}?key={}", enc("<svg onload=x>")),
        Some(&session),
    );
    assert_eq!(bad.status, 400);
    assert!(!bad.body.contains("<svg onload"));

    // No location, no map; a located device is a labelled point linking to its page.
    let fleet = f.page("/ui/fleet", Some(&session));
    assert!(!fleet.body.contains("map-point"), "{}", fleet.body);
    let (status, body) = f.server.patch(
        &format!("/api/v2/devices/{dev}/settings"),
        Some(&f.operator),
        json!({"name": XSS_HARDWARE, "location": {"latitude": 48.1, "longitude": 11.6}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let html = named_entities(&f.page("/ui/fleet", Some(&session)).body);
    assert!(
        html.contains(&format!(r#"class="map-point" href="/ui/devices/{dev}""#)),
        "{html}"
    );
    assert!(html.contains(r#"cx="383.2" cy="83.8""#), "{html}");
    assert!(
        !html.contains("<img src=x") && html.contains("&lt;img src=x"),
        "{html}"
    );
}

/// Fails before this change: a decided event showed its label as if it had taken effect,
/// whatever the device did with it. Now each item of the decision shows how far it got, and a
/// refusal shows the device's reason (as text).
#[test]
fn the_drift_hub_shows_what_the_device_did_with_each_item_of_a_decision() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("cam", "pi");
    f.upload(
        &dev,
        &token,
        &drift_package(&dev, "pkg-1", &json!([report(1, "adwin", &[THUMB])])),
    );
    let id = f.wait_events(&dev, 1)[0]["id"].as_u64().unwrap();
    let (status, _) = f.server.post(
        &paths::drift_event_validate(id),
        Some(&f.operator),
        br#"{"label": "star"}"#,
    );
    assert_eq!(status, 200);
    let session = f.login();
    let page = f.page("/ui/drift?status=any", Some(&session)).body;
    assert!(page.contains("sample 12 is star: <span class=\"progress-queued\">queued</span>"));

    f.server
        .post(&paths::feedback_ack(&dev), Some(&token), br#"{"up_to": 2}"#);
    let results = json!({"results": [
        {"id": 1, "outcome": "applied", "unix_ms": 5},
        {"id": 2, "outcome": "refused", "reason": "<b>sample 12</b> has left the quarantine", "unix_ms": 6},
    ]});
    let (status, body) = f.server.post(
        &paths::feedback_results(&dev),
        Some(&token),
        results.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let page = named_entities(&f.page("/ui/drift?status=any", Some(&session)).body);
    assert!(
        page.contains(
            "drift confirmed: <span class=\"progress-applied\">queued → delivered → applied</span>"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "sample 12 is star: <span class=\"progress-refused\">queued → delivered → refused</span> \
             <small class=\"reason\">(&lt;b&gt;sample 12&lt;/b&gt; has left the quarantine)</small>"
        ),
        "{page}"
    );
    assert!(!page.contains("<b>sample 12</b>"));
}

/// Fails before this change: two devices enrolled from machines with the same host name were
/// both "vm" on every page, and only the API could rename them. Now each shows as its host
/// name with a short id, and an admin sets name, group and location on the device page
/// (CSRF-checked); a read-only operator sees no form and cannot post it.
#[test]
fn devices_get_unique_names_and_an_admin_edits_them_on_the_device_page() {
    let f = Fixture::new();
    let (a, _) = f.enroll("vm", "zero2w");
    let (b, _) = f.enroll("vm", "zero2w");
    let short = |id: &str| id.strip_prefix("dev-").unwrap()[..6].to_owned();
    let session = f.login();
    let fleet = f.page("/ui/fleet", Some(&session)).body;
    let (name_a, name_b) = (format!("vm ({})", short(&a)), format!("vm ({})", short(&b)));
    assert_ne!(name_a, name_b);
    assert!(fleet.contains(&format!(">{name_a}<")), "{fleet}");
    assert!(fleet.contains(&format!(">{name_b}<")), "{fleet}");

    let page = f.page(&format!("/ui/devices/{a}"), Some(&session)).body;
    assert!(page.contains(&format!("<h1>{name_a}</h1>")), "{page}");
    let action = format!("/ui/devices/{a}/edit");
    assert!(page.contains(&format!(r#"action="{action}""#)), "{page}");
    let csrf = csrf_of(&page);

    // Without the token: refused, nothing changed.
    let r = f.form(&action, Some(&session), &[], "name=x");
    assert_eq!(r.status, 403, "{}", r.body);
    // Half a location: a 400 saying what to fix.
    let r = f.form(
        &action,
        Some(&session),
        &[],
        &format!("csrf={csrf}&name=x&group=&latitude=52.5&longitude="),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("latitude and longitude"), "{}", r.body);

    let r = f.form(
        &action,
        Some(&session),
        &[],
        &format!(
            "csrf={csrf}&name={}&group=lobby&latitude=52.52&longitude=13.405",
            enc("Door camera <1>")
        ),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(action.trim_end_matches("/edit")));
    let (status, settings) = f
        .server
        .get(&format!("/api/v2/devices/{a}/settings"), Some(&f.operator));
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["name"], "Door camera <1>");
    assert_eq!(settings["group"], "lobby");
    assert_eq!(settings["location"]["latitude"], 52.52);
    let fleet = named_entities(&f.page("/ui/fleet", Some(&session)).body);
    assert!(fleet.contains(">Door camera &lt;1&gt;<"), "{fleet}");
    assert!(fleet.contains(&format!(">{name_b}<")), "{fleet}");
    let page = named_entities(&f.page(&format!("/ui/devices/{a}"), Some(&session)).body);
    assert!(page.contains(r#"value="Door camera &lt;1&gt;""#), "{page}");
    assert!(page.contains("<dd>lobby</dd>"), "{page}");

    // An empty name goes back to the default; the group is cleared.
    let r = f.form(
        &action,
        Some(&session),
        &[],
        &format!("csrf={csrf}&name=&group=&latitude=&longitude="),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let fleet = f.page("/ui/fleet", Some(&session)).body;
    assert!(fleet.contains(&format!(">{name_a}<")), "{fleet}");

    // A read-only operator sees the device but no form, and cannot post one.
    let reader = f.login_as(&f.reader);
    let page = f.page(&format!("/ui/devices/{a}"), Some(&reader));
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&action), "{}", page.body);
    let r = f.form(
        &action,
        Some(&reader),
        &[],
        &format!("csrf={}&name=mine", csrf_of(&page.body)),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let (_, settings) = f
        .server
        .get(&format!("/api/v2/devices/{a}/settings"), Some(&f.operator));
    assert_eq!(settings["name"], Value::Null, "{settings}");
}

// --- Incidents -------------------------------------------------------------------------------

/// Quarantine thumbnails (real 64×48 JPEGs like the synthetic camera's) by their names.
const INCIDENT_THUMBS: [(&str, &[u8]); 4] = [
    (
        "samples/00000000000000000031.jpg",
        include_bytes!("support/samples/star.jpg"),
    ),
    (
        "samples/00000000000000000032.jpg",
        include_bytes!("support/samples/dimstar.jpg"),
    ),
    (
        "samples/00000000000000000033.jpg",
        include_bytes!("support/samples/glare.jpg"),
    ),
    (
        "samples/00000000000000000034.jpg",
        include_bytes!("support/samples/ball.jpg"),
    ),
];

/// A drift report of `incident`.
fn onset(seq: u64, incident: u64, detector: &str, samples: &[&str]) -> Value {
    json!({
        "event_seq": seq, "epoch": "0123456789abcdef0123456789abcdef", "incident": incident,
        "detector": detector, "statistic": 4.2, "threshold": 3.0, "magnitude": 0.8,
        "sample_id": 30 + seq, "unix_ms": 1_764_147_600_000u64 + seq * 1000, "samples": samples,
    })
}

/// A package as the runtime sends it during drift: per-class counts in `metrics.json` (the
/// classes `ball` and `star` it knows, `new-1` it proposed), two incidents (7: two detectors
/// sharing two samples; 8: one detector), and their thumbnails.
fn incident_package(device: &str) -> Vec<u8> {
    use tinylcm_protocol::package::{FileKind, PackageBuilder};
    let metrics = json!({"fps": 9.5, "classes": {
        "star": {"total": 120, "interval": 4}, "ball": {"total": 80, "interval": 2},
        "new-1": {"total": 6, "interval": 6},
    }});
    let events = json!([
        onset(
            1,
            7,
            "page-hinkley-confidence",
            &[INCIDENT_THUMBS[0].0, INCIDENT_THUMBS[1].0]
        ),
        onset(
            2,
            7,
            "adwin-distance",
            &[INCIDENT_THUMBS[0].0, INCIDENT_THUMBS[1].0]
        ),
        onset(
            3,
            8,
            "cusum-confidence",
            &[INCIDENT_THUMBS[2].0, INCIDENT_THUMBS[3].0]
        ),
    ]);
    let mut b = PackageBuilder::new("pkg-incidents", device, 1_764_147_600_000).unwrap();
    b.add(
        "metrics.json",
        FileKind::Metrics,
        metrics.to_string().into_bytes(),
    )
    .unwrap();
    b.add(
        "drift-events.json",
        FileKind::DriftEvents,
        events.to_string().into_bytes(),
    )
    .unwrap();
    for (name, jpeg) in INCIDENT_THUMBS {
        b.add(name, FileKind::Sample, jpeg.to_vec()).unwrap();
    }
    b.finish().unwrap()
}

/// Fails before this change: the Drift Hub listed one row per detector onset (an incident
/// with two detectors twice), offered free text only for the label, and `/ui/drift/{id}` was
/// a 404. Now each incident is one card with its detectors, samples and the device's classes
/// (known ones, then proposed `new-…`), it has a page, and one decision covers its events,
/// labelling each shared sample once.
#[test]
fn each_incident_is_one_card_with_its_detectors_classes_and_a_page() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("yard-cam", "zero2w");
    f.upload(&dev, &token, &incident_package(&dev));
    let events = f.wait_events(&dev, 3);
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let session = f.login();

    let hub = f.page("/ui/drift", Some(&session)).body;
    assert_eq!(
        hub.matches("<article class=\"incident\"").count(),
        2,
        "{hub}"
    );
    let seven = &hub[hub.find(&format!("data-incident=\"{}\"", ids[0])).unwrap()
        ..hub.find(&format!("data-incident=\"{}\"", ids[2])).unwrap()];
    assert!(seven.contains("Incident 7"), "{seven}");
    assert!(seven.contains("page-hinkley-confidence") && seven.contains("adwin-distance"));
    // Its two samples once each, though both onsets carry them.
    assert_eq!(seven.matches("<img ").count(), 2, "{seven}");
    // The chooser: known classes first with digits 1 and 2, the proposed one third.
    assert!(
        seven.contains(r#"data-pick="ball" data-key="1""#),
        "{seven}"
    );
    assert!(seven.contains(r#"data-pick="star" data-key="2""#));
    assert!(seven.contains(r#"class="pick proposed" data-pick="new-1" data-key="3""#));
    // Events of a device older than predicted classes still render, saying so.
    assert!(
        seven.contains("not reported (the device's runtime is older"),
        "{seven}"
    );

    // The incident's page, from either of its events.
    for id in [ids[0], ids[1]] {
        let page = f.page(&format!("/ui/drift/{id}"), Some(&session));
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Incident 7"));
        assert!(
            page.body.contains("adwin-distance") && page.body.contains("page-hinkley-confidence")
        );
        assert!(!page.body.contains("cusum-confidence"));
    }
    assert_eq!(f.page("/ui/drift/999999", Some(&session)).status, 404);

    // One decision validates both onsets; the hub confirms it with the decision's progress.
    let r = f.form(
        &format!("/ui/drift/{}/incident", ids[1]),
        Some(&session),
        &[],
        &format!(
            "csrf={}&return=status%3Dpending&action=validate&label=star",
            csrf_of(&hub)
        ),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.header("location").unwrap().to_owned();
    assert_eq!(back, format!("/ui/drift?status=pending&decided={}", ids[1]));
    for id in &ids[..2] {
        assert_eq!(f.event(*id)["status"], "validated");
        assert_eq!(f.event(*id)["label"], "star");
    }
    assert_eq!(f.event(ids[2])["status"], "pending");
    let verdicts: Vec<FeedbackVerdict> = f
        .feedback(&dev, &token)
        .into_iter()
        .map(|i| i.verdict)
        .collect();
    let star = |id| FeedbackVerdict::Sample {
        id,
        label: Some("star".into()),
        reject: false,
    };
    let confirmed = |seq| FeedbackVerdict::Drift {
        incident: None,
        event: Some(seq),
        verdict: DriftVerdict::Confirmed,
    };
    assert_eq!(
        verdicts,
        vec![confirmed(1), star(31), star(32), confirmed(2)]
    );
    let hub = f.page(&back, Some(&session)).body;
    let decided = &hub[hub.find("id=\"decided\"").expect("the decided incident")..];
    assert!(
        decided.contains("Incident 7") && decided.contains("validated"),
        "{decided}"
    );
    assert!(decided.contains("sample 31 is star: <span class=\"progress-queued\">queued</span>"));
    assert_eq!(
        hub.matches("<article class=\"incident\"").count(),
        2,
        "decided + incident 8"
    );

    // Deciding it again: a conflict page, nothing queued.
    let r = f.form(
        &format!("/ui/drift/{}/incident", ids[0]),
        Some(&session),
        &[],
        &format!("csrf={}&action=reject", csrf_of(&hub)),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(f.feedback(&dev, &token).len(), 4);
}

/// Fails before this change (devices reported no learning events, drift events no predicted
/// class, and a proposed class could not be named): the device page's timeline shows the
/// device's incident, its proposed class, its rolled-back round with the guard's reason and
/// the closed incident, newest first; the incident card shows the predicted class and top-k;
/// an admin names `new-1` `star` with the page's form, the device gets it as a class item, and
/// the timeline follows the item from queued to applied. A read-only session gets no form.
#[test]
fn a_devices_timeline_shows_what_it_learnt_and_an_admin_names_a_proposed_class() {
    use tinylcm_protocol::package::{FileKind, PackageBuilder};
    let f = Fixture::new();
    let (dev, token) = f.enroll("cam", "zero2w");
    // Recent: the timeline shows the incidents of the last 30 days.
    let t0 = sphere_lite::domain::now_unix_ms() - 3_600_000;
    let metrics = json!({"classes": {
        "star": {"total": 120, "interval": 4}, "new-1": {"total": 6, "interval": 6},
    }});
    let mut drift = onset(1, 7, "adwin-distance", &[]);
    drift["unix_ms"] = json!(t0);
    drift["predicted"] = json!("star");
    drift["top_k"] = json!([{"class": "star", "score": 0.61}, {"class": "new-1", "score": 0.3}]);
    let learning = |seq: u64, seconds: u64, event: Value| {
        json!({"event_seq": seq, "epoch": "0123456789abcdef0123456789abcdef",
               "unix_ms": t0 + seconds * 1000, "event": event})
    };
    let learnt = json!([
        learning(
            2,
            10,
            json!({"kind": "new-class", "round": 1, "class": "new-1", "members": 6})
        ),
        learning(
            3,
            20,
            json!({"kind": "round-rolled-back", "round": 1,
            "reason": "confidence-collapse", "added": 3,
            "confidence_before": 0.9, "confidence_after": 0.4})
        ),
        learning(
            4,
            30,
            json!({"kind": "incident-closed", "incident": 7,
            "detectors": ["adwin-distance"]})
        ),
    ]);
    let mut b = PackageBuilder::new("pkg-learnt", &dev, t0).unwrap();
    for (name, kind, v) in [
        ("metrics.json", FileKind::Metrics, metrics),
        ("drift-events.json", FileKind::DriftEvents, json!([drift])),
        ("learning.json", FileKind::Other, learnt),
    ] {
        b.add(name, kind, v.to_string().into_bytes()).unwrap();
    }
    f.upload(&dev, &token, &b.finish().unwrap());
    let id = f.wait_events(&dev, 1)[0]["id"].as_u64().unwrap();

    let session = f.login();
    let page = f.page(&format!("/ui/devices/{dev}"), Some(&session)).body;
    let at = |text: &str| {
        page.find(text)
            .unwrap_or_else(|| panic!("no {text:?} in {page}"))
    };
    // Newest first: closed, rolled back, proposed, opened.
    assert!(at("incident 7 closed") < at("round 1 rolled back: confidence-collapse"));
    assert!(at("round 1 rolled back") < at("round 1: proposed class new-1"));
    assert!(at("round 1: proposed class new-1") < at("incident 7 opened"));
    assert!(page.contains("0.90 → 0.40"), "{page}");
    assert!(page.contains(&format!(
        r#"<a href="/ui/drift/{id}">incident 7 opened</a>"#
    )));
    assert!(page.contains("predicted star"), "{page}");

    let incident = f.page(&format!("/ui/drift/{id}"), Some(&session)).body;
    assert!(
        incident.contains(r#"<dd class="predicted">star</dd>"#),
        "{incident}"
    );
    assert!(incident.contains("new-1 <small>0.30</small>"), "{incident}");

    // The rename form, proposed class first.
    let action = format!("/ui/devices/{dev}/classes");
    assert!(page.contains(&format!(r#"action="{action}""#)), "{page}");
    assert!(page.contains(r#"<option value="new-1">new-1 (proposed)</option>"#));
    let csrf = csrf_of(&page);
    let r = f.form(&action, Some(&session), &[], "from=new-1&to=star");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = f.form(
        &action,
        Some(&session),
        &[],
        &format!("csrf={csrf}&from=new-1&to=new-1"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = f.form(
        &action,
        Some(&session),
        &[],
        &format!("csrf={csrf}&from=new-1&to=star"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let items = f.feedback(&dev, &token);
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].verdict,
        FeedbackVerdict::Class {
            from: "new-1".into(),
            to: "star".into()
        }
    );
    let page = f.page(&format!("/ui/devices/{dev}"), Some(&session)).body;
    assert!(
        page.contains("rename new-1 → star asked by alice"),
        "{page}"
    );
    assert!(
        page.contains("<small class=\"detail\">queued</small>"),
        "{page}"
    );

    // The device takes it and reports it applied.
    let (status, body) = f.server.post(
        &paths::feedback_ack(&dev),
        Some(&token),
        json!({"up_to": items[0].id}).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = f.server.post(
        &paths::feedback_results(&dev),
        Some(&token),
        json!({"results": [{"id": items[0].id, "outcome": "applied", "unix_ms": t0}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let page = f.page(&format!("/ui/devices/{dev}"), Some(&session)).body;
    assert!(page.contains("queued → delivered → applied"), "{page}");

    let reader = f.login_as(&f.reader);
    let page = f.page(&format!("/ui/devices/{dev}"), Some(&reader)).body;
    assert!(page.contains("round 1 rolled back"), "{page}");
    assert!(!page.contains(&action), "{page}");
}

/// Fails before this change: there were no incident cards to move between and no keys. An
/// operator on the Drift Hub presses j (first incident), 2 (its second class, `star`) and
/// Enter: both onsets of the incident are validated as `star`, and the hub shows the decided
/// incident. The incident review page's screenshot goes to `$SPHERE_LITE_SCREENSHOTS` when
/// that is set (the guide's picture).
#[test]
fn an_operator_reviews_incidents_by_keyboard_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let f = Fixture::new();
    let (dev, token) = f.enroll("yard-cam", "zero2w");
    f.upload(&dev, &token, &incident_package(&dev));
    let events = f.wait_events(&dev, 3);
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let driver = Driver::start();
    let base = f.server.url("");
    let shots = std::env::var_os("SPHERE_LITE_SCREENSHOTS").map(std::path::PathBuf::from);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::key::Key;
        use fantoccini::Locator;
        let wait = BROWSER_WAIT;
        let client = driver
            .logged_in(
                &format!("{base}/ui/login"),
                &f.operator,
                &["--window-size=1100,900", "--hide-scrollbars"],
            )
            .await;
        client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("tr.device"))
            .await
            .unwrap();

        // The incident review page: both onsets, both samples loaded, the classes offered.
        client
            .goto(&format!("{base}/ui/drift/{}", ids[0]))
            .await
            .unwrap();
        client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("article.incident"))
            .await
            .unwrap();
        let loaded = client
            .execute(
                "return Array.prototype.map.call(document.querySelectorAll('article.incident img'), \
                 function (i) { return i.complete && i.naturalWidth === 64; });",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(loaded, json!([true, true]));
        let onsets = client
            .find_all(Locator::Css("article.incident tr.event"))
            .await
            .unwrap();
        assert_eq!(onsets.len(), 2);
        // Keyboard on the incident's page: 2 picks `star` (not validated yet).
        client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys("2")
            .await
            .unwrap();
        let label = client
            .execute(
                "return document.querySelector('article.incident input[name=label]').value;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(label, json!("star"));
        if let Some(dir) = &shots {
            std::fs::create_dir_all(dir).unwrap();
            let main = client.find(Locator::Css("main")).await.unwrap();
            let png = main.screenshot().await.unwrap();
            std::fs::write(dir.join("drift-incident.png"), png).unwrap();
        }

        // The Drift Hub: j selects the first incident, 2 picks `star`, Enter validates.
        client.goto(&format!("{base}/ui/drift")).await.unwrap();
        let cards = client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("section.review"))
            .await
            .unwrap()
            .find_all(Locator::Css("article.incident"))
            .await
            .unwrap();
        assert_eq!(cards.len(), 2, "one card per incident");
        let body = client.find(Locator::Css("body")).await.unwrap();
        body.send_keys("j").await.unwrap();
        body.send_keys("2").await.unwrap();
        let state = client
            .execute(
                "var c = document.querySelector('article.incident.current'); \
                 return [c.getAttribute('data-incident'), c.querySelector('input[name=label]').value];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(state, json!([ids[0].to_string(), "star"]));
        body.send_keys(&String::from(char::from(Key::Enter)))
            .await
            .unwrap();
        let decided = client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("#decided article.incident"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(decided.contains("Incident 7") && decided.contains("validated"), "{decided}");
        client.close().await.unwrap();
    });
    drop(driver);
    for id in &ids[..2] {
        assert_eq!(f.event(*id)["status"], "validated");
        assert_eq!(f.event(*id)["label"], "star");
    }
    assert_eq!(f.event(ids[2])["status"], "pending");
}

// --- Fleet health ----------------------------------------------------------------------------

/// `pairs` of dotted metric keys and values as the nested JSON object a device's metrics file
/// is, plus the model it runs under the protocol's member.
fn metrics_doc(pairs: &[(&str, f64)], model: &str, version: &str) -> Value {
    use tinylcm_protocol::device_json::metrics::{MODEL_MEMBER, RunningModel};
    let mut doc = json!({
        MODEL_MEMBER: RunningModel {
            name: model.into(),
            version: version.into(),
            sha256: "ab".repeat(32),
        }
    });
    for (key, value) in pairs {
        let mut at = &mut doc;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(*part)
                .or_insert_with(|| json!({}));
        }
        at[parts[parts.len() - 1]] = json!(value);
    }
    doc
}

/// A package created at `created` (device clock) with a metrics file: sync interval, frame
/// rate, confidence, latency and the model; and drift `events` with their samples, if any.
fn health_package(
    device: &str,
    id: &str,
    created: u64,
    (interval_s, fps, confidence): (u64, f64, f64),
    (model, version): (&str, &str),
    events: Option<&Value>,
) -> Vec<u8> {
    use tinylcm_protocol::metric_keys::{CONFIDENCE_MEAN, SYNC_INTERVAL_SECONDS};
    let doc = metrics_doc(
        &[
            (SYNC_INTERVAL_SECONDS, interval_s as f64),
            (FPS, fps),
            (CONFIDENCE_MEAN, confidence),
            (LATENCY_P50_US, 41_000.0 + fps * 100.0),
        ],
        model,
        version,
    );
    let mut b = tinylcm_protocol::package::PackageBuilder::new(id, device, created).unwrap();
    b.add(
        "metrics.json",
        tinylcm_protocol::package::FileKind::Metrics,
        doc.to_string().into_bytes(),
    )
    .unwrap();
    if let Some(events) = events {
        b.add(
            "drift-events.json",
            tinylcm_protocol::package::FileKind::DriftEvents,
            events.to_string().into_bytes(),
        )
        .unwrap();
        for (name, jpeg) in &INCIDENT_THUMBS[..2] {
            b.add(
                *name,
                tinylcm_protocol::package::FileKind::Sample,
                jpeg.to_vec(),
            )
            .unwrap();
        }
    }
    b.finish().unwrap()
}

/// Fails before this change: every device was "online" for 10 minutes after its last request
/// whatever its sync interval, and the Model column showed "—" although devices name their
/// model in every metrics file. Four devices in headless Chromium: one syncing hourly (ok),
/// one with an open drift incident (alert, with its model, the release it is assigned, frame
/// rate, confidence and the day's drift as bars), one silent for three of its 5 s intervals
/// (late) and one silent for more than ten of its 1 s intervals (offline); then an admin sets
/// a device's tags and notes on its page. The fleet, device and models pages' screenshots go
/// to `$SPHERE_LITE_SCREENSHOTS` when that is set (the guide's pictures).
#[test]
fn the_fleet_page_shows_each_devices_health_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let signer = tinylcm_protocol::release::SigningKey::generate().unwrap();
    let sphere = open_embedded(dir.path())
        .unwrap()
        .with_release_keys(vec![signer.public()]);
    let key = sphere.create_enrollment_key(10).unwrap();
    let operator = sphere.create_operator_token("alice").unwrap();
    let f = Fixture {
        server: TestServer::start(sphere),
        _dir: dir,
        key,
        operator,
        reader: String::new(),
        http: ureq::AgentBuilder::new().redirects(0).build(),
    };
    let now = tinylcm_protocol::time::now_unix_ms();
    let minute = 60_000;

    // Two devices that go quiet at once: 1 s and 5 s intervals.
    let silent_since = Instant::now();
    let (off, off_token) = f.enroll("shed-cam", "zero2w");
    f.upload(
        &off,
        &off_token,
        &health_package(&off, "o1", now, (1, 9.8, 0.9), ("shapes", "3"), None),
    );
    let (late, late_token) = f.enroll("dock-cam", "pi4");
    f.upload(
        &late,
        &late_token,
        &health_package(&late, "l1", now, (5, 24.0, 0.88), ("shapes", "3"), None),
    );
    // An hourly device, healthy, on the released model.
    let (yard, yard_token) = f.enroll("yard-cam", "pi4");
    for (i, (fps, conf)) in [(29.1, 0.95), (29.5, 0.93)].into_iter().enumerate() {
        f.upload(
            &yard,
            &yard_token,
            &health_package(
                &yard,
                &format!("y{i}"),
                now - (1 - i as u64) * 60 * minute,
                (3600, fps, conf),
                ("shapes", "3"),
                None,
            ),
        );
    }
    // A device on an older model with one open incident whose onsets span three hours.
    let (gate, gate_token) = f.enroll("gate-cam", "zero2w");
    let events = json!([
        drift::report(
            1,
            "page-hinkley-distance",
            now - 150 * minute,
            &[INCIDENT_THUMBS[0].0]
        ),
        drift::report(
            2,
            "ewma-confidence",
            now - 80 * minute,
            &[INCIDENT_THUMBS[1].0]
        ),
        drift::report(3, "knn-distance", now - minute, &[INCIDENT_THUMBS[1].0]),
    ]);
    for (i, (fps, conf)) in [(15.2, 0.83), (14.1, 0.74), (14.8, 0.71)]
        .into_iter()
        .enumerate()
    {
        f.upload(
            &gate,
            &gate_token,
            &health_package(
                &gate,
                &format!("g{i}"),
                now - (2 - i as u64) * 5 * minute,
                (5, fps, conf),
                ("shapes", "2"),
                (i == 2).then_some(&events),
            ),
        );
    }
    f.wait_events(&gate, 3);
    // Release 3 is rolled out to every device: gate-cam still runs 2.
    let model = release::model_bytes("3");
    let (status, body) = f.server.post_multipart(
        paths::MODELS,
        Some(&f.operator),
        &[
            (
                "release",
                None,
                &release::signed(&signer, "shapes", "3", &model),
            ),
            ("model", Some("m.tflite"), &model),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = f.server.post(
        &paths::rollout("shapes", "3"),
        Some(&f.operator),
        br#"{"group": "all"}"#,
    );
    assert_eq!(status, 200);
    // Every package processed (the figures come from the last one of each device).
    for (dev, n) in [(&off, 1), (&late, 1), (&yard, 2), (&gate, 3)] {
        let series = format!("/api/v2/devices/{dev}/metrics?key={FPS}");
        let start = Instant::now();
        while f.server.get(&series, Some(&f.operator)).1["points"]
            .as_array()
            .map_or(0, Vec::len)
            < n
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{dev} not processed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // shed-cam (1 s) is offline after 10 + 2 s of silence; dock-cam (5 s) late after
    // 10 + 5 s and offline only after 50 + 10 s.
    let quiet = Duration::from_millis(16_500);
    if let Some(rest) = quiet.checked_sub(silent_since.elapsed()) {
        std::thread::sleep(rest);
    }

    let driver = Driver::start();
    let base = f.server.url("");
    let shots = std::env::var_os("SPHERE_LITE_SCREENSHOTS").map(std::path::PathBuf::from);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::Locator;
        let wait = BROWSER_WAIT;
        let client = driver
            .logged_in(
                &format!("{base}/ui/fleet"),
                &f.operator,
                &["--window-size=1280,900", "--hide-scrollbars"],
            )
            .await;
        client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("table#devices"))
            .await
            .unwrap();
        let cell = |dev: &str, class: &str| {
            let selector = format!("tr.device[data-device=\"{dev}\"] td.{class}");
            let client = client.clone();
            async move {
                client
                    .find(Locator::Css(&selector))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        };
        let statuses = client
            .execute(
                "var o = {}; document.querySelectorAll('tr.device').forEach(function (r) { \
                 o[r.getAttribute('data-device')] = r.getAttribute('data-status'); }); return o;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            statuses,
            json!({ &yard: "ok", &gate: "alert", &late: "late", &off: "offline" }),
            "{}",
            client.source().await.unwrap_or_default()
        );
        let summary = client
            .find(Locator::Css(".fleet-summary"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for word in ["1 ok", "1 late", "1 alert", "1 offline"] {
            assert!(summary.contains(word), "{summary}");
        }
        // Each judged against its own interval, with the reason.
        let yard_sync = cell(&yard, "last-sync").await;
        assert!(yard_sync.contains("every 60 min"), "{yard_sync}");
        let late_status = cell(&late, "status").await;
        assert!(late_status.contains("every 5 s expected"), "{late_status}");
        let gate_status = cell(&gate, "status").await;
        assert!(
            gate_status.contains("1 open drift incident"),
            "{gate_status}"
        );
        // The model each runs (not "—"), the release it should run, its figures.
        assert_eq!(cell(&yard, "model").await, "shapes 3");
        assert_eq!(cell(&gate, "model").await, "shapes 2\nassigned shapes 3");
        assert_eq!(cell(&gate, "fps").await, "14.8");
        assert_eq!(cell(&gate, "confidence").await, "0.71");
        assert_eq!(cell(&gate, "incidents").await, "1");
        // The drift trend: one bar per hour with events (150, 80 and 1 min ago: three hours).
        let bars = client
            .find_all(Locator::Css(&format!(
                "tr.device[data-device=\"{gate}\"] svg.spark rect"
            )))
            .await
            .unwrap();
        assert_eq!(bars.len(), 3);
        assert_eq!(cell(&gate, "trend .trend-total").await, "3");
        assert_eq!(cell(&yard, "trend .trend-total").await, "0");
        if let Some(dir) = &shots {
            std::fs::create_dir_all(dir).unwrap();
            let png = client
                .find(Locator::Css("main"))
                .await
                .unwrap()
                .screenshot()
                .await
                .unwrap();
            std::fs::write(dir.join("fleet.png"), png).unwrap();
        }

        // The device page: the same badge and model; an admin sets tags and notes.
        client
            .find(Locator::Css(&format!(
                "tr.device[data-device=\"{gate}\"] a[href=\"/ui/devices/{gate}\"]"
            )))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let status = client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("dd.status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(status.starts_with("alert"), "{status}");
        client
            .find(Locator::Css(".device-settings summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .find(Locator::Css("#edit-tags"))
            .await
            .unwrap()
            .send_keys("outdoor, north-gate")
            .await
            .unwrap();
        client
            .find(Locator::Css("#edit-notes"))
            .await
            .unwrap()
            .send_keys("Pole 3 by the gate; ask Sam for the key.")
            .await
            .unwrap();
        client
            .find(Locator::Css("form.device-edit button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let tags = client
            .wait()
            .at_most(wait)
            .for_element(Locator::Css("dd.tags .tag"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(tags, "outdoor");
        let notes = client
            .find(Locator::Css("dd.notes"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(notes, "Pole 3 by the gate; ask Sam for the key.");
        assert_eq!(
            client
                .find(Locator::Css("dd.model"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "shapes 2"
        );
        if let Some(dir) = &shots {
            let png = client
                .find(Locator::Css("main"))
                .await
                .unwrap()
                .screenshot()
                .await
                .unwrap();
            std::fs::write(dir.join("device.png"), png).unwrap();
            client.goto(&format!("{base}/ui/models")).await.unwrap();
            let png = client
                .wait()
                .at_most(wait)
                .for_element(Locator::Css("main"))
                .await
                .unwrap()
                .screenshot()
                .await
                .unwrap();
            std::fs::write(dir.join("models.png"), png).unwrap();
        }
        client.close().await.unwrap();
    });
    drop(driver);
    let (status, settings) = f.server.get(
        &format!("/api/v2/devices/{gate}/settings"),
        Some(&f.operator),
    );
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["tags"], json!(["outdoor", "north-gate"]));
}

/// Fails before this change: `/favicon.ico` was a 404 on every page load. The icon is served
/// to anyone (it is the same for every server), as an SVG the CSP allows.
#[test]
fn the_favicon_is_served() {
    let f = Fixture::new();
    for path in ["/favicon.ico", "/ui/static/favicon.svg"] {
        let r = f.page(path, None);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("image/svg+xml"), "{path}");
        assert!(r.body.starts_with("<svg"), "{path}");
    }
    let session = f.login();
    let page = f.page("/ui/fleet", Some(&session)).body;
    assert!(
        page.contains(r#"<link rel="icon" href="/ui/static/favicon.svg""#),
        "{page}"
    );
}

/// Fails before this change: the device page listed packages by random package id, so the
/// newest package could be on the second page. Now newest first, with the older ones behind
/// the cursor, none twice and none missed.
#[test]
fn a_devices_packages_are_listed_newest_first_across_pages() {
    let f = Fixture::new();
    let (dev, token) = f.enroll("pi", "zero2w");
    // 52 packages whose ids sort unlike their upload order.
    let ids: Vec<String> = (0..52u64)
        .map(|i| format!("pkg-{:02}", (i * 31) % 52))
        .collect();
    for id in &ids {
        let p = tinylcm_protocol::package::PackageBuilder::new(id, &dev, 1_764_147_600_000)
            .unwrap()
            .finish()
            .unwrap();
        f.upload(&dev, &token, &p);
        std::thread::sleep(Duration::from_millis(3));
    }
    let session = f.login();
    let rows = |body: &str| -> Vec<String> {
        let table = body.split("<table id=\"packages\">").nth(1).unwrap_or("");
        table
            .split("<tr><td><code>")
            .skip(1)
            .map(|r| r.split('<').next().unwrap().to_owned())
            .collect()
    };
    let first = f.page(&format!("/ui/devices/{dev}"), Some(&session)).body;
    let next = first
        .split("rel=\"next\"")
        .next()
        .and_then(|b| b.rsplit("href=\"").next())
        .map(|h| h.trim_end_matches("\" ").replace("&amp;", "&"))
        .unwrap();
    assert!(next.contains("?after="), "{next}");
    let second = f.page(&next, Some(&session)).body;
    assert!(!second.contains("rel=\"next\""), "{second}");
    let seen: Vec<String> = rows(&first).into_iter().chain(rows(&second)).collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(rows(&first).len(), 50);
    assert_eq!(seen, newest_first);
    assert!(first.contains("Newest accepted first"), "{first}");
}
