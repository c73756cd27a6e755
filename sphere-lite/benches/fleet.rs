//! Fleet load benchmark: the release `sphere-lite` binary as its own process (embedded
//! default, temporary data directory), a simulated fleet syncing against it all at once, and
//! the server's memory read from `/proc/<pid>/status` (idle before, peak and after).
//!
//! Run with `cargo bench -p sphere-lite --bench fleet`; `FLEET_DEVICES` (default 500) and
//! `FLEET_ROUNDS` (default 5) change the load. It prints latency percentiles per request kind,
//! errors and RSS; nothing is asserted (the load test in `tests/fleet.rs` asserts correctness).

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

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("run sphere-lite");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let devices = env_or("FLEET_DEVICES", 500);
    let rounds = env_or("FLEET_ROUNDS", 5);
    let bin = env!("CARGO_BIN_EXE_sphere-lite");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = run(
        bin,
        &[
            "enrollment-key",
            "create",
            "--uses",
            &devices.to_string(),
            "--data",
            data,
        ],
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server(
        Command::new(bin)
            .args(["serve", "--data", data, "--listen", &listen])
            .env("SPHERE_LITE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{listen}");
    let start = Instant::now();
    while ureq::get(&format!("{base}/api/v2/status")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (idle, _) = memory_kib(server.0.id());

    let report = fleet::simulate(&base, &key, devices, rounds);
    let (after, peak) = memory_kib(server.0.id());
    println!("{}", report.table());
    println!(
        "server RSS: idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        after as f64 / 1024.0
    );
    for e in &report.first_errors {
        println!("error: {e}");
    }
}
