//! Fleet load benchmark: the release `sphere-lite` binary as its own process (embedded
//! default, temporary data directory), a simulated fleet syncing against it all at once, and
//! the server's memory read from `/proc/<pid>/status` (idle before, peak and after).
//!
//! Run with `cargo bench -p sphere-lite --bench fleet`; `FLEET_DEVICES` (default 500) and
//! `FLEET_ROUNDS` (default 5) change the load. It prints latency percentiles per request kind,
//! errors and RSS; nothing is asserted (the load test in `tests/fleet.rs` asserts correctness).
//!
//! `FLEET_BACKEND=mlflow` runs the fleet against two replicas on MLflow + S3 instead (the
//! stack's `SPHERE_TEST_*` settings, as `./scripts/test sphere` starts them; a fresh namespace
//! and prefix), each device's requests alternating between them as behind a round-robin
//! balancer; it then also waits until both report no pending package (`/metrics`) and prints
//! how long processing took after the storm.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/fleet.rs"]
mod fleet;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` (peak) of `pid` in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The MLflow + S3 settings of the stack as the binary's environment, with a fresh namespace
/// and prefix; `None` when the stack is not configured.
fn mlflow_env() -> Option<Vec<(String, String)>> {
    let var = |name: &str| std::env::var(name).ok();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let space = format!("bench/fleet-{nonce:x}");
    Some(vec![
        (
            "SPHERE_LITE_MLFLOW_URL".into(),
            var("SPHERE_TEST_MLFLOW_URL")?,
        ),
        ("SPHERE_LITE_MLFLOW_NAMESPACE".into(), space.clone()),
        (
            "SPHERE_LITE_S3_ENDPOINT".into(),
            var("SPHERE_TEST_S3_ENDPOINT")?,
        ),
        ("SPHERE_LITE_S3_BUCKET".into(), "sphere-bench".into()),
        ("SPHERE_LITE_S3_PREFIX".into(), space),
        (
            "SPHERE_LITE_S3_ACCESS_KEY".into(),
            var("SPHERE_TEST_S3_ACCESS_KEY")?,
        ),
        (
            "SPHERE_LITE_S3_SECRET_KEY".into(),
            var("SPHERE_TEST_S3_SECRET_KEY")?,
        ),
        (
            "SPHERE_LITE_S3_REGION".into(),
            var("SPHERE_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        ),
    ])
}

fn run_with(bin: &str, env: &[(String, String)], args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run sphere-lite");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Start `serve` on a free port with `env`; the server and its base URL, once it answers.
fn start(bin: &str, data: &str, env: &[(String, String)]) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server(
        Command::new(bin)
            .args(["serve", "--data", data, "--listen", &listen])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("SPHERE_LITE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{listen}");
    let start = Instant::now();
    while ureq::get(&format!("{base}/api/v2/status")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, base)
}

/// The `sphere_lite_pending_packages` gauge of the server at `base`.
fn pending(base: &str, token: &str) -> Option<u64> {
    let text = ureq::get(&format!("{base}/metrics"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("sphere_lite_pending_packages "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let devices = env_or("FLEET_DEVICES", 500);
    let rounds = env_or("FLEET_ROUNDS", 5);
    let bin = env!("CARGO_BIN_EXE_sphere-lite");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let distributed = std::env::var("FLEET_BACKEND").is_ok_and(|b| b == "mlflow");
    let env = if distributed {
        let Some(env) = mlflow_env() else {
            eprintln!(
                "fleet: SKIPPED: FLEET_BACKEND=mlflow needs SPHERE_TEST_MLFLOW_URL and \
                 SPHERE_TEST_S3_* (./scripts/test sphere starts MLflow and SeaweedFS and sets them)"
            );
            return;
        };
        env
    } else {
        Vec::new()
    };
    let key = run_with(
        bin,
        &env,
        &[
            "enrollment-key",
            "create",
            "--uses",
            &devices.to_string(),
            "--data",
            data,
        ],
    );
    let token = run_with(
        bin,
        &env,
        &["token", "create", "--name", "bench", "--data", data],
    );
    let replicas = if distributed { 2 } else { 1 };
    let servers: Vec<(Server, String)> = (0..replicas).map(|_| start(bin, data, &env)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (idle, _) = memory_kib(servers[0].0.0.id());

    let bases: Vec<String> = servers.iter().map(|(_, b)| b.clone()).collect();
    let report = fleet::simulate_across(&bases, &key, devices, rounds);
    let storm_end = Instant::now();
    let (after, peak) = memory_kib(servers[0].0.0.id());
    println!(
        "backend: {}",
        if distributed {
            "MLflow + S3, two replicas"
        } else {
            "embedded"
        }
    );
    println!("{}", report.table());
    println!(
        "server RSS{}: idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        if distributed { " (first replica)" } else { "" },
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        after as f64 / 1024.0
    );
    // Processing after the storm: until no replica reports a pending package.
    let deadline = storm_end + Duration::from_secs(600);
    let caught_up = loop {
        let left: Option<u64> = bases.iter().map(|b| pending(b, &token)).sum();
        match left {
            Some(0) => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    println!(
        "processing {} {:.1} s after the storm",
        if caught_up {
            "caught up"
        } else {
            "NOT caught up"
        },
        storm_end.elapsed().as_secs_f64()
    );
    for e in &report.first_errors {
        println!("error: {e}");
    }
}
