//! The original TinyLCM Python clients' calls against a real sphere-lite: status probe,
//! registration, multipart uploads of flat archives, and the validation polling — including
//! what must be refused (foreign devices, traversal, links, bombs, damaged archives) with
//! nothing stored.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sphere_lite::server::open_embedded;

#[path = "support/server.rs"]
mod server;

use server::TestServer;

struct Fixture {
    server: TestServer,
    _dir: tempfile::TempDir,
    operator: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sphere = open_embedded(dir.path()).unwrap();
        let operator = sphere.create_operator_token("alice").unwrap();
        Fixture {
            server: TestServer::start(sphere),
            _dir: dir,
            operator,
        }
    }

    /// Add `id` through the operator API; returns its token.
    fn add_device(&self, id: &str) -> String {
        let (status, body) = self.server.post(
            "/api/v2/devices",
            Some(&self.operator),
            json!({"device_id": id, "name": "legacy pi"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["device_id"], id);
        body["token"].as_str().unwrap().to_owned()
    }

    /// `POST /api/packages/upload` as the original client sends it.
    fn upload(&self, token: &str, metadata: &Value, archive: &[u8]) -> (u16, Value) {
        let file = format!(
            "{}_1764147600.tar",
            metadata["package_id"].as_str().unwrap_or("x")
        );
        let metadata = metadata.to_string();
        self.server.post_multipart(
            "/api/packages/upload",
            Some(token),
            &[
                ("package", Some(&file), archive),
                ("metadata", None, metadata.as_bytes()),
            ],
        )
    }

    fn devices(&self) -> Value {
        let (status, body) = self.server.get("/api/v2/devices", Some(&self.operator));
        assert_eq!(status, 200, "{body}");
        body
    }

    fn packages_of(&self, id: &str) -> u64 {
        self.devices()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == id)
            .map(|d| d["packages"].as_u64().unwrap())
            .unwrap()
    }

    /// Drift events once there are `n` (processing runs in the background).
    fn wait_events(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let (_, body) = self
                .server
                .get("/api/v2/drift-events", Some(&self.operator));
            let events = body["events"].as_array().unwrap().clone();
            if events.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A flat archive as Python's `tarfile` writes it (members by base name).
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn metadata(device: &str, package_id: &str, kind: &str, archive: &[u8]) -> Value {
    json!({
        "device_id": device, "package_id": package_id, "package_type": kind,
        "hash": format!("{:x}", md5::compute(archive)), "timestamp": 1764147600.25,
    })
}

const DRIFT_JSON: &[u8] = br#"{"timestamp": 1764147601.5, "detector_name": "EWMAConfidenceMonitor",
  "reason": "confidence fell", "drift_type": "confidence",
  "metrics": {"threshold": 0.3, "drift_score": 0.45},
  "sample": {"sample_id": "41", "prediction": "box", "confidence": 0.2}}"#;

#[test]
fn the_status_probe_answers_without_a_token() {
    let f = Fixture::new();
    let (status, body) = f.server.get("/api/status", None);
    assert_eq!(status, 200);
    assert_eq!(body["status"], "OK");
}

#[test]
fn registration_needs_the_devices_own_token() {
    let f = Fixture::new();
    let token = f.add_device("pi-legacy-1");
    let other = f.add_device("pi-legacy-2");
    let register = |token: Option<&str>, id: &str| {
        f.server.post(
            "/api/devices/register",
            token,
            json!({"device_id": id, "device_info": {"hostname": "pi", "device_model": "Pi 4"},
                   "registration_time": 1764147600.0})
            .to_string()
            .as_bytes(),
        )
    };
    let (status, body) = register(Some(&token), "pi-legacy-1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["registered"], true);
    assert_eq!(register(Some(&other), "pi-legacy-1").0, 403);
    assert_eq!(register(None, "pi-legacy-1").0, 401);
    assert_eq!(register(Some(&f.operator), "pi-legacy-1").0, 403);
    // The id is the operator's choice and is unique.
    let (status, _) = f.server.post(
        "/api/v2/devices",
        Some(&f.operator),
        br#"{"device_id": "pi-legacy-1"}"#,
    );
    assert_eq!(status, 409);
    // Devices cannot add devices.
    let (status, _) = f.server.post(
        "/api/v2/devices",
        Some(&token),
        br#"{"device_id": "pi-legacy-3"}"#,
    );
    assert_eq!(status, 403);
}

#[test]
fn a_drift_package_reaches_the_drift_hub_and_its_validation_reaches_the_client() {
    let f = Fixture::new();
    let token = f.add_device("pi-legacy-1");
    let archive = tar_of(&[
        ("drift_event.json", DRIFT_JSON),
        (
            "event_20261126_101010_ab12cd34.jpg",
            b"\xff\xd8\xff\xe0jpeg",
        ),
        ("image_metadata.json", br#"{"target_bucket": "drift"}"#),
    ]);
    let meta = metadata(
        "pi-legacy-1",
        "6f1c2a9e-8a4b-4c1d-9f00-123456789abc",
        "drift_event",
        &archive,
    );
    let (status, body) = f.upload(&token, &meta, &archive);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["uploaded"], true);
    // A repeat (the client retries after a lost answer) is a success, stored once.
    let (status, body) = f.upload(&token, &meta, &archive);
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.packages_of("pi-legacy-1"), 1);

    let events = f.wait_events(1);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["device_id"], "pi-legacy-1");
    assert_eq!(event["detector"], "EWMAConfidenceMonitor");
    assert_eq!(event["statistic"], 0.45);
    assert_eq!(event["samples"].as_array().unwrap().len(), 1);

    // The operator confirms it; the client's poll sees a validation and acknowledges it.
    let id = event["id"].as_u64().unwrap();
    let (status, body) = f.server.post(
        &format!("/api/v2/drift-events/{id}/validate"),
        Some(&f.operator),
        br#"{"note": "real"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, pending) = f.server.get(
        "/api/drift/validations/pending?device_id=pi-legacy-1",
        Some(&token),
    );
    assert_eq!(status, 200, "{pending}");
    let pending = pending.as_array().unwrap().clone();
    assert!(!pending.is_empty());
    assert!(pending.iter().all(|v| v["device_id"] == "pi-legacy-1"));
    let ids: Vec<Value> = pending.iter().map(|v| v["validation_id"].clone()).collect();
    let (status, acked) = f.server.post(
        "/api/drift/validations/acknowledge",
        Some(&token),
        json!({"validation_ids": ids}).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{acked}");
    assert!(
        acked["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["success"] == true),
        "{acked}"
    );
    let (_, after) = f.server.get("/api/drift/validations/pending", Some(&token));
    assert_eq!(after, json!([]));
    // Acknowledging again is still a success, and unknown ids are not.
    let (_, again) = f.server.post(
        "/api/drift/validations/acknowledge",
        Some(&token),
        json!({"validation_ids": [ids[0], "999"]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(again["results"][0]["success"], true);
    assert_eq!(again["results"][1]["success"], false);
}

#[test]
fn gzip_archives_are_accepted() {
    let f = Fixture::new();
    let token = f.add_device("pi-legacy-1");
    let tar = tar_of(&[("metrics.json", br#"{"total_inferences": 42}"#)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let archive = gz.finish().unwrap();
    let meta = metadata("pi-legacy-1", "p-gz", "metrics", &archive);
    let (status, body) = f.upload(&token, &meta, &archive);
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.packages_of("pi-legacy-1"), 1);
}

#[test]
fn hostile_or_foreign_uploads_are_refused_and_nothing_is_stored() {
    let f = Fixture::new();
    let token = f.add_device("pi-legacy-1");
    f.add_device("pi-legacy-2");
    let good = tar_of(&[("metrics.json", b"{}")]);

    // Another device's id in the metadata.
    let (status, body) = f.upload(
        &token,
        &metadata("pi-legacy-2", "p1", "metrics", &good),
        &good,
    );
    assert_eq!(status, 403, "{body}");
    // No token, or an unknown one.
    let meta = metadata("pi-legacy-1", "p1", "metrics", &good);
    assert_eq!(f.upload("nope", &meta, &good).0, 401);
    // Damaged on the way: the MD5 does not match.
    let mut wrong = meta.clone();
    wrong["hash"] = json!("00000000000000000000000000000000");
    assert_eq!(f.upload(&token, &wrong, &good).0, 400);
    // A package id that would become a path.
    let traversal_id = metadata("pi-legacy-1", "../../etc", "metrics", &good);
    assert_eq!(f.upload(&token, &traversal_id, &good).0, 400);

    // Members that escape their folder, and links.
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_gnu_mut().unwrap().name[..16].copy_from_slice(b"../../etc/passwd");
    h.set_cksum();
    raw.append(&h, &b"{}"[..]).unwrap();
    let traversal = raw.into_inner().unwrap();
    let (status, body) = f.upload(
        &token,
        &metadata("pi-legacy-1", "p2", "metrics", &traversal),
        &traversal,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains(".."), "{body}");

    let mut links = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    links
        .append_link(&mut h, "metrics.json", "/etc/passwd")
        .unwrap();
    let links = links.into_inner().unwrap();
    let (status, _) = f.upload(
        &token,
        &metadata("pi-legacy-1", "p3", "metrics", &links),
        &links,
    );
    assert_eq!(status, 400);

    // A gzip bomb: 80 MiB of zeros in a few hundred KiB.
    let huge = tar_of(&[("zeros.bin", &vec![0u8; 80 * 1024 * 1024])]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&huge).unwrap();
    let bomb = gz.finish().unwrap();
    drop(huge);
    let (status, body) = f.upload(
        &token,
        &metadata("pi-legacy-1", "p4", "metrics", &bomb),
        &bomb,
    );
    assert_eq!(status, 413, "{body}");

    // A body without the parts.
    let (status, _) = f
        .server
        .post_multipart("/api/packages/upload", Some(&token), &[]);
    assert_eq!(status, 400);

    assert_eq!(f.packages_of("pi-legacy-1"), 0);
    assert_eq!(f.packages_of("pi-legacy-2"), 0);
}

/// The Python interpreter of the sphere test stack (`./scripts/test sphere` sets
/// `SPHERE_TEST_PYTHON`; it has `requests`).
fn python() -> Option<String> {
    let python = std::env::var("SPHERE_TEST_PYTHON").ok();
    if python.is_none() {
        tinylcm_protocol::test_support::missing(
            "a Python with `requests` (SPHERE_TEST_PYTHON is not set)",
            "run ./scripts/test sphere, which sets it to its venv's Python",
        );
    }
    python
}

/// Run the original-client script; one JSON object per call it made.
fn run_client(python: &str, f: &Fixture, device: &str, token: &str, poll: bool) -> Vec<Value> {
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy_client/client.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .arg(f.server.url(""))
        .arg(device)
        .arg(token)
        .arg(work.path());
    if poll {
        cmd.arg("poll");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_python_client_built_like_the_original_syncs_unchanged() {
    let Some(python) = python() else { return };
    let f = Fixture::new();
    let token = f.add_device("legacy-pi-7");
    let calls = run_client(&python, &f, "legacy-pi-7", &token, false);
    let status_of = |name: &str| {
        calls
            .iter()
            .find(|c| c["call"] == name)
            .unwrap_or_else(|| panic!("no {name} in {calls:?}"))
            .clone()
    };
    for call in ["status", "register", "upload", "upload-again"] {
        assert_eq!(status_of(call)["status"], 200, "{:?}", status_of(call));
    }
    assert_eq!(status_of("upload")["body"]["status"], "success");
    assert_eq!(f.packages_of("legacy-pi-7"), 1);

    let events = f.wait_events(1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detector"], "KNNDistanceMonitor");
    assert_eq!(events[0]["statistic"], 2.4);
    let id = events[0]["id"].as_u64().unwrap();
    let (status, _) = f.server.post(
        &format!("/api/v2/drift-events/{id}/reject"),
        Some(&f.operator),
        b"{}",
    );
    assert_eq!(status, 200);

    // Next sync: the client sees the verdict (a false alarm) and acknowledges it.
    let calls = run_client(&python, &f, "legacy-pi-7", &token, true);
    let pending = calls.iter().find(|c| c["call"] == "pending").unwrap();
    assert_eq!(pending["status"], 200);
    let validations = pending["body"].as_array().unwrap();
    assert!(!validations.is_empty(), "{pending}");
    assert!(validations.iter().all(|v| v["is_valid_drift"] == false));
    let acked = calls.iter().find(|c| c["call"] == "acknowledge").unwrap();
    assert!(
        acked["body"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["success"] == true),
        "{acked}"
    );
    // The second run's upload was a new package (new UUID): two packages, two events.
    assert_eq!(f.packages_of("legacy-pi-7"), 2);
}
