//! Operations routes against a real server: liveness, readiness (also when a store is down)
//! and the Prometheus metrics an operator alerts on.

use std::sync::Arc;
use std::time::Duration;

use sphere_lite::adapters::RedbTracking;
use sphere_lite::domain::Sphere;
use sphere_lite::ports::{BlobKey, Blobs, StoreError};
use sphere_lite::server::open_embedded;
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/server.rs"]
mod server;

use server::TestServer;

fn text(server: &TestServer, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(&server.url(path));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_embedded(dir.path()).unwrap();
    let key = sphere.create_enrollment_key(1).unwrap();
    let operator = sphere.create_operator_token("ops").unwrap();
    let server = TestServer::start(sphere);
    assert_eq!(text(&server, "/healthz", None).0, 200);
    assert_eq!(text(&server, "/readyz", None).0, 200);

    let (device, token) = server.enrolled(&key);
    let mut b = PackageBuilder::new("p1", device.as_str(), 1).unwrap();
    b.add("metrics.json", FileKind::Metrics, b"{}".to_vec())
        .unwrap();
    let package = b.finish().unwrap();
    for _ in 0..2 {
        let (status, body) = server.post(&paths::packages(&device), Some(&token), &package);
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = server.post(&paths::packages(&device), Some("wrong"), &package);
    assert_eq!(status, 401);

    // The figures describe the fleet: operators only.
    assert_eq!(text(&server, "/metrics", None).0, 401);
    assert_eq!(text(&server, "/metrics", Some(&token)).0, 403);
    let (status, metrics) = text(&server, "/metrics", Some(&operator));
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "sphere_lite_packages_total{outcome=\"accepted\"} 1",
        "sphere_lite_packages_total{outcome=\"duplicate\"} 1",
        "sphere_lite_http_requests_total{route=\"upload\",status=\"2xx\"} 2",
        "sphere_lite_http_requests_total{route=\"upload\",status=\"4xx\"} 1",
        "sphere_lite_devices 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in:\n{metrics}"
        );
    }
    assert!(metrics.contains("sphere_lite_resident_memory_bytes"));
}

/// Blobs whose backend is unreachable.
struct Down;

impl Blobs for Down {
    fn put(&self, _: &BlobKey, _: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::new("blobs", "connection refused"))
    }
    fn get(&self, _: &BlobKey) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::new("blobs", "connection refused"))
    }
    fn list(&self, _: &str) -> Result<Vec<BlobKey>, StoreError> {
        Err(StoreError::new("blobs", "connection refused"))
    }
    fn delete(&self, _: &BlobKey) -> Result<(), StoreError> {
        Err(StoreError::new("blobs", "connection refused"))
    }
    fn presigned_get(&self, _: &BlobKey, _: Duration) -> Result<Option<String>, StoreError> {
        Err(StoreError::new("blobs", "connection refused"))
    }
}

#[test]
fn a_replica_whose_blob_store_is_down_is_alive_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let tracking = RedbTracking::open(&dir.path().join("sphere.redb")).unwrap();
    let server = TestServer::start(Sphere::new(Arc::new(tracking), Arc::new(Down)));
    assert_eq!(text(&server, "/healthz", None).0, 200);
    let (status, body) = text(&server, "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(
        !body.contains("connection refused"),
        "no internals leak: {body}"
    );
}
