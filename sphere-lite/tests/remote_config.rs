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
