//! A simulated fleet for the load test (`tests/fleet.rs`) and the fleet benchmark
//! (`benches/fleet.rs`): devices enroll, then all sync at once, each from its own thread over
//! its own keep-alive connection, as field devices would: upload a metrics package, pull
//! feedback. Every answer that is not a 200 counts as an error.
//!
//! Enrollment is spread out (at most `ENROLLING` devices at a time), as devices are
//! provisioned in the field: 500 connections opened in the same millisecond overflow the
//! listen queue of a host with a small `net.core.somaxconn` and measure the kernel, not the
//! server. The sync phase is the concurrent one: every device's connection is open by then.

use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tinylcm_protocol::package::{CONTENT_TYPE, FileKind, PackageBuilder};
use tinylcm_protocol::paths;

/// What a fleet run measured.
#[derive(Debug, Default)]
pub struct FleetReport {
    /// Devices simulated.
    pub devices: usize,
    /// Sync rounds per device.
    pub rounds: usize,
    /// Enrollment latencies.
    pub enroll: Vec<Duration>,
    /// Upload latencies (package accepted).
    pub upload: Vec<Duration>,
    /// Feedback-poll latencies.
    pub feedback: Vec<Duration>,
    /// Count of failed requests.
    pub errors: usize,
    /// The first few failures, for the message.
    pub first_errors: Vec<String>,
    /// Wall time of the sync phase.
    pub sync_wall: Duration,
}

/// The `p`-th percentile (0..=100) of `samples` (nearest rank), zero when empty.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl FleetReport {
    /// One line per request kind: count, p50, p99, max.
    pub fn table(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut out = format!(
            "{} devices x {} rounds, sync phase {:.2} s, {} errors\n{:<10} {:>6} {:>9} {:>9} {:>9}\n",
            self.devices,
            self.rounds,
            self.sync_wall.as_secs_f64(),
            self.errors,
            "request",
            "count",
            "p50 ms",
            "p99 ms",
            "max ms"
        );
        for (name, samples) in [
            ("enroll", &self.enroll),
            ("upload", &self.upload),
            ("feedback", &self.feedback),
        ] {
            out.push_str(&format!(
                "{:<10} {:>6} {:>9.2} {:>9.2} {:>9.2}\n",
                name,
                samples.len(),
                ms(percentile(samples, 50.0)),
                ms(percentile(samples, 99.0)),
                ms(percentile(samples, 100.0)),
            ));
        }
        out
    }
}

/// A small metrics package (~3 KiB) as a device sends every sync.
pub fn metrics_package(device: &str, package_id: &str) -> Vec<u8> {
    let classes: serde_json::Map<String, serde_json::Value> = (0..24)
        .map(|i| {
            (
                format!("class-{i}"),
                json!({"count": 100 + i, "confidence": 0.5}),
            )
        })
        .collect();
    let doc = json!({
        "total_inferences": 36000, "latency_ms": {"p50": 11.8, "p99": 19.7},
        "system": {"cpu_percent": 41.5, "temperature_c": 52.1}, "classes": classes,
    });
    metrics_package_of(device, package_id, 1_764_147_600_000, &doc)
}

/// A package made at `unix_ms` holding only `doc` as its `metrics.json`.
pub fn metrics_package_of(
    device: &str,
    package_id: &str,
    unix_ms: u64,
    doc: &serde_json::Value,
) -> Vec<u8> {
    let mut b = PackageBuilder::new(package_id, device, unix_ms).unwrap();
    b.add(
        "metrics.json",
        FileKind::Metrics,
        doc.to_string().into_bytes(),
    )
    .unwrap();
    b.finish().unwrap()
}

/// Devices enrolling at the same time.
const ENROLLING: usize = 32;

struct Shared {
    report: Mutex<FleetReport>,
    /// Enrollment slots left, and the signal that one was freed.
    enroll_slots: (Mutex<usize>, Condvar),
}

impl Shared {
    fn fail(&self, what: String) {
        let mut r = self.report.lock().unwrap();
        r.errors += 1;
        if r.first_errors.len() < 10 {
            r.first_errors.push(what);
        }
    }
}

/// Status of a request, or the transport error as text.
fn status(result: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), String> {
    match result {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// Run `devices` devices against `base` (e.g. `http://127.0.0.1:8470`): each enrolls with
/// `enrollment_key`, then, all released at once, syncs `rounds` times.
// The load test calls it; the benchmark, which may run two replicas, calls `simulate_across`.
#[allow(dead_code)]
pub fn simulate(base: &str, enrollment_key: &str, devices: usize, rounds: usize) -> FleetReport {
    simulate_across(&[base.to_owned()], enrollment_key, devices, rounds)
}

/// As [`simulate`], against several replicas of one fleet behind a round-robin balancer:
/// device `n` enrolls through `bases[n % len]`, and its requests go to the next replica each
/// time (an upload and the feedback poll after it to different ones).
pub fn simulate_across(
    bases: &[String],
    enrollment_key: &str,
    devices: usize,
    rounds: usize,
) -> FleetReport {
    let shared = Arc::new(Shared {
        report: Mutex::new(FleetReport {
            devices,
            rounds,
            ..FleetReport::default()
        }),
        enroll_slots: (Mutex::new(ENROLLING), Condvar::new()),
    });
    let start_sync = Arc::new(Barrier::new(devices + 1));
    let threads: Vec<_> = (0..devices)
        .map(|n| {
            let (shared, start_sync) = (shared.clone(), start_sync.clone());
            let (bases, key) = (bases.to_vec(), enrollment_key.to_owned());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || device(n, &bases, &key, rounds, &shared, &start_sync))
                .unwrap()
        })
        .collect();
    start_sync.wait();
    let t0 = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    let mut report = std::mem::take(&mut *shared.report.lock().unwrap());
    report.sync_wall = t0.elapsed();
    report
}

fn device(n: usize, bases: &[String], key: &str, rounds: usize, shared: &Shared, start: &Barrier) {
    // The replica of the device's k-th request.
    let base = |k: usize| bases[(n + k) % bases.len()].as_str();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let (slots, freed) = &shared.enroll_slots;
    let mut left = freed
        .wait_while(slots.lock().unwrap(), |left| *left == 0)
        .unwrap();
    *left -= 1;
    drop(left);
    let t = Instant::now();
    let body = json!({"enrollment_key": key, "name": format!("sim-{n}")}).to_string();
    let enrolled = status(
        agent
            .post(&format!("{}{}", base(0), paths::ENROLL))
            .set("Content-Type", "application/json")
            .send_string(&body),
    );
    let elapsed = t.elapsed();
    *slots.lock().unwrap() += 1;
    freed.notify_one();
    let credentials = match enrolled {
        Ok((200, text)) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                Some((
                    v["device_id"].as_str()?.to_owned(),
                    v["token"].as_str()?.to_owned(),
                ))
            }),
        Ok((code, text)) => {
            shared.fail(format!("enroll {n}: {code} {text}"));
            None
        }
        Err(e) => {
            shared.fail(format!("enroll {n}: {e}"));
            None
        }
    };
    shared.report.lock().unwrap().enroll.push(elapsed);
    start.wait();
    let Some((id, token)) = credentials else {
        return;
    };
    let auth = format!("Bearer {token}");
    for round in 0..rounds {
        let package = metrics_package(&id, &format!("sync-{round}"));
        let t = Instant::now();
        let up = status(
            agent
                .post(&format!("{}{}", base(2 * round + 1), paths::packages(&id)))
                .set("Authorization", &auth)
                .set("Content-Type", CONTENT_TYPE)
                .send_bytes(&package),
        );
        let up_time = t.elapsed();
        let t = Instant::now();
        let fb = status(
            agent
                .get(&format!(
                    "{}{}?after=0",
                    base(2 * round + 2),
                    paths::feedback(&id)
                ))
                .set("Authorization", &auth)
                .call(),
        );
        let fb_time = t.elapsed();
        for (what, result) in [("upload", &up), ("feedback", &fb)] {
            match result {
                Ok((200, _)) => {}
                Ok((code, text)) => shared.fail(format!("{what} {id}: {code} {text}")),
                Err(e) => shared.fail(format!("{what} {id}: {e}")),
            }
        }
        let mut r = shared.report.lock().unwrap();
        r.upload.push(up_time);
        r.feedback.push(fb_time);
    }
}
