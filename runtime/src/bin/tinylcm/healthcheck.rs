//! `tinylcm healthcheck`: the boot health gate. Exit 0 when the service runs a model on
//! progressing frames, 1 with a one-line reason otherwise; optionally mark the booted RAUC
//! slot good (or, while it is on trial, bad).
//!
//! systemd runs it as `tinylcm-healthcheck.service` before `boot-complete.target`, so a new
//! OS slot counts as good only when the runtime works on it. It reads the service's
//! `status.json` (the service holds the database; the status file is how other processes
//! see it) until [`HealthGate`] says healthy or the timeout passes.
//!
//! It is the only thing on the image that marks slots (meta-rauc's rauc-mark-good.service is
//! left out), so the U-Boot environment on the boot partition is written once per boot for
//! it. A failure marks the slot bad only while the slot is on trial ([`Confirmations`]): a
//! slot the gate passed on before keeps its place when the runtime fails for another reason.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tinylcm::config::Config;
use tinylcm::rauc::{Confirmations, RaucClient, RaucConfig, Trial};
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
    /// On success, mark the booted RAUC slot good (needs `[rauc] enabled = true`) and record
    /// its installation as confirmed.
    #[arg(long)]
    mark_good: bool,
    /// On failure, mark the booted RAUC slot bad, so the next boot falls back to the other;
    /// only while the slot is on trial (installed by RAUC and not confirmed since).
    #[arg(long)]
    mark_bad_on_failure: bool,
    /// The record of confirmed installations; default `os-slots-confirmed` beside the status
    /// file (on /data, so it survives updates of both slots).
    #[arg(long, value_name = "FILE")]
    confirmed_file: Option<PathBuf>,
}

/// Run `tinylcm healthcheck`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let path = args.status_file.unwrap_or(config.status.path.clone());
    let record = args
        .confirmed_file
        .unwrap_or_else(|| Confirmations::beside(&path));
    let timeout = Duration::from_secs(args.timeout);
    match wait_healthy(&path, timeout, Duration::from_millis(args.poll_ms)) {
        Ok(frames) => {
            println!("healthy: {frames} frames, model running");
            if args.mark_good {
                mark_good(&config.rauc, &record).context("the service is healthy, but")?;
            }
            Ok(())
        }
        Err(reason) => {
            let mut line = format!("unhealthy after {} s: {reason}", args.timeout);
            if args.mark_bad_on_failure {
                match mark_bad_on_trial(&config.rauc, &record) {
                    Ok(outcome) => line.push_str(&format!("; {outcome}")),
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

const RAUC_DISABLED: &str = "RAUC is disabled (`[rauc] enabled = false`): no slot marked";

/// The booted slot's name and RAUC's installation timestamp of it.
fn booted(client: &RaucClient) -> anyhow::Result<(String, Option<String>)> {
    let bootname = client.booted_slot()?;
    let slot = client
        .slot_status()?
        .into_iter()
        .find(|s| s.bootname.as_deref() == Some(bootname.as_str()))
        .with_context(|| format!("RAUC lists no slot with bootname {bootname}"))?;
    Ok((slot.name, slot.installed_at))
}

/// Mark the booted slot good over D-Bus and record its installation as confirmed; skipped
/// (with a line saying so) when RAUC is off in the configuration, e.g. on a development
/// machine.
fn mark_good(rauc: &RaucConfig, record: &std::path::Path) -> anyhow::Result<()> {
    if !rauc.enabled {
        println!("{RAUC_DISABLED}");
        return Ok(());
    }
    let client = RaucClient::connect(&rauc.bus)?;
    let (name, installed_at) = booted(&client)?;
    let slot = client.mark_good_booted()?;
    println!("marked booted slot {slot} good");
    Confirmations::load(record)
        .and_then(|mut r| r.confirm(&name, installed_at.as_deref()))
        .with_context(|| {
            format!(
                "slot {slot} is marked good, but recording that in {} failed                  (a later failure would mark it bad)",
                record.display()
            )
        })
}

/// Mark the booted slot bad if it is on trial; returns what was done, for the gate's line.
fn mark_bad_on_trial(rauc: &RaucConfig, record: &std::path::Path) -> anyhow::Result<String> {
    if !rauc.enabled {
        return Ok(RAUC_DISABLED.to_string());
    }
    let client = RaucClient::connect(&rauc.bus)?;
    let (name, installed_at) = booted(&client)?;
    let record =
        Confirmations::load(record).with_context(|| format!("reading {}", record.display()))?;
    Ok(match record.trial(&name, installed_at.as_deref()) {
        Trial::OnTrial { installed_at } => {
            let slot = client.mark_bad_booted()?;
            format!(
                "booted slot {slot} marked bad (on trial since its installation at {installed_at})"
            )
        }
        Trial::Confirmed { installed_at } => format!(
            "booted slot {name} not marked bad: its installation at {installed_at} passed this              gate before, so the OS is not what fails"
        ),
        Trial::NeverInstalled => format!(
            "booted slot {name} not marked bad: RAUC never installed it (the factory image),              so it is not on trial"
        ),
    })
}
