//! A 200 `accepted` means the raw TAR and its record survive a power cut, also when uploads
//! share their durable commit (group commit), and a package is marked processed only after
//! the files it was unpacked into are durable.
//!
//! Two views of it: in the process, blobs that remember which objects were written without a
//! flush and not synced since, checked at every answer and at every sync; and the real
//! binary killed with SIGKILL in the middle of a storm of concurrent uploads, whose data
//! folder must then hold every package it answered `accepted`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sphere_lite::adapters::{DirBlobs, RedbTracking};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::prelude::*;
use sphere_lite::ports::{BlobKey, BlobStream, Blobs, StoreError};
use tinylcm_protocol::api::{EnrollRequest, UploadOutcome};
use tinylcm_protocol::package::{FileKind, PackageBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_sphere-lite");

/// A package of one metrics file.
fn package(device: &str, id: &str) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1).unwrap();
    b.add(
        "metrics.json",
        FileKind::Metrics,
        format!("{{\"package\": \"{id}\"}}").into_bytes(),
    )
    .unwrap();
    b.finish().unwrap()
}

/// Directory blobs that remember which objects may still be lost in a power cut: written by
/// an unsynced put and not in a [`Blobs::sync`] since. At each sync, no package whose blobs
/// it syncs may be recorded (accepted) or marked processed yet: the commit must come after.
struct Flushes {
    inner: DirBlobs,
    tracking: Arc<RedbTracking>,
    unsynced: Mutex<HashSet<BlobKey>>,
    syncs: AtomicUsize,
    /// Packages (device, id) found committed before their blobs were synced.
    early: Mutex<Vec<String>>,
}

impl Flushes {
    fn is_unsynced(&self, key: &str) -> bool {
        self.unsynced
            .lock()
            .unwrap()
            .contains(&BlobKey::new(key).unwrap())
    }
}

impl Blobs for Flushes {
    fn put(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, bytes)?;
        self.unsynced.lock().unwrap().remove(key);
        Ok(())
    }
    fn put_file(&self, key: &BlobKey, path: &Path) -> Result<(), StoreError> {
        self.inner.put_file(key, path)?;
        self.unsynced.lock().unwrap().remove(key);
        Ok(())
    }
    fn put_unsynced(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.unsynced.lock().unwrap().insert(key.clone());
        self.inner.put_unsynced(key, bytes)
    }
    fn put_file_unsynced(&self, key: &BlobKey, path: &Path) -> Result<(), StoreError> {
        self.unsynced.lock().unwrap().insert(key.clone());
        self.inner.put_file_unsynced(key, path)
    }
    fn sync(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        for key in keys {
            let parts: Vec<&str> = key.as_str().split('/').collect();
            let committed = match parts.as_slice() {
                ["incoming", device, tar] => {
                    let id = tar.trim_end_matches(".tar");
                    self.tracking.package(device, id)?.is_some()
                }
                ["devices", device, "packages", id, _] => self
                    .tracking
                    .package(device, id)?
                    .is_some_and(|r| r.processed_unix_ms.is_some()),
                _ => false,
            };
            if committed {
                self.early.lock().unwrap().push(key.to_string());
            }
        }
        self.inner.sync(keys)?;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let mut unsynced = self.unsynced.lock().unwrap();
        for key in keys {
            unsynced.remove(key);
        }
        Ok(())
    }
    fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        self.inner.list(prefix)
    }
    fn list_sizes(&self, prefix: &str) -> Result<Vec<(BlobKey, u64)>, StoreError> {
        self.inner.list_sizes(prefix)
    }
    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn open(
        &self,
        key: &BlobKey,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<BlobStream>, StoreError> {
        self.inner.open(key, start, len)
    }
    fn presigned_get(&self, key: &BlobKey, expiry: Duration) -> Result<Option<String>, StoreError> {
        self.inner.presigned_get(key, expiry)
    }
}

#[test]
fn concurrent_uploads_are_answered_only_once_durable_and_processed_only_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
    let blobs = Arc::new(Flushes {
        inner: DirBlobs::open(&dir.path().join("blobs")).unwrap(),
        tracking: tracking.clone(),
        unsynced: Mutex::default(),
        syncs: AtomicUsize::new(0),
        early: Mutex::default(),
    });
    let sphere = Sphere::new(tracking.clone(), blobs.clone());
    let (devices, per_device) = (12, 25);
    let key = sphere.create_enrollment_key(devices).unwrap();
    let ids: Vec<String> = (0..devices)
        .map(|_| {
            sphere
                .enroll(&EnrollRequest {
                    enrollment_key: key.clone(),
                    name: None,
                    hardware: None,
                })
                .unwrap()
                .device_id
        })
        .collect();
    let answered = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for device in &ids {
            let (sphere, blobs, tracking, answered) = (&sphere, &blobs, &tracking, &answered);
            scope.spawn(move || {
                for n in 0..per_device {
                    let id = format!("p{n}");
                    let answer = sphere.accept_upload(device, &package(device, &id)).unwrap();
                    assert_eq!(answer.outcome, UploadOutcome::Accepted);
                    // What the answer promises: the raw TAR flushed, the record committed.
                    let raw = format!("incoming/{device}/{id}.tar");
                    assert!(
                        !blobs.is_unsynced(&raw),
                        "{raw} was answered accepted before it was synced"
                    );
                    assert!(tracking.package(device, &id).unwrap().is_some());
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let answered = answered.into_inner();
    assert_eq!(answered, ids.len() * per_device);
    assert!(blobs.syncs.load(Ordering::SeqCst) > 0, "nothing was synced");

    // Processing: its blobs written unsynced, synced before the batch's commit.
    assert_eq!(sphere.process_pending().unwrap(), answered);
    assert!(tracking.unprocessed().unwrap().is_empty());
    for device in &ids {
        let file = format!("devices/{device}/packages/p0/metrics.json");
        assert!(!blobs.is_unsynced(&file), "{file} left unsynced");
    }
    assert!(
        blobs.unsynced.lock().unwrap().is_empty(),
        "blobs left unsynced: {:?}",
        blobs.unsynced.lock().unwrap()
    );
    let early = blobs.early.lock().unwrap();
    assert!(
        early.is_empty(),
        "{} blobs were synced after their package was committed, e.g. {:?}",
        early.len(),
        early.first()
    );
}

/// A package of one metrics file holding `content`.
fn package_with(device: &str, id: &str, content: &str) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1).unwrap();
    b.add(
        "metrics.json",
        FileKind::Metrics,
        content.as_bytes().to_vec(),
    )
    .unwrap();
    b.finish().unwrap()
}

/// One package id sent by eight uploads at once, each with other contents (a device that
/// reuses an id): one is accepted, and what is stored under the id is exactly that one.
#[test]
fn one_package_id_sent_many_times_at_once_is_accepted_once_and_stored_as_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
    let blobs = Arc::new(DirBlobs::open(&dir.path().join("blobs")).unwrap());
    let sphere = Sphere::new(tracking.clone(), blobs.clone());
    let device = sphere_lite::test_support::enrolled(&sphere, None).device_id;
    let packages: Vec<Vec<u8>> = (0..8)
        .map(|n| package_with(&device, "same", &format!("{{\"sender\": {n}}}")))
        .collect();
    let outcomes: Vec<UploadOutcome> = std::thread::scope(|scope| {
        let senders: Vec<_> = packages
            .iter()
            .map(|pkg| scope.spawn(|| sphere.accept_upload(&device, pkg).unwrap().outcome))
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let accepted: Vec<usize> = (0..outcomes.len())
        .filter(|n| outcomes[*n] == UploadOutcome::Accepted)
        .collect();
    assert_eq!(accepted.len(), 1, "{outcomes:?}");
    assert_eq!(tracking.device(&device).unwrap().unwrap().packages, 1);
    let raw = BlobKey::new(format!("incoming/{device}/same.tar")).unwrap();
    assert!(
        blobs.get(&raw).unwrap().unwrap() == packages[accepted[0]],
        "the stored raw TAR is not the one answered accepted"
    );
}

/// Start `sphere-lite serve` on `data`; the child and its address.
fn serve(data: &str) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
        .env_remove("SPHERE_LITE_CONFIG")
        .env("SPHERE_LITE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited");
    }
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap()
        .to_owned();
    // Keep reading its log, so a full pipe never blocks it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, addr)
}

#[test]
fn every_package_answered_accepted_survives_a_sigkill_during_a_storm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let devices = 8;
    let out = Command::new(BIN)
        .args(["enrollment-key", "create", "--data", data, "--uses"])
        .arg(devices.to_string())
        .env_remove("SPHERE_LITE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (mut child, addr) = serve(data);

    let clients: Vec<(String, String)> = (0..devices)
        .map(|_| {
            let body = ureq::post(&format!("http://{addr}/api/v2/devices/enroll"))
                .send_string(&format!(r#"{{"enrollment_key":"{key}"}}"#))
                .unwrap()
                .into_string()
                .unwrap();
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            (
                body["device_id"].as_str().unwrap().to_owned(),
                body["token"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Every device uploads until the server is gone; it is killed once 150 were answered.
    let accepted = Mutex::new(Vec::<(String, String, Vec<u8>)>::new());
    let killed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for (device, token) in &clients {
            let (accepted, killed, addr) = (&accepted, &killed, &addr);
            scope.spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(20))
                    .build();
                let url = format!("http://{addr}/api/v2/devices/{device}/packages");
                for n in 0.. {
                    if killed.load(Ordering::SeqCst) {
                        return;
                    }
                    let id = format!("k{n}");
                    let pkg = package(device, &id);
                    let Ok(response) = agent
                        .post(&url)
                        .set("Authorization", &format!("Bearer {token}"))
                        .set("Content-Type", tinylcm_protocol::package::CONTENT_TYPE)
                        .send_bytes(&pkg)
                    else {
                        return; // the server is gone
                    };
                    let Ok(body) = response.into_string() else {
                        return; // cut off by the kill
                    };
                    assert!(body.contains("\"accepted\""), "{body}");
                    accepted.lock().unwrap().push((device.to_string(), id, pkg));
                }
            });
        }
        while accepted.lock().unwrap().len() < 150 {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL: no shutdown, nothing flushed on the way out
        killed.store(true, Ordering::SeqCst);
    });
    child.wait().unwrap();

    let accepted = accepted.into_inner().unwrap();
    let tracking = RedbTracking::open(&dir.path().join("sphere.redb")).unwrap();
    let blobs = DirBlobs::open(&dir.path().join("blobs")).unwrap();
    for (device, id, pkg) in &accepted {
        assert!(
            tracking.package(device, id).unwrap().is_some(),
            "{device}/{id} was answered accepted but its record is gone"
        );
        let raw = BlobKey::new(format!("incoming/{device}/{id}.tar")).unwrap();
        assert_eq!(
            blobs.get(&raw).unwrap().as_ref(),
            Some(pkg),
            "{raw} was answered accepted but is gone or torn"
        );
    }
    let counted: u64 = clients
        .iter()
        .map(|(d, _)| tracking.device(d).unwrap().unwrap().packages)
        .sum();
    assert!(counted >= accepted.len() as u64);
}
