//! `tinylcm healthcheck`: the boot health gate. Exit 0 when the service runs a model on
//! progressing frames, 1 with a one-line reason otherwise; optionally mark the booted RAUC
//! slot good (or bad).
//!
//! systemd runs it as `tinylcm-healthcheck.service` before `boot-complete.target`, so a new
//! OS slot counts as good only when the runtime works on it. It reads the service's
//! `status.json` (the service holds the database; the status file is how other processes
//! see it) until [`HealthGate`] says healthy or the timeout passes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tinylcm::config::Config;
use tinylcm::rauc::{RaucClient, RaucConfig};
use tinylcm::status::StatusReport;
use tinylcm::systemd::{HealthGate, Verdict};

/// Options of `tinylcm healthcheck`.
#[derive(clap::Args)]
pub struct Args {
    /// The service's configuration file (its `[status]` and `[rauc]` are used).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Read this status file instead of `[status] path`.
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    /// Seconds to wait for a healthy service.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
    /// Milliseconds between reads of the status file.
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_ms: u64,
    /// On success, mark the booted RAUC slot good (needs `[rauc] enabled = true`).
    #[arg(long)]
    mark_good: bool,
    /// On failure, mark the booted RAUC slot bad, so the next boot falls back to the other.
    #[arg(long)]
    mark_bad_on_failure: bool,
}

/// Run `tinylcm healthcheck`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let path = args.status_file.unwrap_or(config.status.path.clone());
    let timeout = Duration::from_secs(args.timeout);
    match wait_healthy(&path, timeout, Duration::from_millis(args.poll_ms)) {
        Ok(frames) => {
            println!("healthy: {frames} frames, model running");
            if args.mark_good {
                mark(&config.rauc, true).context("the service is healthy, but")?;
            }
            Ok(())
        }
        Err(reason) => {
            let mut line = format!("unhealthy after {} s: {reason}", args.timeout);
            if args.mark_bad_on_failure {
                match mark(&config.rauc, false) {
                    Ok(()) => line.push_str("; booted slot marked bad"),
                    Err(e) => line.push_str(&format!("; marking the slot bad failed too: {e:#}")),
                }
            }
            bail!(line)
        }
    }
}

/// Poll `path` until healthy (the frame count) or `timeout` (the last reason).
fn wait_healthy(path: &std::path::Path, timeout: Duration, poll: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let mut gate = HealthGate::new();
    loop {
        let read = StatusReport::read(path);
        let verdict = gate.observe(path, read.as_ref(), tinylcm::utc::now_unix_ms());
        match verdict {
            Verdict::Healthy { frames } => return Ok(frames),
            Verdict::Waiting(reason) => {
                tracing::debug!("not healthy yet: {reason}");
                if Instant::now() + poll > deadline {
                    return Err(reason);
                }
            }
        }
        std::thread::sleep(poll);
    }
}

/// Mark the booted slot good or bad over D-Bus; skipped (with a line saying so) when RAUC
/// is off in the configuration, e.g. on a development machine.
fn mark(rauc: &RaucConfig, good: bool) -> anyhow::Result<()> {
    if !rauc.enabled {
        println!("RAUC is disabled (`[rauc] enabled = false`): no slot marked");
        return Ok(());
    }
    let client = RaucClient::connect(&rauc.bus)?;
    let slot = if good {
        client.mark_good_booted()?
    } else {
        client.mark_bad_booted()?
    };
    println!(
        "marked booted slot {slot} {}",
        if good { "good" } else { "bad" }
    );
    Ok(())
}
