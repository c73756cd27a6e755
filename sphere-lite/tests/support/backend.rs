//! The store combinations the domain tests run against: the embedded default (redb + a
//! directory) always, and MLflow + S3 when `SPHERE_TEST_MLFLOW_URL` and `SPHERE_TEST_S3_*` are
//! set (`./scripts/test sphere` starts both and sets them).
//!
//! Each MLflow backend gets its own namespace and S3 prefix, so tests sharing one MLflow and
//! one bucket never see each other's data.

// Each test binary uses a different part of this support module.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere_lite::adapters::{
    DirBlobs, MlflowSettings, MlflowTracking, RedbTracking, S3Blobs, S3Settings,
};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::{BlobKey, Blobs, Tracking};
use sphere_lite::server::open_stores;

/// One store combination with its own (empty) data.
pub struct Backend {
    dir: tempfile::TempDir,
    remote: Option<(S3Settings, MlflowSettings)>,
}

fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

/// MLflow + S3 settings for `test` under a fresh namespace/prefix, or `None`
/// (`test_support::missing`).
fn remote(test: &str) -> Option<(S3Settings, MlflowSettings)> {
    let (Ok(url), Ok(endpoint)) = (
        std::env::var("SPHERE_TEST_MLFLOW_URL"),
        std::env::var("SPHERE_TEST_S3_ENDPOINT"),
    ) else {
        tinylcm_protocol::test_support::missing(
            &format!(
                "{test}, MLflow + S3 half: the services (SPHERE_TEST_MLFLOW_URL or \
                 SPHERE_TEST_S3_ENDPOINT is not set)"
            ),
            "run ./scripts/test sphere, which starts MLflow and SeaweedFS and sets them",
        );
        return None;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let short: String = test.replace('_', "-").chars().take(40).collect();
    let space = format!("t/{short}-{}", nonce());
    Some((
        S3Settings {
            endpoint,
            bucket: "sphere-domain-test".into(),
            access_key: var("SPHERE_TEST_S3_ACCESS_KEY"),
            secret_key: var("SPHERE_TEST_S3_SECRET_KEY"),
            region: std::env::var("SPHERE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
            prefix: Some(space.clone()),
        },
        MlflowSettings {
            url,
            namespace: space,
            metric_keys: Default::default(),
        },
    ))
}

impl Backend {
    /// The embedded backend in a fresh temporary directory.
    pub fn embedded() -> Backend {
        Backend {
            dir: tempfile::tempdir().unwrap(),
            remote: None,
        }
    }

    /// Every backend available for `test`: embedded, then MLflow + S3 if configured.
    pub fn all(test: &str) -> Vec<Backend> {
        let mut out = vec![Backend::embedded()];
        if let Some(r) = remote(test) {
            out.push(Backend {
                dir: tempfile::tempdir().unwrap(),
                remote: Some(r),
            });
        }
        out
    }

    /// The MLflow + S3 backend alone for `test`, or `None` when the services are not
    /// configured (reported through `test_support::missing`).
    pub fn mlflow(test: &str) -> Option<Backend> {
        remote(test).map(|r| Backend {
            dir: tempfile::tempdir().unwrap(),
            remote: Some(r),
        })
    }

    /// This backend with MLflow logging only the metric keys `kept` keeps (no change to the
    /// embedded backend, which keeps every key).
    pub fn keeping_metric_keys(mut self, kept: sphere_lite::adapters::mlflow::KeptKeys) -> Backend {
        if let Some((_, m)) = &mut self.remote {
            m.metric_keys = kept;
        }
        self
    }

    /// The MLflow settings of an MLflow + S3 backend.
    pub fn mlflow_settings(&self) -> Option<&MlflowSettings> {
        self.remote.as_ref().map(|(_, m)| m)
    }

    /// The S3 settings of an MLflow + S3 backend.
    pub fn s3_settings(&self) -> Option<&S3Settings> {
        self.remote.as_ref().map(|(s, _)| s)
    }

    /// `embedded` or `mlflow+s3`.
    pub fn name(&self) -> &'static str {
        if self.remote.is_some() {
            "mlflow+s3"
        } else {
            "embedded"
        }
    }

    /// The data directory (empty and unused with MLflow + S3).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The service over this backend's stores, as `serve` opens them.
    pub fn open(&self) -> Sphere {
        match &self.remote {
            Some((s3, mlflow)) => open_stores(self.dir(), Some(s3), Some(mlflow)).unwrap(),
            None => open_stores(self.dir(), None, None).unwrap(),
        }
    }

    /// A separate handle on the tracking store (embedded: only while no `Sphere` is open).
    pub fn tracking(&self) -> Arc<dyn Tracking> {
        match &self.remote {
            Some((s3, mlflow)) => Arc::new(MlflowTracking::open_with_s3(mlflow, s3).unwrap()),
            None => {
                std::fs::create_dir_all(self.dir()).unwrap();
                Arc::new(RedbTracking::open(&self.dir().join("sphere.redb")).unwrap())
            }
        }
    }

    /// A separate handle on the blob store.
    pub fn blobs(&self) -> Arc<dyn Blobs> {
        match &self.remote {
            Some((s3, _)) => Arc::new(S3Blobs::open(s3).unwrap()),
            None => Arc::new(DirBlobs::open(&self.dir().join("blobs")).unwrap()),
        }
    }

    /// The blob under `key`, if any.
    pub fn blob(&self, key: &str) -> Option<Vec<u8>> {
        self.blobs().get(&BlobKey::new(key).unwrap()).unwrap()
    }

    /// The blob under `key` once it exists (background processing), waiting at most 10 s.
    pub fn wait_blob(&self, key: &str) -> Option<Vec<u8>> {
        let blobs = self.blobs();
        let key = BlobKey::new(key).unwrap();
        let start = Instant::now();
        loop {
            if let Some(b) = blobs.get(&key).unwrap() {
                return Some(b);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every blob key, sorted.
    pub fn blob_keys(&self) -> Vec<String> {
        self.blobs()
            .list("")
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect()
    }
}

/// Run `check` against every available backend of `test`.
pub fn each_backend(test: &str, check: impl Fn(&Backend)) {
    for backend in Backend::all(test) {
        eprintln!("{test}: on {}", backend.name());
        check(&backend);
    }
}
