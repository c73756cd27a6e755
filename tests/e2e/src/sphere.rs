//! A real `sphere-lite` process: secrets made with its CLI, `serve` on a free port, stopped with
//! SIGTERM and started again on the same data, on the embedded backend or on MLflow + S3.
//!
//! The binary comes from `SPHERE_LITE_BIN`, else `$CARGO_TARGET_DIR/debug/sphere-lite`, else the
//! workspace's `target/debug/sphere-lite` (`scripts/test e2e` builds it first).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Where the sphere-lite binary is.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SPHERE_LITE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug").join("sphere-lite");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p sphere-lite` (scripts/test e2e does) or set \
         SPHERE_LITE_BIN",
        bin.display()
    );
    bin
}

/// Which backend the server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded redb + blob directory.
    Embedded,
    /// MLflow + S3 (the test stack's), these extra `serve` arguments.
    Mlflow(Vec<String>),
}

/// A running (or stopped) sphere-lite.
pub struct Sphere {
    /// Its data folder (and logs).
    pub dir: tempfile::TempDir,
    backend: Backend,
    release_keys: Option<PathBuf>,
    child: Option<Child>,
    /// `host:port` it listens on while running.
    pub addr: String,
    /// An operator token.
    pub operator: String,
    /// An enrollment key (several uses).
    pub enrollment_key: String,
    starts: u32,
}

impl Sphere {
    /// Embedded backend, releases signed by the keys in `release_keys` trusted.
    pub fn embedded(release_keys: Option<&Path>) -> Sphere {
        Self::create(Backend::Embedded, release_keys)
    }

    /// MLflow + S3 from `SPHERE_TEST_MLFLOW_URL` and `SPHERE_TEST_S3_*` under a fresh
    /// namespace, or `None` when unset (`test_support::missing`: a note, or a failure under
    /// `./scripts/test`).
    pub fn mlflow(test: &str, release_keys: Option<&Path>) -> Option<Sphere> {
        let (Ok(url), Ok(s3)) = (
            std::env::var("SPHERE_TEST_MLFLOW_URL"),
            std::env::var("SPHERE_TEST_S3_ENDPOINT"),
        ) else {
            tinylcm_protocol::test_support::missing(
                &format!(
                    "{test}, MLflow + S3 variant: the services (SPHERE_TEST_MLFLOW_URL or \
                     SPHERE_TEST_S3_ENDPOINT is not set)"
                ),
                "run ./scripts/test e2e, which starts MLflow and SeaweedFS and sets them",
            );
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let space = format!("e2e/{test}-{nanos:x}");
        let args = [
            "--mlflow-url",
            &url,
            "--mlflow-namespace",
            &space,
            "--s3-endpoint",
            &s3,
            "--s3-bucket",
            "sphere-e2e",
            "--s3-prefix",
            &space,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Some(Self::create(Backend::Mlflow(args), release_keys))
    }

    fn create(backend: Backend, release_keys: Option<&Path>) -> Sphere {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sphere {
            dir,
            backend,
            release_keys: release_keys.map(Path::to_path_buf),
            child: None,
            addr: String::new(),
            operator: String::new(),
            enrollment_key: String::new(),
            starts: 0,
        };
        s.enrollment_key = s.secret(&["enrollment-key", "create", "--uses", "20"], "sle_");
        s.operator = s.secret(&["token", "create", "--operator", "ops"], "slo_");
        s.start();
        s
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args)
            .arg("--data")
            .arg(self.dir.path().join("data"))
            .env_remove("SPHERE_LITE_CONFIG")
            .env_remove("SPHERE_LITE_DATA");
        if let Backend::Mlflow(extra) = &self.backend {
            c.args(extra);
            for (to, from) in [
                ("SPHERE_LITE_S3_ACCESS_KEY", "SPHERE_TEST_S3_ACCESS_KEY"),
                ("SPHERE_LITE_S3_SECRET_KEY", "SPHERE_TEST_S3_SECRET_KEY"),
                ("SPHERE_LITE_S3_REGION", "SPHERE_TEST_S3_REGION"),
            ] {
                if let Ok(v) = std::env::var(from) {
                    c.env(to, v);
                }
            }
        }
        c
    }

    fn secret(&self, args: &[&str], prefix: &str) -> String {
        let out = self.command(args).output().unwrap();
        assert!(out.status.success(), "sphere-lite {args:?}: {out:?}");
        let s = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(s.starts_with(prefix), "{s}");
        s
    }

    /// Starts `serve` (on a new free port) and waits for its "serving" line.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = self.dir.path().join(format!("serve-{}.log", self.starts));
        let mut c = self.command(&["serve", "--listen", "127.0.0.1:0"]);
        if let Some(k) = &self.release_keys {
            c.arg("--release-keys").arg(k);
        }
        c.env("SPHERE_LITE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        self.child = Some(c.spawn().unwrap());
        let addr = crate::wait_for(60, "sphere-lite to serve", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sphere-lite exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&log).ok()?;
            let line = text.lines().find(|l| l.contains("serving"))?;
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
                .map(str::to_string)
        });
        self.addr = addr;
    }

    /// Stops it with SIGTERM (in-flight requests finish) and waits.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: a plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..400 {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A request as the operator: (status, JSON body or `null`).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_as(&self.operator.clone(), method, path, body)
    }

    /// A request with `token`.
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let req = ureq::request(method, &format!("{}{path}", self.url()))
            .set("Authorization", &format!("Bearer {token}"))
            .timeout(Duration::from_secs(30));
        let result = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        reply(result)
    }

    /// `GET` `path` as the operator: (status, the body's bytes, at most 16 MiB), for blobs
    /// such as a drift event's sample image (`/ui/img/<blob key>`).
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let result = ureq::get(&format!("{}{path}", self.url()))
            .set("Authorization", &format!("Bearer {}", self.operator))
            .timeout(Duration::from_secs(30))
            .call();
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error talking to sphere-lite: {e}"),
        };
        let status = response.status();
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(16 << 20)
            .read_to_end(&mut bytes)
            .unwrap();
        (status, bytes)
    }

    /// `POST` a multipart form: (field, file name, bytes).
    pub fn post_multipart(
        &self,
        path: &str,
        parts: &[(&str, Option<&str>, &[u8])],
    ) -> (u16, Value) {
        const BOUNDARY: &str = "----tinylcm-e2e-boundary-3f9a";
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let head = match file {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            };
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let r = ureq::post(&format!("{}{path}", self.url()))
            .set("Authorization", &format!("Bearer {}", self.operator))
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .timeout(Duration::from_secs(60))
            .send_bytes(&body);
        reply(r)
    }

    /// Whether device `id` (calling with its own `token`) has no feedback left to acknowledge.
    pub fn feedback_drained(&self, token: &str, id: &str) -> bool {
        let (status, page) = self.call_as(
            token,
            "GET",
            &format!("/api/v2/devices/{id}/feedback?after=0"),
            None,
        );
        status == 200 && page["items"].as_array().is_some_and(|i| i.is_empty())
    }

    /// The dashboard page at `path` (e.g. `/ui/models`) as the operator: logs in to a fresh
    /// session and reads the page's HTML.
    pub fn dashboard_page(&self, path: &str) -> String {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(30))
            .build();
        let login = agent
            .post(&format!("{}/ui/login", self.url()))
            .send_form(&[("token", self.operator.as_str())])
            .expect("the login answered");
        let cookie = login
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned();
        agent
            .get(&format!("{}{path}", self.url()))
            .set("Cookie", &cookie)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_string()
            .unwrap()
    }

    /// The device's row in `GET /api/v2/devices`.
    pub fn device(&self, id: &str) -> Option<Value> {
        let (status, body) = self.call("GET", "/api/v2/devices", None);
        assert_eq!(status, 200, "{body}");
        body["devices"]
            .as_array()?
            .iter()
            .find(|d| d["device_id"] == id)
            .cloned()
    }

    /// Writes the enrollment key to `dir/enroll.key` (as it would lie on a device's boot
    /// partition) and returns that file.
    pub fn enrollment_key_file(&self, dir: &Path) -> PathBuf {
        let file = dir.join("enroll.key");
        std::fs::write(&file, format!("{}\n", self.enrollment_key)).unwrap();
        file
    }

    /// How many packages the server stored from device `id` (its row's `packages`).
    pub fn packages(&self, id: &str) -> u64 {
        let row = self
            .device(id)
            .unwrap_or_else(|| panic!("device {id} is not listed"));
        row["packages"]
            .as_u64()
            .unwrap_or_else(|| panic!("no package count in {row}"))
    }

    /// The sequence numbers (as the device numbered them) of every drift event of device `id`
    /// on the server, ascending.
    pub fn event_seqs(&self, id: &str) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .drift_events(id)
            .iter()
            .map(|e| e["event_seq"].as_u64().unwrap())
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// Every drift event of device `id` (all pages).
    pub fn drift_events(&self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let mut path = format!("/api/v2/drift-events?device={id}&limit=500");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let (status, body) = self.call("GET", &path, None);
            assert_eq!(status, 200, "{body}");
            out.extend(body["events"].as_array().cloned().unwrap_or_default());
            match body["next_after"].as_u64() {
                Some(a) => after = Some(a),
                None => return out,
            }
        }
    }
}

impl Drop for Sphere {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error talking to sphere-lite: {e}"),
    };
    let status = response.status();
    let mut text = String::new();
    response
        .into_reader()
        .take(16 << 20)
        .read_to_string(&mut text)
        .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
