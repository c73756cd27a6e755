//! Ingest throughput of a real sphere-lite: uploads per second of a typical metrics package
//! (a ~4 KiB `metrics.json` and a ~2 KiB `logs.jsonl`, a fresh package id each time) over HTTP.
//!
//! The server runs in this process on 127.0.0.1:0 (the integration tests' fixture): on the
//! embedded default in a temporary directory, and, when `SPHERE_TEST_S3_ENDPOINT`,
//! `_ACCESS_KEY`, `_SECRET_KEY` (and optionally `_REGION`) are set (`./scripts/test sphere`
//! starts SeaweedFS and sets them), a second one with its blobs in S3. Each server is measured
//! twice:
//!
//! * sequential: one device, one keep-alive client uploading one package at a time
//!   (criterion's samples); the time is from sending the TAR to the 200 (raw TAR stored and
//!   recorded durably). This is the baseline the fleet figure is a ratio of.
//! * fleet: `INGEST_CLIENTS` devices (default 16), each with its own keep-alive client on its
//!   own thread, uploading at once for `INGEST_FLEET_SECS` (default 10): packages / wall time,
//!   with the p50 and p99 of upload → 200.
//!
//! The processing into files runs in the background; after each phase the bench waits until
//! nothing is pending and prints the end-to-end rate: uploads / (upload time + that catch-up).
//! The clients share the two cores with the server, so every figure is a lower bound of what
//! the server alone would take. The process's `VmRSS` is printed before and after each run:
//! it covers the server *and* the clients, which share the process.
//!
//! When `SPHERE_TEST_MLFLOW_URL` is set too (with the S3 variables), a third server runs with
//! no local state (tracking in MLflow, blobs in S3), and its packages/s are printed as a ratio
//! of the embedded run's (both measured by this bench itself).
//!
//! Run with `cargo bench -p sphere-lite --bench ingest -- --noplot`. Nothing is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sphere_lite::adapters::{MlflowSettings, S3Settings};
use sphere_lite::domain::Sphere;
use sphere_lite::rss::vm_rss_kib;
use sphere_lite::server::open_stores;
use tinylcm_protocol::package::{CONTENT_TYPE, FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "../tests/support/server.rs"]
mod server;

use server::TestServer;

/// A ~4 KiB metrics document shaped like the runtime's (counters, summaries, system stats).
fn metrics_json() -> Vec<u8> {
    let mut classes = String::new();
    for i in 0..64 {
        if i > 0 {
            classes.push(',');
        }
        classes.push_str(&format!(
            r#""class_{i:02}": {{"count": {}, "mean_confidence": 0.{:04}}}"#,
            1000 + i * 37,
            5000 + i * 97
        ));
    }
    let doc = format!(
        r#"{{"schema": 1, "window_start_unix_ms": 1764147000000, "window_end_unix_ms": 1764147600000,
"total_inferences": 36000, "dropped_frames": 3,
"latency_ms": {{"p50": 11.8, "p90": 14.2, "p99": 19.7, "max": 31.0}},
"confidence": {{"mean": 0.8123, "p10": 0.55, "p50": 0.86}},
"system": {{"cpu_percent": 41.5, "rss_kib": 61234, "temperature_c": 52.1, "disk_free_mib": 10240}},
"classes": {{{classes}}}}}"#
    );
    doc.into_bytes()
}

/// ~2 KiB of JSON-lines log records.
fn logs_jsonl() -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < 2048 {
        out.push_str(&format!(
            r#"{{"unix_ms": {}, "level": "INFO", "target": "tinylcm::pipeline", "message": "window closed", "frames": {}}}"#,
            1_764_147_000_000u64 + i * 1000,
            600 + i
        ));
        out.push('\n');
        i += 1;
    }
    out.into_bytes()
}

fn package(device: &str, id: &str, metrics: &[u8], logs: &[u8]) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1_764_147_600_000).expect("ids");
    b.add("metrics.json", FileKind::Metrics, metrics.to_vec())
        .expect("metrics member");
    b.add("logs.jsonl", FileKind::Logs, logs.to_vec())
        .expect("logs member");
    b.finish().expect("package")
}

fn rss() -> String {
    vm_rss_kib().map_or("unknown".into(), |k| format!("{k} KiB"))
}

/// Devices uploading at once in the fleet phase (`INGEST_CLIENTS`, default 16).
fn fleet_clients() -> usize {
    env_number("INGEST_CLIENTS", 16)
}

/// How long the fleet phase uploads (`INGEST_FLEET_SECS`, default 10).
fn fleet_duration() -> Duration {
    Duration::from_secs(env_number("INGEST_FLEET_SECS", 10) as u64)
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

/// Waits until `sphere` has processed every accepted package (at most 5 minutes); the
/// seconds it took.
fn catch_up(sphere: &Sphere) -> f64 {
    let start = Instant::now();
    while sphere.pending_count().expect("pending count") > 0
        && start.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed().as_secs_f64()
}

/// One device's keep-alive client.
struct Client {
    agent: ureq::Agent,
    url: String,
    auth: String,
    device: String,
}

impl Client {
    fn new(server: &TestServer, key: &str) -> Client {
        let (device, token) = server.enrolled(key);
        Client {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            url: server.url(&paths::packages(&device)),
            auth: format!("Bearer {token}"),
            device,
        }
    }

    /// Upload `pkg`; panics unless it is answered 200 `accepted`.
    fn upload(&self, pkg: &[u8]) {
        let response = self
            .agent
            .post(&self.url)
            .set("Authorization", &self.auth)
            .set("Content-Type", CONTENT_TYPE)
            .send_bytes(pkg)
            .expect("upload answered 200");
        let body = response.into_string().expect("body");
        assert!(body.contains("\"accepted\""), "{body}");
    }
}

/// What one backend sustained.
struct Rates {
    /// One client, one upload at a time (packages/s over the time spent in uploads).
    sequential: f64,
    /// The fleet phase: uploads / wall time, every client at once.
    fleet: f64,
}

/// Run the benchmark on `sphere`: one client uploading one package at a time (criterion's
/// samples), then [`fleet_clients`] devices uploading at once for [`fleet_duration`].
fn run(c: &mut Criterion, name: &str, sphere: Sphere) -> Rates {
    let clients = fleet_clients();
    let key = sphere
        .create_enrollment_key(u32::try_from(clients + 1).expect("client count"))
        .expect("enrollment key");
    let sphere = Arc::new(sphere);
    let server = TestServer::start_shared(sphere.clone(), None);
    let one = Client::new(&server, &key);
    let (metrics, logs) = (metrics_json(), logs_jsonl());
    let sample = package(&one.device, "size-probe", &metrics, &logs);
    eprintln!(
        "ingest/{name}: package of {} bytes (metrics.json {} B, logs.jsonl {} B); \
         VmRSS of the bench process (server + client) before: {}",
        sample.len(),
        metrics.len(),
        logs.len(),
        rss()
    );

    let mut n = 0u64;
    let mut spent = Duration::ZERO;
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                n += 1;
                package(&one.device, &format!("bench-{n}"), &metrics, &logs)
            },
            |pkg| {
                let start = Instant::now();
                one.upload(&pkg);
                spent += start.elapsed();
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let behind = catch_up(&sphere);
    let sequential = n as f64 / spent.as_secs_f64().max(1e-9);
    eprintln!(
        "ingest/{name}: sequential: {n} packages uploaded, {sequential:.1} packages/s \
         (one client); processing caught up {behind:.1} s after the last upload; \
         end to end {:.1} packages/s; VmRSS after: {}",
        n as f64 / (spent.as_secs_f64() + behind),
        rss()
    );

    let fleet: Vec<Client> = (0..clients).map(|_| Client::new(&server, &key)).collect();
    let deadline = fleet_duration();
    let start = Instant::now();
    let latencies: Vec<Vec<Duration>> = std::thread::scope(|scope| {
        let workers: Vec<_> = fleet
            .iter()
            .map(|client| {
                let (metrics, logs) = (&metrics, &logs);
                scope.spawn(move || {
                    let mut times = Vec::new();
                    while start.elapsed() < deadline {
                        let id = format!("fleet-{}", times.len());
                        let pkg = package(&client.device, &id, metrics, logs);
                        let sent = Instant::now();
                        client.upload(&pkg);
                        times.push(sent.elapsed());
                    }
                    times
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let behind = catch_up(&sphere);
    let mut times: Vec<Duration> = latencies.into_iter().flatten().collect();
    times.sort();
    let uploads = times.len();
    let at = |q: f64| {
        times
            .get(((uploads as f64 * q) as usize).min(uploads.saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rate = uploads as f64 / wall;
    eprintln!(
        "ingest/{name}: fleet: {clients} devices at once, {uploads} packages in {wall:.1} s = \
         {rate:.1} packages/s = {:.2} x the sequential client of this run \
         (upload -> 200 p50 {:.1} ms, p99 {:.1} ms); processing caught up {behind:.1} s \
         after the last upload: end to end {:.1} packages/s; VmRSS after: {}",
        rate / sequential,
        at(0.5),
        at(0.99),
        uploads as f64 / (wall + behind),
        rss()
    );
    drop(server);
    Rates {
        sequential,
        fleet: rate,
    }
}

/// S3 settings from `SPHERE_TEST_S3_*` under a fresh prefix, or `None` if unset.
fn s3_settings() -> Option<S3Settings> {
    let endpoint = std::env::var("SPHERE_TEST_S3_ENDPOINT").ok()?;
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    Some(S3Settings {
        endpoint,
        bucket: "sphere-bench".into(),
        access_key: var("SPHERE_TEST_S3_ACCESS_KEY"),
        secret_key: var("SPHERE_TEST_S3_SECRET_KEY"),
        region: std::env::var("SPHERE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        prefix: Some(format!("ingest-{nonce:x}")),
    })
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sphere = open_stores(dir.path(), None, None).expect("embedded stores");
    let embedded = run(c, "embedded", sphere);
    drop(dir);

    let Some(settings) = s3_settings() else {
        eprintln!(
            "ingest/s3: SKIPPED: SPHERE_TEST_S3_ENDPOINT is not set \
             (./scripts/test sphere starts SeaweedFS and sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sphere = open_stores(dir.path(), Some(&settings), None).expect("S3 stores");
    let s3 = run(c, "s3", sphere);
    eprintln!(
        "ingest: s3 blobs = {:.2} x embedded packages/s (sequential), {:.2} x (fleet)",
        s3.sequential / embedded.sequential,
        s3.fleet / embedded.fleet
    );

    let Ok(url) = std::env::var("SPHERE_TEST_MLFLOW_URL") else {
        eprintln!(
            "ingest/mlflow+s3: SKIPPED: SPHERE_TEST_MLFLOW_URL is not set \
             (./scripts/test sphere starts MLflow and sets it)"
        );
        return;
    };
    let namespace = settings.prefix.clone().expect("a prefix").replace('_', "-");
    let mlflow = MlflowSettings {
        url,
        namespace,
        metric_keys: Default::default(),
    };
    let sphere =
        open_stores(dir.path(), Some(&settings), Some(&mlflow)).expect("MLflow + S3 stores");
    let ml = run(c, "mlflow+s3", sphere);
    eprintln!(
        "ingest: mlflow+s3 (stateless) = {:.1} packages/s = {:.2} x embedded ({:.1} packages/s) \
         sequential; fleet {:.1} packages/s = {:.2} x embedded's fleet ({:.1} packages/s)",
        ml.sequential,
        ml.sequential / embedded.sequential,
        embedded.sequential,
        ml.fleet,
        ml.fleet / embedded.fleet,
        embedded.fleet
    );
}

criterion_group! {
    name = benches;
    // No plots (as in the runtime's benches): criterion's plot backend needs system fonts.
    config = Criterion::default().without_plots();
    targets = ingest
}
criterion_main!(benches);
