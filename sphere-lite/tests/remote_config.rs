//! Remote configuration against a real server, on every backend: an operator sets layers for
//! the fleet, a group and a device; each device concerned pulls its merged configuration as a
//! feedback item exactly once per change, acknowledges it, and the server shows it as
//! applied; refusals for unsafe sections, bad TOML, strangers and device tokens.

use serde_json::{Value, json};
use tinylcm_protocol::api::{DeviceConfigState, FeedbackPage, FeedbackVerdict};
use tinylcm_protocol::paths;

#[path = "support/backend.rs"]
mod backend;
#[path = "support/server.rs"]
mod server;

use backend::each_backend;
use server::TestServer;

fn config_body(toml: &str) -> Vec<u8> {
    json!({ "toml": toml }).to_string().into_bytes()
}

/// The configuration items in the device's unacknowledged feedback: (item id, revision, toml).
fn pending_configs(server: &TestServer, id: &str, token: &str) -> Vec<(u64, String, String)> {
    let (status, body) = server.get(&format!("{}?after=0", paths::feedback(id)), Some(token));
    assert_eq!(status, 200, "{body}");
    let page: FeedbackPage = serde_json::from_value(body).unwrap();
    page.items
        .into_iter()
        .filter_map(|item| match item.verdict {
            FeedbackVerdict::Config { revision, toml } => Some((item.id, revision, toml)),
            _ => None,
        })
        .collect()
}

fn ack(server: &TestServer, id: &str, token: &str, up_to: u64) {
    let (status, body) = server.post(
        &paths::feedback_ack(id),
        Some(token),
        json!({ "up_to": up_to }).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
}

fn state(server: &TestServer, op: &str, id: &str) -> DeviceConfigState {
    let (status, body) = server.get(&paths::device_config(id), Some(op));
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

fn lambda(toml: &str) -> Option<f64> {
    let t: toml::Table = toml.parse().unwrap();
    t.get("drift")?
        .get("page-hinkley-distance")?
        .get("lambda")?
        .as_float()
}

#[test]
fn configuration_reaches_the_devices_it_concerns_once_and_is_acknowledged() {
    each_backend(
        "configuration_reaches_the_devices_it_concerns_once_and_is_acknowledged",
        |backend| {
            let sphere = backend.open();
            let op = sphere.create_operator_token("cfg").unwrap();
            let server = TestServer::start(sphere);
            let ids = ["cam-a", "cam-b", "cam-c"];
            let tokens: Vec<String> = ids.iter().map(|id| server.add_device(&op, id)).collect();
            let group = |id: &str, g: Value| {
                let (status, body) = server.patch(
                    &format!("/api/v2/devices/{id}/settings"),
                    Some(&op),
                    json!({ "group": g }).to_string().as_bytes(),
                );
                assert_eq!(status, 200, "{body}");
            };
            group("cam-a", json!("barn"));
            group("cam-b", json!("barn"));

            // Nothing configured: nothing delivered, and that counts as in sync.
            assert!(pending_configs(&server, "cam-a", &tokens[0]).is_empty());
            assert!(state(&server, &op, "cam-a").acknowledged);

            // Fleet-wide: every device gets it.
            let fleet = "[drift.page-hinkley-distance]\nlambda = 50.0\ndelta = 0.005\n";
            let (status, body) =
                server.put(&paths::scope_config("all"), Some(&op), &config_body(fleet));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["devices_updated"], 3);
            assert_eq!(body["layer"]["by"], "cfg");
            for (id, token) in ids.iter().zip(&tokens) {
                let items = pending_configs(&server, id, token);
                assert_eq!(items.len(), 1, "{id}: {items:?}");
                assert_eq!(lambda(&items[0].2), Some(50.0));
            }

            // The group layer overrides for its members only; the untouched key stays.
            let barn = "[drift.page-hinkley-distance]\nlambda = 80.0\n";
            let (status, body) =
                server.put(&paths::scope_config("barn"), Some(&op), &config_body(barn));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["devices_updated"], 2);
            let a = pending_configs(&server, "cam-a", &tokens[0]);
            assert_eq!(a.len(), 2);
            let (last_id, revision, toml) = a.last().unwrap().clone();
            assert_eq!(lambda(&toml), Some(80.0));
            assert!(toml.contains("delta = 0.005"), "{toml}");
            assert_eq!(pending_configs(&server, "cam-c", &tokens[2]).len(), 1);

            // Not acknowledged yet; then the device applies and acknowledges.
            let s = state(&server, &op, "cam-a");
            assert_eq!(s.revision, revision);
            assert_eq!(s.layers.len(), 2);
            assert!(!s.acknowledged);
            ack(&server, "cam-a", &tokens[0], last_id);
            let s = state(&server, &op, "cam-a");
            assert!(s.acknowledged, "{s:?}");
            assert!(pending_configs(&server, "cam-a", &tokens[0]).is_empty());

            // Setting the same layer again changes no revision: nothing new is queued.
            let (_, body) = server.put(&paths::scope_config("barn"), Some(&op), &config_body(barn));
            assert_eq!(body["devices_updated"], 0);
            assert!(pending_configs(&server, "cam-a", &tokens[0]).is_empty());

            // The device's own layer wins over its group's.
            let (status, body) = server.put(
                &paths::device_config("cam-a"),
                Some(&op),
                &config_body("[drift.page-hinkley-distance]\nlambda = 120.0\n[knn]\nk = 7\n"),
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["acknowledged"], false);
            let a = pending_configs(&server, "cam-a", &tokens[0]);
            assert_eq!(a.len(), 1);
            assert_eq!(lambda(&a[0].2), Some(120.0));

            // Leaving the group brings the device back to the fleet-wide value (and its own).
            group("cam-b", Value::Null);
            let b = pending_configs(&server, "cam-b", &tokens[1]);
            assert_eq!(lambda(&b.last().unwrap().2), Some(50.0));

            // Clearing every layer sends the empty configuration (back to the local file).
            for scope in ["all", "barn"] {
                let (status, _) =
                    server.put(&paths::scope_config(scope), Some(&op), &config_body(""));
                assert_eq!(status, 200);
            }
            let c = pending_configs(&server, "cam-c", &tokens[2]);
            assert_eq!(c.last().unwrap().2, "");

            // A device added later gets the configuration in force.
            let (status, _) =
                server.put(&paths::scope_config("all"), Some(&op), &config_body(fleet));
            assert_eq!(status, 200);
            let late = server.add_device(&op, "cam-late");
            let items = pending_configs(&server, "cam-late", &late);
            assert_eq!(items.len(), 1);
            assert_eq!(lambda(&items[0].2), Some(50.0));
        },
    );
}

#[test]
fn unsafe_or_unauthorised_configuration_is_refused_and_changes_nothing() {
    each_backend(
        "unsafe_or_unauthorised_configuration_is_refused_and_changes_nothing",
        |backend| {
            let sphere = backend.open();
            let op = sphere.create_operator_token("cfg").unwrap();
            let server = TestServer::start(sphere);
            let token = server.add_device(&op, "cam-a");

            for (path, toml, status) in [
                // Sections a typo in which would take the device off the air.
                (
                    paths::scope_config("all"),
                    "[model]\npath = \"/tmp/x\"\n",
                    400,
                ),
                (
                    paths::device_config("cam-a"),
                    "[source]\nkind = \"v4l2\"\n",
                    400,
                ),
                (paths::scope_config("all"), "[drift", 400),
                (paths::scope_config("all"), "drift = 1", 400),
                (
                    paths::scope_config("all"),
                    &format!("[knn]\n#{}\n", "x".repeat(5000)),
                    400,
                ),
                (paths::scope_config("../etc"), "[knn]\nk = 3\n", 404),
                (paths::scope_config("device"), "[knn]\nk = 3\n", 400),
                (paths::device_config("nobody"), "[knn]\nk = 3\n", 404),
            ] {
                let (got, body) = server.put(&path, Some(&op), &config_body(toml));
                assert_eq!(got, status, "{path}: {body}");
            }
            let (got, _) = server.put(&paths::scope_config("all"), Some(&op), b"not json");
            assert_eq!(got, 400);
            // No token, or a device token: refused before anything is read.
            let body = config_body("[knn]\nk = 3\n");
            assert_eq!(server.put(&paths::scope_config("all"), None, &body).0, 401);
            assert_eq!(
                server
                    .put(&paths::scope_config("all"), Some(&token), &body)
                    .0,
                403
            );
            assert_eq!(
                server.get(&paths::device_config("cam-a"), Some(&token)).0,
                403
            );

            // Nothing was stored or queued.
            let (status, layers) = server.get(paths::CONFIG, Some(&op));
            assert_eq!(status, 200);
            assert_eq!(layers, json!([]));
            assert!(pending_configs(&server, "cam-a", &token).is_empty());
            assert!(state(&server, &op, "cam-a").layers.is_empty());
        },
    );
}

/// Fails before this change: only sections were checked, so a path inside `[quarantine]` (the
/// fragment that crash-looped every device it reached) and a 4 GiB thumbnail budget were
/// stored and queued to the whole fleet.
#[test]
fn keys_off_the_allow_list_are_refused_naming_the_key() {
    each_backend(
        "keys_off_the_allow_list_are_refused_naming_the_key",
        |backend| {
            let sphere = backend.open();
            let op = sphere.create_operator_token("cfg").unwrap();
            let server = TestServer::start(sphere);
            let token = server.add_device(&op, "cam-a");
            for (path, toml, key) in [
                (
                    paths::scope_config("all"),
                    "[quarantine]\nthumbnail-dir = \"/data/elsewhere\"\n",
                    "quarantine.thumbnail-dir",
                ),
                (
                    paths::device_config("cam-a"),
                    "[quarantine]\nmax-thumbnail-bytes = 4294967296\n",
                    "quarantine.max-thumbnail-bytes",
                ),
                (
                    paths::scope_config("all"),
                    "[drift.embedding]\nmax-dim = 1\n",
                    "drift.embedding.max-dim",
                ),
            ] {
                let (status, body) = server.put(&path, Some(&op), &config_body(toml));
                assert_eq!(status, 400, "{path}: {body}");
                let error = body["error"].as_str().unwrap_or_default();
                assert!(error.contains(&format!("`{key}`")), "{body}");
                assert!(body["fix"].is_string(), "{body}");
            }
            assert!(pending_configs(&server, "cam-a", &token).is_empty());
            let (_, layers) = server.get(paths::CONFIG, Some(&op));
            assert_eq!(layers, json!([]));
        },
    );
}

fn refuse(
    server: &TestServer,
    id: &str,
    token: &str,
    revision: &str,
    reason: &str,
) -> (u16, Value) {
    server.post(
        &paths::config_refusal(id),
        Some(token),
        json!({ "revision": revision, "reason": reason })
            .to_string()
            .as_bytes(),
    )
}

/// Fails before this change: the server had no way to hear of a refusal, showed the
/// configuration as applied, and would queue the same revision again after a round trip
/// through another one.
#[test]
fn a_refused_revision_is_shown_and_never_delivered_to_that_device_again() {
    each_backend(
        "a_refused_revision_is_shown_and_never_delivered_to_that_device_again",
        |backend| {
            let sphere = backend.open();
            let op = sphere.create_operator_token("cfg").unwrap();
            let server = TestServer::start(sphere);
            let token = server.add_device(&op, "cam-a");
            let other = server.add_device(&op, "cam-b");
            let put_all = |toml: &str| {
                let (status, body) =
                    server.put(&paths::scope_config("all"), Some(&op), &config_body(toml));
                assert_eq!(status, 200, "{body}");
                body["devices_updated"].as_u64().unwrap()
            };

            let seven = "[knn]\nk = 7\n";
            assert_eq!(put_all(seven), 2);
            let items = pending_configs(&server, "cam-a", &token);
            let (item, revision, _) = items.last().unwrap().clone();
            ack(&server, "cam-a", &token, item);
            let reason = "the next generation failed to start: cannot create /x\nsecond line";
            let (status, body) = refuse(&server, "cam-a", &token, &revision, reason);
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["revision"], revision.as_str());
            // Repeats (a device retrying after a lost answer) change nothing.
            let (status, again) = refuse(&server, "cam-a", &token, &revision, reason);
            assert_eq!((status, &again), (200, &body));

            let s = state(&server, &op, "cam-a");
            let refused = s.refused.expect("the state says refused");
            assert_eq!(refused.revision, revision);
            assert_eq!(
                refused.reason,
                "the next generation failed to start: cannot create /x second line"
            );
            assert!(state(&server, &op, "cam-b").refused.is_none());

            // Another revision goes out (and is no longer shown as refused); coming back to the
            // refused one reaches only the device that did not refuse it.
            assert_eq!(put_all("[knn]\nk = 9\n"), 2);
            assert!(state(&server, &op, "cam-a").refused.is_none());
            let before = pending_configs(&server, "cam-a", &token).len();
            assert_eq!(put_all(seven), 1);
            assert_eq!(pending_configs(&server, "cam-a", &token).len(), before);
            assert_eq!(
                pending_configs(&server, "cam-b", &other).last().unwrap().1,
                revision
            );
            let s = state(&server, &op, "cam-a");
            assert_eq!(s.refused.map(|r| r.revision), Some(revision.clone()));

            // Bad reports, and reports by anyone but the device itself.
            let long = "x".repeat(tinylcm_protocol::api::MAX_REFUSAL_REASON_BYTES + 1);
            for (rev, why) in [
                ("not-hex", "r"),
                ("00AA00AA00AA00AA", "r"),
                (&revision[..], &long[..]),
            ] {
                let (status, body) = refuse(&server, "cam-a", &token, rev, why);
                assert_eq!(status, 400, "{rev}: {body}");
            }
            assert_eq!(refuse(&server, "cam-a", &other, &revision, "r").0, 403);
            assert_eq!(refuse(&server, "cam-a", &op, &revision, "r").0, 403);
            let (status, _) = server.post(&paths::config_refusal("cam-a"), None, b"{}");
            assert_eq!(status, 401);
        },
    );
}
