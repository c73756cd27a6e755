//! Ingest throughput of a real sphere-lite: uploads per second of a typical metrics package
//! (a ~4 KiB `metrics.json` and a ~2 KiB `logs.jsonl`, a fresh package id each time) over HTTP.
//!
//! The server runs in this process on 127.0.0.1:0 (the integration tests' fixture): on the
//! embedded default in a temporary directory, and, when `SPHERE_TEST_S3_ENDPOINT`,
//! `_ACCESS_KEY`, `_SECRET_KEY` (and optionally `_REGION`) are set (`./scripts/test sphere`
//! starts SeaweedFS and sets them), a second one with its blobs in S3. One device, one
//! keep-alive client; the time is from sending the TAR to the 200 (raw TAR stored and
//! recorded); the processing into files runs in the background, and the time until it has
//! caught up after the run is printed. The process's `VmRSS` is printed before and after each
//! run: it covers the server *and* the client, which share the process.
//!
//! When `SPHERE_TEST_MLFLOW_URL` is set too (with the S3 variables), a third server runs with
//! no local state (tracking in MLflow, blobs in S3), and its packages/s are printed as a ratio
//! of the embedded run's (both measured by this bench itself: uploads / time spent in them).
//!
//! Run with `cargo bench -p sphere-lite --bench ingest -- --noplot`. Nothing is asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sphere_lite::adapters::{MlflowSettings, S3Blobs, S3Settings};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::Blobs;
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

/// How many packages of `device` have been processed (their `metrics.json` stored).
type Processed = Box<dyn Fn() -> usize>;

/// Run the benchmark on `sphere`; returns the packages/s seen (uploads / time in uploads).
fn run(
    c: &mut Criterion,
    name: &str,
    sphere: Sphere,
    processed: impl Fn(&str) -> Processed,
) -> f64 {
    let key = sphere.create_enrollment_key(1).expect("enrollment key");
    let server = TestServer::start(sphere);
    let (dev, token) = server.enrolled(&key);
    let (metrics, logs) = (metrics_json(), logs_jsonl());
    let url = server.url(&paths::packages(&dev));
    let auth = format!("Bearer {token}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let sample = package(&dev, "size-probe", &metrics, &logs);
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
                package(&dev, &format!("bench-{n}"), &metrics, &logs)
            },
            |pkg| {
                let start = Instant::now();
                let response = agent
                    .post(&url)
                    .set("Authorization", &auth)
                    .set("Content-Type", CONTENT_TYPE)
                    .send_bytes(&pkg)
                    .expect("upload answered 200");
                let body = response.into_string().expect("body");
                assert!(body.contains("\"accepted\""), "{body}");
                spent += start.elapsed();
                body
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let done = processed(&dev);
    let start = Instant::now();
    let mut seen = done();
    while seen < n as usize && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
        seen = done();
    }
    eprintln!(
        "ingest/{name}: {n} packages uploaded; {seen} processed {:.1} s after the last upload; \
         VmRSS of the bench process (server + client) after: {}",
        start.elapsed().as_secs_f64(),
        rss()
    );
    drop(server);
    let rate = n as f64 / spent.as_secs_f64().max(1e-9);
    eprintln!("ingest/{name}: {rate:.1} packages/s over {n} uploads");
    rate
}

fn count_processed_dirs(data: &Path, device: &str) -> usize {
    std::fs::read_dir(data.join("blobs/devices").join(device).join("packages"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().join("metrics.json").is_file())
                .count()
        })
        .unwrap_or(0)
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
    let data = dir.path().to_path_buf();
    let sphere = open_stores(&data, None, None).expect("embedded stores");
    let embedded = run(c, "embedded", sphere, |dev| {
        let (data, dev) = (data.clone(), dev.to_owned());
        Box::new(move || count_processed_dirs(&data, &dev))
    });
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
    let s3_rate = run(c, "s3", sphere, s3_counter(settings.clone()));
    eprintln!(
        "ingest: s3 blobs = {:.2} x embedded packages/s",
        s3_rate / embedded
    );

    let Ok(url) = std::env::var("SPHERE_TEST_MLFLOW_URL") else {
        eprintln!(
            "ingest/mlflow+s3: SKIPPED: SPHERE_TEST_MLFLOW_URL is not set \
             (./scripts/test sphere starts MLflow and sets it)"
        );
        return;
    };
    let namespace = settings.prefix.clone().expect("a prefix").replace('_', "-");
    let mlflow = MlflowSettings { url, namespace };
    let sphere =
        open_stores(dir.path(), Some(&settings), Some(&mlflow)).expect("MLflow + S3 stores");
    let mlflow_rate = run(c, "mlflow+s3", sphere, s3_counter(settings));
    eprintln!(
        "ingest: mlflow+s3 (stateless) = {mlflow_rate:.1} packages/s = {:.2} x embedded ({embedded:.1} packages/s)",
        mlflow_rate / embedded
    );
}

/// Counts a device's processed packages in S3 (their `metrics.json` objects).
fn s3_counter(settings: S3Settings) -> impl Fn(&str) -> Processed {
    move |dev| {
        let prefix = format!("devices/{dev}/packages/");
        let s3 = S3Blobs::open(&settings).expect("S3 client");
        Box::new(move || {
            s3.list(&prefix)
                .map(|keys| {
                    keys.iter()
                        .filter(|k| k.as_str().ends_with("/metrics.json"))
                        .count()
                })
                .unwrap_or(0)
        })
    }
}

criterion_group! {
    name = benches;
    // No plots (as in the runtime's benches): criterion's plot backend needs system fonts.
    config = Criterion::default().without_plots();
    targets = ingest
}
criterion_main!(benches);
