//! Two sphere-lite replicas on one MLflow + S3, behind a round-robin client, against the
//! embedded default in the same run.
//!
//! Run with the stack's `SPHERE_TEST_*` settings (as `./scripts/test sphere` starts MLflow and
//! SeaweedFS): `cargo bench -p sphere-lite --bench replicas`. `REPLICAS_DEVICES` concurrent
//! devices (default 8), each uploading `REPLICAS_PACKAGES` packages (default 100) one at a time,
//! the n-th upload of every device to replica n mod 2, as a load balancer would spread them.
//! The same load runs first against one embedded server. Reported for each: accepted packages/s
//! (uploads answered 200 over the wall time of the uploads) and processed packages/s (the same
//! packages over the time until every one was processed), and the two replicas' figures as
//! ratios to the embedded ones, and how many MLflow requests the two replicas sent per package
//! (uploads and processing together). The package is shaped like the runtime's: a
//! `metrics.json` of 140 metric keys (the dashboard's own keys, a few more figures and a
//! 64-class model's per-class count and mean confidence) and a 2 KiB `logs.jsonl`.
//! `REPLICAS_MLFLOW_METRIC_KEYS` sets the replicas' `mlflow_metric_keys` (comma-separated;
//! default `*`, every key). `REPLICAS_DELAY_MS` (default 0) puts MLflow and S3 that many
//! milliseconds away from the replicas, each way: the replicas reach them through a relay in
//! the bench that holds every chunk that long before passing it on, as a stack on other
//! machines would (every request then costs at least two delays). Nothing is asserted.
//!
//! Processing is over when no package is pending: on MLflow + S3 that is a listing of the
//! pending copies (one request), not [`Sphere::pending_count`], which reads every pending
//! record and, polled during a backlog of hundreds, loaded S3 more than processing did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere_lite::adapters::mlflow::KeptKeys;
use sphere_lite::adapters::{MlflowSettings, MlflowTracking, S3Blobs, S3Requests, S3Settings};
use sphere_lite::domain::Sphere;
use sphere_lite::ports::Blobs;
use sphere_lite::server::open_stores;
use tinylcm_protocol::package::{CONTENT_TYPE, FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "../tests/support/server.rs"]
mod server;

use server::TestServer;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A metrics document shaped like the runtime's (`tinylcm::sync::metrics`): the keys the
/// dashboard charts and reads, a few more system and latency figures, and a 64-class model's
/// per-class count and mean confidence: 140 metric keys in all.
fn metrics_json() -> Vec<u8> {
    let classes: serde_json::Map<String, serde_json::Value> = (0..64)
        .map(|i| {
            (
                format!("class_{i:02}"),
                serde_json::json!({"total": 1000 + i * 37, "mean_confidence": 0.5 + f64::from(i) / 200.0}),
            )
        })
        .collect();
    serde_json::json!({
        "frames_total": 36000, "fps_interval": 9.8,
        "latency": {"total": {"p50_us": 11800.0, "p99_us": 19700.0},
                    "infer": {"p50_us": 9100.0, "p99_us": 15200.0}},
        "confidence": {"mean": 0.81},
        "system": {"process_cpu_percent": 41.5, "rss_mib": 59.8, "soc_temperature_c": 52.1},
        "sync": {"interval_seconds": 60, "models_refused": 0},
        "classes": classes,
    })
    .to_string()
    .into_bytes()
}

fn logs_jsonl() -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0u64;
    while out.len() < 2048 {
        out.push_str(&format!(
            "{{\"unix_ms\": {}, \"level\": \"INFO\", \"target\": \"tinylcm::pipeline\", \"message\": \"window closed\"}}\n",
            1_764_147_000_000 + i * 1000
        ));
        i += 1;
    }
    out.into_bytes()
}

fn package(device: &str, id: &str, created: u64, metrics: &[u8], logs: &[u8]) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, created).expect("ids");
    b.add("metrics.json", FileKind::Metrics, metrics.to_vec())
        .expect("metrics member");
    b.add("logs.jsonl", FileKind::Logs, logs.to_vec())
        .expect("logs member");
    b.finish().expect("package")
}

/// What one run measured.
struct Rates {
    accepted_per_s: f64,
    processed_per_s: f64,
    uploads: usize,
    errors: usize,
}

/// Upload from `devices` devices through `servers` round robin; wait until `pending()` says
/// no package is left (`usize::MAX`: it could not tell).
fn run(
    name: &str,
    servers: &[TestServer],
    spheres: &[Arc<Sphere>],
    pending: &dyn Fn() -> usize,
    devices: usize,
    per_device: usize,
) -> Rates {
    let key = spheres[0]
        .create_enrollment_key(u32::try_from(devices).unwrap_or(u32::MAX))
        .expect("enrollment key");
    let enrolled: Vec<(String, String)> = (0..devices)
        .map(|n| servers[n % servers.len()].enrolled(&key))
        .collect();
    let (metrics, logs) = (metrics_json(), logs_jsonl());
    let urls: Vec<String> = servers.iter().map(|s| s.url("")).collect();
    let start = Instant::now();
    let errors: usize = std::thread::scope(|s| {
        let handles: Vec<_> = enrolled
            .iter()
            .map(|(dev, token)| {
                let (urls, metrics, logs) = (&urls, &metrics, &logs);
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(60))
                        .build();
                    let auth = format!("Bearer {token}");
                    let mut errors = 0;
                    for n in 0..per_device {
                        let created = 1_764_147_600_000 + n as u64 * 1000;
                        let body = package(dev, &format!("bench-{n}"), created, metrics, logs);
                        let url = format!(
                            "{}{}",
                            urls[n % urls.len()].trim_end_matches('/'),
                            paths::packages(dev)
                        );
                        let answer = agent
                            .post(&url)
                            .set("Authorization", &auth)
                            .set("Content-Type", CONTENT_TYPE)
                            .send_bytes(&body);
                        let accepted = answer
                            .ok()
                            .and_then(|r| r.into_string().ok())
                            .is_some_and(|body| body.contains("\"accepted\""));
                        if !accepted {
                            errors += 1;
                        }
                    }
                    errors
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("device thread"))
            .sum()
    });
    let uploaded = start.elapsed();
    let uploads = devices * per_device;
    // Processing: every replica's pending packages (one shared listing on MLflow + S3).
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut left = pending();
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = pending();
    }
    let processed = start.elapsed();
    let rates = Rates {
        accepted_per_s: (uploads - errors) as f64 / uploaded.as_secs_f64(),
        processed_per_s: (uploads - errors) as f64 / processed.as_secs_f64(),
        uploads,
        errors,
    };
    eprintln!(
        "replicas/{name}: {} devices x {per_device} packages through {} server(s): \
         {:.1} accepted/s ({:.1} s), {:.1} processed/s end to end ({:.1} s{}), {} errors",
        devices,
        servers.len(),
        rates.accepted_per_s,
        uploaded.as_secs_f64(),
        rates.processed_per_s,
        processed.as_secs_f64(),
        if left > 0 { ", NOT caught up" } else { "" },
        rates.errors
    );
    rates
}

/// CPU time (user + system, ms) the processes `REPLICAS_CPU_PIDS` (comma-separated, e.g. the
/// SeaweedFS and MLflow processes of the stack) have used so far, each; empty when unset.
/// Assumes the usual 100 clock ticks per second.
fn cpu_ms() -> Vec<(String, u64)> {
    let pids = std::env::var("REPLICAS_CPU_PIDS").unwrap_or_default();
    pids.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pid| {
            let pid = pid.trim().to_owned();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            (pid, (ticks(11) + ticks(12)) * 10)
        })
        .collect()
}

/// `REPLICAS_DELAY_MS` as a duration (zero: no relay).
fn delay() -> Duration {
    Duration::from_millis(env_or("REPLICAS_DELAY_MS", 0) as u64)
}

/// `url` (`http://host:port`) reached through a local relay that holds each chunk `delay`
/// before passing it on, either way; `url` itself for a zero delay. The relay runs until the
/// bench ends.
fn delayed(url: &str, delay: Duration) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    if delay.is_zero() {
        return url.to_owned();
    }
    let target = url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .expect("an http:// URL")
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").expect("relay port");
    let relay = format!("http://{}", listener.local_addr().expect("relay address"));
    // One direction: chunks read are stamped and written once `delay` has passed since, so
    // the relay adds latency without limiting throughput.
    let pump = move |mut from: TcpStream, mut to: TcpStream| {
        let (chunks, due) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0
                    || chunks
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (at, chunk) in due {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            pump(client, server);
            pump(server2, client2);
        }
    });
    relay
}

fn remote() -> Option<(S3Settings, MlflowSettings)> {
    let endpoint = std::env::var("SPHERE_TEST_S3_ENDPOINT").ok()?;
    let url = std::env::var("SPHERE_TEST_MLFLOW_URL").ok()?;
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let space = format!("bench/replicas-{nonce:x}");
    Some((
        S3Settings {
            endpoint,
            bucket: "sphere-bench".into(),
            access_key: var("SPHERE_TEST_S3_ACCESS_KEY"),
            secret_key: var("SPHERE_TEST_S3_SECRET_KEY"),
            region: std::env::var("SPHERE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
            prefix: Some(space.clone()),
        },
        MlflowSettings {
            url,
            namespace: space,
            metric_keys: KeptKeys::parse(&mlflow_metric_keys())
                .expect("REPLICAS_MLFLOW_METRIC_KEYS"),
        },
    ))
}

/// `REPLICAS_MLFLOW_METRIC_KEYS` (comma-separated patterns, as `mlflow_metric_keys`), default
/// `*`: every key, sphere-lite's default.
fn mlflow_metric_keys() -> Vec<String> {
    std::env::var("REPLICAS_MLFLOW_METRIC_KEYS")
        .unwrap_or_else(|_| "*".into())
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn main() {
    let devices = env_or("REPLICAS_DEVICES", 8);
    let per_device = env_or("REPLICAS_PACKAGES", 100);
    let Some((s3, mlflow)) = remote() else {
        eprintln!(
            "replicas: SKIPPED: SPHERE_TEST_S3_ENDPOINT or SPHERE_TEST_MLFLOW_URL is not set \
             (./scripts/test sphere starts SeaweedFS and MLflow and sets them)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Arc::new(open_stores(dir.path(), None, None).expect("embedded stores"));
    let server = TestServer::start_shared(embedded.clone(), None);
    let count = || embedded.pending_count().unwrap_or(usize::MAX);
    let base = run(
        "embedded",
        &[server],
        std::slice::from_ref(&embedded),
        &count,
        devices,
        per_device,
    );

    // As `open_stores` opens them, keeping each replica's tracking to count its MLflow calls
    // and its two S3 stores (blobs, package records) to count their requests.
    type Replica = (Arc<MlflowTracking>, Arc<Sphere>, [Arc<S3Blobs>; 2]);
    let far_s3 = S3Settings {
        endpoint: delayed(&s3.endpoint, delay()),
        ..s3.clone()
    };
    let far_mlflow = MlflowSettings {
        url: delayed(&mlflow.url, delay()),
        ..mlflow.clone()
    };
    let replicas: Vec<Replica> = (0..2)
        .map(|_| {
            let s3_blobs = Arc::new(S3Blobs::open(&far_s3).expect("S3 blobs"));
            let records = Arc::new(S3Blobs::open(&far_s3.tracking()).expect("package records"));
            let blobs: Arc<dyn Blobs> = s3_blobs.clone();
            let tracking = Arc::new(
                MlflowTracking::open(&far_mlflow)
                    .expect("MLflow tracking")
                    .with_package_store(records.clone())
                    .with_release_files(blobs.clone()),
            );
            let sphere = Arc::new(Sphere::new(tracking.clone(), blobs));
            (tracking, sphere, [s3_blobs, records])
        })
        .collect();
    let spheres: Vec<Arc<Sphere>> = replicas.iter().map(|(_, s, _)| s.clone()).collect();
    let servers: Vec<TestServer> = spheres
        .iter()
        .map(|s| TestServer::start_shared(s.clone(), None))
        .collect();
    let records = S3Blobs::open(&s3.tracking()).expect("package records");
    let count_requests = || records.requests().list;
    // Whether any package is pending: a listing of one key, so the bench's own polls (ten a
    // second) cost the S3 server little beside the replicas' work (a full listing of
    // hundreds of pending copies each time was ≈ 2.5 ms of SeaweedFS CPU per package).
    let count = || {
        records
            .list_page("pending/", None, 1)
            .map_or(usize::MAX, |keys| keys.len())
    };
    let calls = || {
        replicas
            .iter()
            .map(|(t, _, _)| t.mlflow_calls())
            .sum::<u64>()
    };
    let s3_requests = |which: usize| {
        replicas
            .iter()
            .map(|(_, _, stores)| stores[which].requests())
            .fold(S3Requests::default(), |a, b| a + b)
    };
    let calls_before = calls();
    let (blobs_before, records_before) = (s3_requests(0), s3_requests(1));
    let cpu_before = cpu_ms();
    let two = run(
        "mlflow+s3 x2",
        &servers,
        &spheres,
        &count,
        devices,
        per_device,
    );
    let calls = calls() - calls_before;
    for ((pid, before), (_, after)) in cpu_before.iter().zip(cpu_ms()) {
        eprintln!(
            "replicas: process {pid} used {} ms of CPU, {:.1} ms per package",
            after - before,
            (after - before) as f64 / two.uploads as f64
        );
    }
    let per = |r: S3Requests| {
        let n = two.uploads as f64;
        format!(
            "{:.2} (GET {:.2}, PUT {:.2}, LIST {:.2}, DELETE {:.2})",
            r.total() as f64 / n,
            r.get as f64 / n,
            r.put as f64 / n,
            r.list as f64 / n,
            r.delete as f64 / n
        )
    };
    let (blobs, records) = (
        s3_requests(0) - blobs_before,
        s3_requests(1) - records_before,
    );
    eprintln!(
        "replicas: S3 requests per package from the two replicas: {} = blobs {} + package \
         records {}; the bench's own pending polls: {} LIST",
        per(blobs + records),
        per(blobs),
        per(records),
        count_requests(),
    );
    eprintln!(
        "replicas: two MLflow + S3 replicas ({} ms away) = {:.2} x embedded accepted/s, {:.2} x \
         embedded processed/s ({} uploads each, {} + {} errors); {calls} MLflow calls, {:.2} per \
         package",
        delay().as_millis(),
        two.accepted_per_s / base.accepted_per_s,
        two.processed_per_s / base.processed_per_s,
        two.uploads,
        base.errors,
        two.errors,
        calls as f64 / two.uploads as f64,
    );
}
