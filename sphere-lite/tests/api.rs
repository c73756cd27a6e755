//! End-to-end tests of API v2 against a real sphere-lite on 127.0.0.1:0, driven by a plain
//! HTTP client. Each test runs on the embedded default (temporary directory) and again on
//! MLflow + S3 when `SPHERE_TEST_MLFLOW_URL` and `SPHERE_TEST_S3_*` are set
//! (`./scripts/test sphere` sets them); one test runs redb tracking with S3 blobs.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sphere_lite::adapters::{S3Blobs, S3Settings};
use sphere_lite::ports::{BlobKey, Blobs};
use sphere_lite::server::open_stores;
use tinylcm_protocol::package::{FileKind, MANIFEST_NAME, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/server.rs"]
mod server;

#[path = "support/backend.rs"]
mod backend;

use backend::{Backend, each_backend};
use server::TestServer;

/// A valid package with a metrics file and a sample in a folder.
fn package(device: &str, id: &str, metrics: &[u8]) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1_764_147_600_000).unwrap();
    b.add("metrics.json", FileKind::Metrics, metrics.to_vec())
        .unwrap();
    b.add(
        "samples/event-1.jpg",
        FileKind::Sample,
        vec![0xff, 0xd8, 1, 2],
    )
    .unwrap();
    b.finish().unwrap()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            } else {
                out.push(
                    e.path()
                        .strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

struct Fixture<'a> {
    server: TestServer,
    backend: &'a Backend,
    keys: Vec<String>,
    operator: String,
}

impl<'a> Fixture<'a> {
    fn new(backend: &'a Backend, max_upload: u64) -> Fixture<'a> {
        let sphere = backend.open().with_max_upload(max_upload);
        let keys = vec![
            sphere.create_enrollment_key(1).unwrap(),
            sphere.create_enrollment_key(1).unwrap(),
            sphere.create_enrollment_key(3).unwrap(),
        ];
        let operator = sphere.create_operator_token("alice").unwrap();
        Fixture {
            server: TestServer::start(sphere),
            backend,
            keys,
            operator,
        }
    }

    fn blobs(&self) -> Vec<String> {
        self.backend.blob_keys()
    }
}

#[test]
fn status_needs_no_auth_and_unknown_routes_are_json_404() {
    each_backend(
        "status_needs_no_auth_and_unknown_routes_are_json_404",
        |b| {
            let f = Fixture::new(b, 1 << 20);
            let (status, body) = f.server.get(paths::STATUS, None);
            assert_eq!(status, 200);
            assert_eq!(body["service"], "sphere-lite");
            assert_eq!(body["api"], tinylcm_protocol::API_VERSION);
            let (status, body) = f.server.get("/api/v2/nope", None);
            assert_eq!(status, 404);
            assert!(body["error"].is_string());
        },
    );
}

#[test]
fn enrollment_accepts_good_keys_once_and_refuses_bad_or_used_ones() {
    each_backend(
        "enrollment_accepts_good_keys_once_and_refuses_bad_or_used_ones",
        |b| {
            let f = Fixture::new(b, 1 << 20);
            let (a, token_a) = f.server.enrolled(&f.keys[0]);
            assert!(tinylcm_protocol::ids::valid_device_id(&a));
            assert!(!token_a.is_empty());

            let (status, body) = f.server.enroll(&f.keys[0]);
            assert_eq!(status, 403, "used key: {body}");
            assert!(body["fix"].is_string());

            let (status, body) = f.server.enroll("sle_not-a-key");
            assert_eq!(status, 401, "{body}");

            let (status, body) = f.server.post(paths::ENROLL, None, b"{not json");
            assert_eq!(status, 400, "{body}");

            // The 3-use key enrolls three distinct devices, then no more.
            let ids: Vec<String> = (0..3).map(|_| f.server.enrolled(&f.keys[2]).0).collect();
            assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
            assert_eq!(f.server.enroll(&f.keys[2]).0, 403);
        },
    );
}

#[test]
fn upload_is_accepted_processed_and_idempotent() {
    each_backend("upload_is_accepted_processed_and_idempotent", |b| {
        let f = Fixture::new(b, 1 << 20);
        let (dev, token) = f.server.enrolled(&f.keys[0]);
        let pkg = package(&dev, "pkg-1", br#"{"total_inferences": 3}"#);

        let (status, body) = f.server.post(&paths::packages(&dev), Some(&token), &pkg);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["package_id"], "pkg-1");
        assert_eq!(body["outcome"], "accepted");

        // Stored raw before the 200, then processed in the background.
        let raw = format!("incoming/{dev}/pkg-1.tar");
        assert_eq!(b.blob(&raw).unwrap(), pkg);
        let metrics = format!("devices/{dev}/packages/pkg-1/metrics.json");
        assert_eq!(
            b.wait_blob(&metrics).as_deref(),
            Some(&br#"{"total_inferences": 3}"#[..]),
            "not processed: {:?}",
            f.blobs()
        );
        let sample = format!("devices/{dev}/packages/pkg-1/samples/event-1.jpg");
        assert!(b.wait_blob(&sample).is_some());
        // What the device says of itself, for the fleet page (written before the package is
        // marked processed).
        assert!(
            b.wait_blob(&format!("devices/{dev}/reported.json"))
                .is_some()
        );

        // Same package id again (even with other content): Duplicate, stored once, counted once.
        let before = f.blobs();
        assert_eq!(before.len(), 4, "{before:?}");
        let again = package(&dev, "pkg-1", b"{}");
        let (status, body) = f.server.post(&paths::packages(&dev), Some(&token), &again);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["outcome"], "duplicate");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(f.blobs(), before);
        assert_eq!(b.blob(&raw).unwrap(), pkg);
        assert_eq!(b.blob(&metrics).unwrap(), br#"{"total_inferences": 3}"#);

        let (status, body) = f.server.get("/api/v2/devices", Some(&f.operator));
        assert_eq!(status, 200, "{body}");
        let devices = body["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0]["device_id"], dev.as_str());
        assert_eq!(devices[0]["packages"], 1);
        assert_eq!(devices[0]["name"], "pi");
        assert!(devices[0]["last_seen_unix_ms"].as_u64().unwrap() > 0);
    });
}

#[test]
fn a_device_can_only_write_as_itself() {
    each_backend("a_device_can_only_write_as_itself", |b| {
        let f = Fixture::new(b, 1 << 20);
        let (a, token_a) = f.server.enrolled(&f.keys[0]);
        let (b, token_b) = f.server.enrolled(&f.keys[1]);

        // A's token on B's route.
        let (status, body) = f.server.post(
            &paths::packages(&b),
            Some(&token_a),
            &package(&b, "p1", b"{}"),
        );
        assert_eq!(status, 403, "{body}");
        // A's route, but a package built for B.
        let (status, body) = f.server.post(
            &paths::packages(&a),
            Some(&token_a),
            &package(&b, "p2", b"{}"),
        );
        assert_eq!(status, 403, "{body}");
        // An operator token is not a device token.
        let (status, _) = f.server.post(
            &paths::packages(&a),
            Some(&f.operator),
            &package(&a, "p3", b"{}"),
        );
        assert_eq!(status, 403);
        // Missing and unknown tokens.
        let (status, body) = f
            .server
            .post(&paths::packages(&a), None, &package(&a, "p4", b"{}"));
        assert_eq!(status, 401, "{body}");
        assert!(body["fix"].is_string());
        let (status, _) = f.server.post(
            &paths::packages(&a),
            Some("sld_forged"),
            &package(&a, "p5", b"{}"),
        );
        assert_eq!(status, 401);
        // A malformed device id in the path is refused without touching storage.
        let (status, _) = f
            .server
            .post("/api/v2/devices/..%2Fx/packages", Some(&token_b), b"x");
        assert_eq!(status, 403);

        assert!(f.blobs().is_empty(), "stored: {:?}", f.blobs());
        let (_, body) = f.server.get("/api/v2/devices", Some(&f.operator));
        for d in body["devices"].as_array().unwrap() {
            assert_eq!(d["packages"], 0);
        }
    });
}

#[test]
fn oversized_bodies_are_refused_with_413_and_nothing_is_stored() {
    each_backend(
        "oversized_bodies_are_refused_with_413_and_nothing_is_stored",
        |b| {
            let f = Fixture::new(b, 4096);
            let (dev, token) = f.server.enrolled(&f.keys[0]);
            let big = package(&dev, "big", &vec![b'x'; 8000]);
            // Announce the body without sending it: the refusal must come from the headers alone.
            // (Sending it too races the early 413 against the upload, which a client may see as a
            // reset connection instead of the answer.)
            let answer = headers_only_post(&f.server, &paths::packages(&dev), &token, big.len());
            assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
            assert!(answer.contains("\"error\""), "{answer}");
            assert!(f.blobs().is_empty(), "stored: {:?}", f.blobs());
            // A small one still goes through.
            let (status, _) = f.server.post(
                &paths::packages(&dev),
                Some(&token),
                &package(&dev, "small", b"{}"),
            );
            assert_eq!(status, 200);
        },
    );
}

/// POST only the headers of a request with a `len`-byte body, and read what the server answers.
fn headers_only_post(server: &TestServer, path: &str, token: &str, len: usize) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A ustar member written by hand (tar builders refuse to write these names).
fn tar_member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn malicious_and_garbage_packages_are_refused_with_400_and_nothing_is_stored() {
    each_backend(
        "malicious_and_garbage_packages_are_refused_with_400_and_nothing_is_stored",
        |b| {
            let f = Fixture::new(b, 1 << 20);
            let (dev, token) = f.server.enrolled(&f.keys[0]);
            let evil = b"owned";
            let sha: String = {
                use sha2::Digest;
                sha2::Sha256::digest(evil)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            };
            for name in ["../../evil.txt", "/etc/evil.txt", "a/../../evil.txt"] {
                let manifest = json!({
                    "format": tinylcm_protocol::package::FORMAT, "package_id": "evil", "device_id": dev,
                    "created_unix_ms": 1,
                    "files": [{"name": name, "kind": "other", "size": evil.len(), "sha256": sha}],
                });
                let mut tar = tar_member(MANIFEST_NAME, manifest.to_string().as_bytes());
                tar.extend(tar_member(name, evil));
                tar.extend([0u8; 1024]);
                let (status, body) = f.server.post(&paths::packages(&dev), Some(&token), &tar);
                assert_eq!(status, 400, "{name}: {body}");
                assert!(
                    body["error"].as_str().unwrap().contains("package rejected"),
                    "{body}"
                );
            }
            for garbage in [&b""[..], b"not a tar at all", &[0u8; 1024][..]] {
                let (status, body) = f.server.post(&paths::packages(&dev), Some(&token), garbage);
                assert_eq!(status, 400, "{body}");
            }
            assert!(f.blobs().is_empty(), "stored: {:?}", f.blobs());
            assert!(!b.dir().join("evil.txt").exists());
            assert!(!b.dir().join("blobs/evil.txt").exists());
            let (_, body) = f.server.get("/api/v2/devices", Some(&f.operator));
            assert_eq!(body["devices"][0]["packages"], 0);
        },
    );
}

#[test]
fn operator_listing_needs_an_operator_token() {
    each_backend("operator_listing_needs_an_operator_token", |b| {
        let f = Fixture::new(b, 1 << 20);
        let (_, device_token) = f.server.enrolled(&f.keys[0]);
        assert_eq!(f.server.get("/api/v2/devices", None).0, 401);
        assert_eq!(f.server.get("/api/v2/devices", Some("slo_forged")).0, 401);
        assert_eq!(f.server.get("/api/v2/devices", Some(&device_token)).0, 403);
        let (status, body) = f.server.get("/api/v2/devices", Some(&f.operator));
        assert_eq!(status, 200);
        assert_eq!(body["devices"].as_array().unwrap().len(), 1);
    });
}

#[test]
fn a_package_accepted_before_a_crash_is_processed_at_the_next_start() {
    each_backend(
        "a_package_accepted_before_a_crash_is_processed_at_the_next_start",
        |b| {
            let (device, pkg) = {
                // Accept without processing, as if the server died right after the 200.
                let sphere = b.open();
                let enrolled = sphere_lite::test_support::enrolled(&sphere, None);
                let pkg = package(&enrolled.device_id, "pending-1", b"{\"n\":1}");
                let response = sphere.accept_upload(&enrolled.device_id, &pkg).unwrap();
                assert_eq!(
                    response.outcome,
                    tinylcm_protocol::api::UploadOutcome::Accepted
                );
                (enrolled.device_id, pkg)
            };
            let metrics = format!("devices/{device}/packages/pending-1/metrics.json");
            assert!(b.blob(&metrics).is_none());

            let server = TestServer::start(b.open());
            // Pending packages are processed before the first request is served.
            assert_eq!(server.get(paths::STATUS, None).0, 200);
            assert_eq!(b.blob(&metrics).unwrap(), b"{\"n\":1}");
            assert_eq!(
                b.blob(&format!("incoming/{device}/pending-1.tar")).unwrap(),
                pkg
            );
            drop(server);
        },
    );
}

/// S3 settings from `SPHERE_TEST_S3_*` under a fresh prefix, or `None` if unset
/// (`test_support::missing`).
fn s3_settings(test: &str) -> Option<S3Settings> {
    let Ok(endpoint) = std::env::var("SPHERE_TEST_S3_ENDPOINT") else {
        tinylcm_protocol::test_support::missing(
            &format!("{test}: an S3 service (SPHERE_TEST_S3_ENDPOINT is not set)"),
            "run ./scripts/test sphere, which starts SeaweedFS and sets it",
        );
        return None;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(S3Settings {
        endpoint,
        bucket: "sphere-api-test".into(),
        access_key: var("SPHERE_TEST_S3_ACCESS_KEY"),
        secret_key: var("SPHERE_TEST_S3_SECRET_KEY"),
        region: std::env::var("SPHERE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        prefix: Some(format!("{test}-{nonce:x}")),
    })
}

/// Wait until `key` exists in `blobs` (background processing), at most 10 s.
fn wait_for_blob(blobs: &dyn Blobs, key: &str) -> Option<Vec<u8>> {
    let key = BlobKey::new(key).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(bytes) = blobs.get(&key).unwrap() {
            return Some(bytes);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn upload_is_ingested_into_s3() {
    let Some(settings) = s3_settings("upload-s3") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_stores(dir.path(), Some(&settings), None).unwrap();
    let key = sphere.create_enrollment_key(1).unwrap();
    let server = TestServer::start(sphere);
    let (dev, token) = server.enrolled(&key);
    let pkg = package(&dev, "pkg-s3", br#"{"total_inferences": 7}"#);

    let (status, body) = server.post(&paths::packages(&dev), Some(&token), &pkg);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "accepted");

    // Another client of the same bucket and prefix sees what the server stored.
    let s3 = S3Blobs::open(&settings).unwrap();
    let raw = s3
        .get(&BlobKey::new(format!("incoming/{dev}/pkg-s3.tar")).unwrap())
        .unwrap();
    assert_eq!(
        raw.as_deref(),
        Some(&pkg[..]),
        "raw TAR stored before the 200"
    );
    let metrics = wait_for_blob(&s3, &format!("devices/{dev}/packages/pkg-s3/metrics.json"));
    assert_eq!(metrics.as_deref(), Some(&br#"{"total_inferences": 7}"#[..]));
    assert_eq!(
        wait_for_blob(
            &s3,
            &format!("devices/{dev}/packages/pkg-s3/samples/event-1.jpg")
        )
        .as_deref(),
        Some(&[0xff, 0xd8, 1, 2][..])
    );
    // What the device says of itself, for the fleet page (written before the package is
    // marked processed).
    assert!(wait_for_blob(&s3, &format!("devices/{dev}/reported.json")).is_some());

    // A duplicate stores nothing new.
    let (status, body) = server.post(
        &paths::packages(&dev),
        Some(&token),
        &package(&dev, "pkg-s3", b"{}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "duplicate");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s3.list("").unwrap().len(), 4, "{:?}", s3.list(""));

    // Nothing went to the local blob directory.
    assert!(files_under(&dir.path().join("blobs")).is_empty());
    drop(server);
}
