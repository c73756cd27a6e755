//! Model releases and fleet operations against a real server, on every backend: publish a
//! signed release, roll it out (whole group, other group, canary), devices learn and download
//! what to run; refusals for unsigned, altered and conflicting releases; token rotation and
//! decommissioning.

use serde_json::{Value, json};
use tinylcm_protocol::api::ModelAssignment;
use tinylcm_protocol::paths;
use tinylcm_protocol::release::SigningKey;

#[path = "support/backend.rs"]
mod backend;
#[path = "support/release.rs"]
mod release;
#[path = "support/server.rs"]
mod server;

use backend::each_backend;
use release::{model_bytes, signed};
use server::TestServer;

fn publish(server: &TestServer, op: &str, release: &[u8], model: &[u8]) -> (u16, Value) {
    server.post_multipart(
        paths::MODELS,
        Some(op),
        &[
            ("release", None, release),
            ("model", Some("model.tflite"), model),
        ],
    )
}

fn assignment(server: &TestServer, id: &str, token: &str) -> Option<ModelAssignment> {
    let response = ureq::get(&server.url(&paths::model(id)))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    match response.status() {
        204 => None,
        200 => Some(serde_json::from_str(&response.into_string().unwrap()).unwrap()),
        other => panic!("{other}"),
    }
}

/// Download what `a` points at (a server path with the token, or a presigned URL without).
fn download(
    server: &TestServer,
    token: &str,
    a: &ModelAssignment,
    range: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut req = if a.download_url.starts_with('/') {
        ureq::get(&server.url(&a.download_url)).set("Authorization", &format!("Bearer {token}"))
    } else {
        ureq::get(&a.download_url)
    };
    if let Some(r) = range {
        req = req.set("Range", r);
    }
    let response = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).unwrap();
    (status, bytes)
}

#[test]
fn releases_are_verified_rolled_out_and_downloaded() {
    each_backend(
        "releases_are_verified_rolled_out_and_downloaded",
        |backend| {
            let key = SigningKey::generate().unwrap();
            let stranger = SigningKey::generate().unwrap();
            let sphere = backend.open().with_release_keys(vec![key.public()]);
            let op = sphere.create_operator_token("rel").unwrap();
            let server = TestServer::start(sphere);
            let ids: Vec<String> = (0..10).map(|i| format!("pi-{i}")).collect();
            let tokens: Vec<String> = ids.iter().map(|id| server.add_device(&op, id)).collect();

            // Nothing assigned yet.
            assert!(assignment(&server, &ids[0], &tokens[0]).is_none());

            let v1 = model_bytes("1");
            let release1 = signed(&key, "shapes", "1", &v1);
            let (status, body) = publish(&server, &op, &release1, &v1);
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["sha256"].as_str().unwrap().len(), 64);
            // Publishing the same release again is not an error.
            assert_eq!(publish(&server, &op, &release1, &v1).0, 201);

            // Refused: a file that is not the signed one; an untrusted signer; another file under
            // an existing version; a device token.
            let mut altered = v1.clone();
            altered[100] ^= 1;
            let (status, body) = publish(&server, &op, &release1, &altered);
            assert_eq!(status, 400, "{body}");
            let (status, body) = publish(&server, &op, &signed(&stranger, "shapes", "9", &v1), &v1);
            assert_eq!(status, 400, "{body}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("not among the trusted"),
                "{body}"
            );
            let other = model_bytes("x");
            let (status, _) = publish(&server, &op, &signed(&key, "shapes", "1", &other), &other);
            assert_eq!(status, 409);
            assert_eq!(publish(&server, &tokens[0], &release1, &v1).0, 403);

            // Roll out v1 to everyone; each device learns it and downloads the verified file.
            let (status, body) = server.post(&paths::rollout("shapes", "1"), Some(&op), b"{}");
            assert_eq!(status, 200, "{body}");
            let a = assignment(&server, &ids[0], &tokens[0]).unwrap();
            assert_eq!((a.name.as_str(), a.version.as_str()), ("shapes", "1"));
            let manifest = a.release.verify(&[key.public()]).unwrap();
            let (status, file) = download(&server, &tokens[0], &a, None);
            assert_eq!(status, 200);
            manifest.check_model(&file).unwrap();
            // A download resumes where it stopped.
            let (status, tail) = download(&server, &tokens[0], &a, Some("bytes=4000-"));
            assert_eq!(status, 206);
            assert_eq!(tail, v1[4000..]);

            // v2 to group "lab" only; then a 50 % canary of v2 for everyone else.
            let v2 = model_bytes("2");
            assert_eq!(
                publish(&server, &op, &signed(&key, "shapes", "2", &v2), &v2).0,
                201
            );
            let (status, body) = server.patch(
                &format!("/api/v2/devices/{}/settings", ids[1]),
                Some(&op),
                br#"{"group": "lab", "tags": ["bench"]}"#,
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["group"], "lab");
            let (status, _) = server.post(
                &paths::rollout("shapes", "2"),
                Some(&op),
                br#"{"group": "lab"}"#,
            );
            assert_eq!(status, 200);
            assert_eq!(
                assignment(&server, &ids[1], &tokens[1]).unwrap().version,
                "2"
            );
            assert_eq!(
                assignment(&server, &ids[0], &tokens[0]).unwrap().version,
                "1"
            );

            let (status, body) = server.post(
                &paths::rollout("shapes", "2"),
                Some(&op),
                br#"{"percent": 50}"#,
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["previous"], json!(["shapes", "1"]));
            let versions: Vec<String> = ids
                .iter()
                .zip(&tokens)
                .filter(|(id, _)| *id != &ids[1])
                .map(|(id, t)| assignment(&server, id, t).unwrap().version)
                .collect();
            assert!(versions.iter().any(|v| v == "2"), "{versions:?}");
            assert!(versions.iter().any(|v| v == "1"), "{versions:?}");

            // Bad rollouts.
            assert_eq!(
                server
                    .post(&paths::rollout("shapes", "7"), Some(&op), b"{}")
                    .0,
                404
            );
            assert_eq!(
                server
                    .post(
                        &paths::rollout("shapes", "2"),
                        Some(&op),
                        br#"{"percent": 0}"#
                    )
                    .0,
                400
            );
            let (status, list) = server.get(paths::MODELS, Some(&op));
            assert_eq!(status, 200);
            assert_eq!(list["releases"].as_array().unwrap().len(), 2);
            assert_eq!(list["rollouts"].as_array().unwrap().len(), 2);
            // Releases signed without an epoch or a compatible show epoch 0, not bound.
            for r in list["releases"].as_array().unwrap() {
                assert_eq!(r["epoch"], 0, "{r}");
                assert!(r.get("compatible").is_none(), "{r}");
            }
        },
    );
}

#[test]
fn operators_rotate_tokens_and_decommission_devices() {
    each_backend(
        "operators_rotate_tokens_and_decommission_devices",
        |backend| {
            let sphere = backend.open();
            let op = sphere.create_operator_token("fleet").unwrap();
            let server = TestServer::start(sphere);
            let old = server.add_device(&op, "cam-1");
            let feedback = paths::feedback("cam-1");
            assert_eq!(server.get(&feedback, Some(&old)).0, 200);

            let (status, body) = server.post("/api/v2/devices/cam-1/token", Some(&op), b"");
            assert_eq!(status, 200, "{body}");
            let new = body["token"].as_str().unwrap().to_owned();
            assert_eq!(server.get(&feedback, Some(&old)).0, 401);
            assert_eq!(server.get(&feedback, Some(&new)).0, 200);

            // Settings: validated; unknown devices are 404; devices cannot change them.
            let settings = "/api/v2/devices/cam-1/settings";
            assert_eq!(
                server.patch(settings, Some(&op), br#"{"group": "all"}"#).0,
                400
            );
            assert_eq!(
                server
                    .patch(
                        settings,
                        Some(&op),
                        br#"{"location": {"latitude": 91, "longitude": 0}}"#
                    )
                    .0,
                400
            );
            assert_eq!(
                server.patch(settings, Some(&new), br#"{"name": "x"}"#).0,
                403
            );
            assert_eq!(
                server
                    .patch(
                        "/api/v2/devices/nobody/settings",
                        Some(&op),
                        br#"{"name": "x"}"#
                    )
                    .0,
                404
            );
            let (status, body) = server.patch(
                settings,
                Some(&op),
                br#"{"name": "hall", "location": {"latitude": 48.1, "longitude": 11.6}}"#,
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["name"], "hall");

            let (status, body) = server.post("/api/v2/devices/cam-1/decommission", Some(&op), b"");
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["decommissioned"], true);
            assert_eq!(server.get(&feedback, Some(&new)).0, 401);
            let (_, body) = server.get(settings, Some(&op));
            assert_eq!(body["decommissioned"], true);
            assert_eq!(body["name"], "hall");
            assert_eq!(
                server.post("/api/v2/devices/cam-1/token", Some(&op), b"").0,
                409
            );
        },
    );
}

#[test]
fn a_server_without_release_keys_refuses_releases_and_says_why() {
    let backend = backend::Backend::embedded();
    let sphere = backend.open();
    let op = sphere.create_operator_token("rel").unwrap();
    let server = TestServer::start(sphere);
    let key = SigningKey::generate().unwrap();
    let model = model_bytes("1");
    let (status, body) = publish(&server, &op, &signed(&key, "m", "1", &model), &model);
    assert_eq!(status, 400);
    assert!(
        body["fix"].as_str().unwrap().contains("--release-keys"),
        "{body}"
    );
}

/// Publishing runs the flatbuffer walk a device runs before LiteRT sees a model: a correctly
/// signed release of a truncated model is refused with a clear error and nothing is stored.
/// Fails before this change: it was published (size and SHA-256 matched the signature).
#[test]
fn a_release_of_a_model_the_walker_rejects_is_not_published() {
    let backend = backend::Backend::embedded();
    let key = SigningKey::generate().unwrap();
    let sphere = backend.open().with_release_keys(vec![key.public()]);
    let op = sphere.create_operator_token("rel").unwrap();
    let server = TestServer::start(sphere);
    let full = model_bytes("1");
    let cut = &full[..2000];
    let (status, body) = publish(&server, &op, &signed(&key, "cut", "1", cut), cut);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a well-formed TFLite file"),
        "{body}"
    );
    // Not stored: the same name and version with a good model is a first publish, not a 409.
    let (status, body) = publish(&server, &op, &signed(&key, "cut", "1", &full), &full);
    assert_eq!(status, 201, "{body}");
}

/// The status and body of a device's download of `name`/`version` from this server's own
/// route (whatever URL the assignment names), with an optional `Range`.
fn fetch(
    server: &TestServer,
    device: &str,
    token: &str,
    name: &str,
    version: &str,
    range: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut req = ureq::get(&server.url(&paths::model_file(device, name, version)))
        .set("Authorization", &format!("Bearer {token}"));
    if let Some(r) = range {
        req = req.set("Range", r);
    }
    let response = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).unwrap();
    (status, bytes)
}

/// A device downloads only a release it is assigned now or was served before while assigned
/// (a resumed download, a rollback); any other published release answers 404 exactly like a
/// release that does not exist, so its existence is not revealed.
/// Fails before this change: any enrolled device downloaded any published release.
#[test]
fn a_device_downloads_only_releases_it_is_or_was_assigned() {
    each_backend(
        "a_device_downloads_only_releases_it_is_or_was_assigned",
        |backend| {
            let key = SigningKey::generate().unwrap();
            let sphere = backend.open().with_release_keys(vec![key.public()]);
            let op = sphere.create_operator_token("rel").unwrap();
            let server = TestServer::start(sphere);
            let lab = server.add_device(&op, "lab-1");
            let late = server.add_device(&op, "lab-2");
            let outsider = server.add_device(&op, "field-1");
            for id in ["lab-1", "lab-2"] {
                let (status, body) = server.patch(
                    &format!("/api/v2/devices/{id}/settings"),
                    Some(&op),
                    br#"{"group": "lab"}"#,
                );
                assert_eq!(status, 200, "{body}");
            }
            let (v1, v2) = (model_bytes("1"), model_bytes("2"));
            for (v, m) in [("1", &v1), ("2", &v2)] {
                assert_eq!(publish(&server, &op, &signed(&key, "net", v, m), m).0, 201);
            }
            let missing = fetch(&server, "field-1", &outsider, "net", "9", None);
            assert_eq!(missing.0, 404);

            // Nothing rolled out: published releases are nobody's.
            assert_eq!(fetch(&server, "lab-1", &lab, "net", "1", None).0, 404);

            // v1 for group lab: its device downloads it; a device of no group does not, and
            // its 404 looks like the one for a release that does not exist.
            let (status, _) = server.post(
                &paths::rollout("net", "1"),
                Some(&op),
                br#"{"group": "lab"}"#,
            );
            assert_eq!(status, 200);
            assert_eq!(
                fetch(&server, "lab-1", &lab, "net", "1", None),
                (200, v1.clone())
            );
            let refused = fetch(&server, "field-1", &outsider, "net", "1", None);
            assert_eq!(refused.0, 404);
            assert_eq!(
                String::from_utf8_lossy(&refused.1).replace("net 1", "net 9"),
                String::from_utf8_lossy(&missing.1)
            );

            // v2 replaces it: lab-1 may still fetch v1 (it was served it; a rollback or a
            // resumed download), lab-2 never was and may not; nobody outside gets v2.
            let (status, _) = server.post(
                &paths::rollout("net", "2"),
                Some(&op),
                br#"{"group": "lab"}"#,
            );
            assert_eq!(status, 200);
            assert_eq!(fetch(&server, "lab-1", &lab, "net", "2", None).0, 200);
            assert_eq!(
                fetch(&server, "lab-1", &lab, "net", "1", Some("bytes=10-19")),
                (206, v1[10..20].to_vec())
            );
            assert_eq!(fetch(&server, "lab-2", &late, "net", "1", None).0, 404);
            assert_eq!(fetch(&server, "lab-2", &late, "net", "2", None).0, 200);
            assert_eq!(
                fetch(&server, "field-1", &outsider, "net", "2", None).0,
                404
            );
        },
    );
}

/// A large model is streamed from the blob store with exact byte ranges: a range spanning
/// many of the server's read chunks, an open-ended tail, the last byte, and a range past the
/// end (416 with the size).
/// Passes before this change too (ranges were cut from the file held in memory); it guards
/// the streamed path that replaced it.
#[test]
fn a_range_request_on_a_large_model_returns_exactly_the_bytes_asked() {
    each_backend(
        "a_range_request_on_a_large_model_returns_exactly_the_bytes_asked",
        |backend| {
            let key = SigningKey::generate().unwrap();
            let sphere = backend.open().with_release_keys(vec![key.public()]);
            let op = sphere.create_operator_token("rel").unwrap();
            let server = TestServer::start(sphere);
            let token = server.add_device(&op, "big-1");
            let mut model = model_bytes("1");
            model.extend((0..24u32 << 20).map(|i| (i % 253) as u8));
            let len = model.len();
            assert_eq!(
                publish(&server, &op, &signed(&key, "large", "1", &model), &model).0,
                201
            );
            let (status, _) = server.post(&paths::rollout("large", "1"), Some(&op), b"{}");
            assert_eq!(status, 200);

            let (status, whole) = fetch(&server, "big-1", &token, "large", "1", None);
            assert_eq!(status, 200);
            assert!(whole == model, "the whole file, byte for byte");
            let (status, part) = fetch(
                &server,
                "big-1",
                &token,
                "large",
                "1",
                Some("bytes=1000001-9000000"),
            );
            assert_eq!(status, 206);
            assert!(
                part == model[1_000_001..=9_000_000],
                "exactly bytes 1000001..=9000000"
            );
            let tail = format!("bytes={}-", len - 70_000);
            let (status, part) = fetch(&server, "big-1", &token, "large", "1", Some(&tail));
            assert_eq!(status, 206);
            assert!(part == model[len - 70_000..]);
            let last = format!("bytes={}-{}", len - 1, len + 5);
            assert_eq!(
                fetch(&server, "big-1", &token, "large", "1", Some(&last)),
                (206, vec![model[len - 1]])
            );
            let past = format!("bytes={len}-");
            let response = ureq::get(&server.url(&paths::model_file("big-1", "large", "1")))
                .set("Authorization", &format!("Bearer {token}"))
                .set("Range", &past)
                .call();
            let Err(ureq::Error::Status(416, r)) = response else {
                panic!("expected 416");
            };
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes */{len}").as_str())
            );
        },
    );
}

/// The `<tr>` of `device` on the models page `html` (its progress row).
fn progress_row<'a>(html: &'a str, device: &str) -> &'a str {
    let start = html
        .find(&format!("data-device=\"{device}\""))
        .unwrap_or_else(|| panic!("no progress row of {device}:\n{html}"));
    let row = &html[start..];
    &row[..row.find("</tr>").unwrap_or(row.len())]
}

/// Fails before this change: the rollout page inferred a refusal from the counter
/// `sync.models_refused` alone (no reason, and reset by a restart). Three devices are assigned
/// release `shapes 1` and each sends a metrics package as its runtime writes it: one names the
/// release it refused with the reason's kind and message, and the page shows `refused`, the
/// kind and the message; one from an older runtime only counts a refusal, and is still shown
/// refused (without a reason) from the counter; one says it refuses nothing (`null`) although
/// its counter grew (an earlier release), and is not shown refused: its own word wins.
#[test]
fn the_rollout_progress_shows_the_release_a_device_refused_and_why() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tinylcm_protocol::device_json::metrics::{MODEL_MEMBER, RunningModel};
    use tinylcm_protocol::device_json::refusal::{
        REFUSED_RELEASE_MEMBER, RefusalKind, ReleaseRefusal,
    };
    use tinylcm_protocol::metric_keys::MODELS_REFUSED;
    use tinylcm_protocol::package::{FileKind, PackageBuilder};

    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let sphere = Arc::new(
        sphere_lite::server::open_embedded(&dir.path().join("data"))
            .unwrap()
            .with_release_keys(vec![key.public()]),
    );
    let op = sphere.create_operator_token("rel").unwrap();
    let server = TestServer::start_shared(sphere.clone(), None);
    let v1 = model_bytes("1");
    let (status, body) = publish(&server, &op, &signed(&key, "shapes", "1", &v1), &v1);
    assert_eq!(status, 201, "{body}");
    let sha = body["sha256"].as_str().unwrap().to_owned();
    let (status, body) = server.post(&paths::rollout("shapes", "1"), Some(&op), b"{}");
    assert_eq!(status, 200, "{body}");

    let why = "release shapes 1 is signed by key k-7f3a, which is not among the trusted \
               release keys; refused. Fix: sign it with a trusted key";
    let refusal = ReleaseRefusal::new("shapes", "1", &sha, RefusalKind::UntrustedKey, why);
    let (counter, _) = MODELS_REFUSED.split_once('.').unwrap();
    let counted = json!({ "models_refused": 1 });
    let runs = RunningModel {
        name: "factory".into(),
        version: "0".into(),
        sha256: "cd".repeat(32),
    };
    let devices = [
        (
            "pi-new",
            json!({ MODEL_MEMBER: runs, REFUSED_RELEASE_MEMBER: refusal, counter: counted }),
        ),
        ("pi-old", json!({ MODEL_MEMBER: runs, counter: counted })),
        (
            "pi-none",
            json!({ MODEL_MEMBER: runs, REFUSED_RELEASE_MEMBER: null, counter: counted }),
        ),
    ];
    for (id, doc) in &devices {
        let token = server.add_device(&op, id);
        let mut b =
            PackageBuilder::new(format!("pkg-{id}"), *id, sphere_lite::domain::now_unix_ms())
                .unwrap();
        b.add(
            "metrics.json",
            FileKind::Metrics,
            doc.to_string().into_bytes(),
        )
        .unwrap();
        let (status, body) = server.post(&paths::packages(id), Some(&token), &b.finish().unwrap());
        assert_eq!(status, 200, "{body}");
    }
    let start = Instant::now();
    for (id, _) in &devices {
        while sphere.reported(id).unwrap().model.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the package of {id} was not processed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let session = server.login(&op);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let (status, html) = server.page(&agent, "/ui/models", &session);
    assert_eq!(status, 200, "{html}");
    let row = progress_row(&html, "pi-new");
    assert!(row.contains("progress-refused"), "{row}");
    assert!(row.contains("data-kind=\"untrusted_key\""), "{row}");
    assert!(row.contains("untrusted key"), "{row}");
    assert!(
        row.contains("which is not among the trusted release keys"),
        "{row}"
    );
    let row = progress_row(&html, "pi-old");
    assert!(row.contains("progress-refused"), "{row}");
    assert!(
        !row.contains("data-kind"),
        "an older device names no reason: {row}"
    );
    let row = progress_row(&html, "pi-none");
    assert!(!row.contains("refused"), "{row}");
    assert!(row.contains("downloading or waiting"), "{row}");
}
