//! The server the dashboard's browser tests drive: an embedded sphere-lite on 127.0.0.1:0
//! with an enrollment key and an admin (`alice`), devices enrolled and their packages
//! uploaded through the real API as a device does. Include beside `support/server.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sphere_lite::domain::Sphere;
use sphere_lite::server::open_embedded;
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

use crate::server::TestServer;

/// One file of a package: (name, kind, bytes).
pub type Member = (String, FileKind, Vec<u8>);

/// A server with an enrollment key (10 uses) and an admin operator token (`alice`).
pub struct UiFixture {
    // Field order: the server stops before the directory is removed.
    pub server: TestServer,
    pub sphere: Arc<Sphere>,
    _dir: tempfile::TempDir,
    pub key: String,
    pub admin: String,
}

impl UiFixture {
    pub fn new() -> UiFixture {
        let dir = tempfile::tempdir().unwrap();
        let sphere = Arc::new(open_embedded(dir.path()).unwrap());
        let key = sphere.create_enrollment_key(10).unwrap();
        let admin = sphere.create_operator_token("alice").unwrap();
        UiFixture {
            server: TestServer::start_shared(sphere.clone(), None),
            sphere,
            _dir: dir,
            key,
            admin,
        }
    }

    /// A device enrolled from a machine whose host name is `name`: (id, token).
    pub fn device(&self, name: &str) -> (String, String) {
        let (status, body) = self.server.post(
            paths::ENROLL,
            None,
            json!({"enrollment_key": self.key, "name": name, "hardware": "zero2w"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        (
            body["device_id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Uploads the package `id` created at `created` (device clock) with `members`, as the
    /// device does, and waits until the server processed it.
    pub fn upload(&self, device: &str, token: &str, id: &str, created: u64, members: Vec<Member>) {
        let mut b = PackageBuilder::new(id, device, created).unwrap();
        for (name, kind, bytes) in members {
            b.add(name, kind, bytes).unwrap();
        }
        let (status, body) =
            self.server
                .post(&paths::packages(device), Some(token), &b.finish().unwrap());
        assert_eq!(status, 200, "{body}");
        let start = Instant::now();
        while !self
            .sphere
            .device_packages(device, None, 100)
            .unwrap()
            .packages
            .iter()
            .any(|p| p.package_id == id && p.processed_unix_ms.is_some())
        {
            assert!(start.elapsed() < Duration::from_secs(20), "{id} processed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
