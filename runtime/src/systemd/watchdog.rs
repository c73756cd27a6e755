//! [`WatchdogObserver`]: tells systemd that frames progress, from the inference loop itself.
//!
//! systemd restarts a `WatchdogSec=` service that stops sending `WATCHDOG=1`. A timer
//! thread would keep pinging while the loop hangs on a dead camera or a stuck model, so the
//! ping is sent from the per-frame observer: it runs only when a frame went through, hence
//! no frames means no pings and systemd restarts the service. The observer also sends
//! `READY=1` after the first frame with model outputs (start-up includes loading the model
//! and a first inference) and a `STATUS=` line with rate and model at a low rate. It uses
//! the loop's own clock ([`FrameReport::elapsed`]) and reused buffers: nothing is allocated
//! per frame.

use std::fmt::Write as _;
use std::time::Duration;

use super::notify::{Notifier, NotifyError};
use crate::pipeline::runner::{FrameReport, Observer};

/// The environment variable with the watchdog timeout in microseconds.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The environment variable naming the process the watchdog is meant for.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Default time between `STATUS=` lines.
pub const DEFAULT_STATUS_EVERY: Duration = Duration::from_secs(10);

/// The watchdog timeout systemd expects pings within, from the values of `WATCHDOG_USEC`
/// and `WATCHDOG_PID`: `None` when there is no watchdog or it is meant for another process
/// (a child inheriting the environment).
pub fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return Ok(None);
        }
    }
    let Some(usec) = usec else {
        return Ok(None);
    };
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n))),
        _ => Err(NotifyError::WatchdogUsec {
            value: usec.to_string(),
        }),
    }
}

/// [`watchdog_interval`] from this process's environment.
pub fn watchdog_from_env() -> Result<Option<Duration>, NotifyError> {
    let usec = std::env::var(WATCHDOG_USEC).ok();
    let pid = std::env::var(WATCHDOG_PID).ok();
    watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Pipeline observer sending READY, WATCHDOG and STATUS to systemd as frames go through.
#[derive(Debug)]
pub struct WatchdogObserver {
    notifier: Notifier,
    /// Half the watchdog timeout (systemd's advice), or `None` without a watchdog.
    ping_every: Option<Duration>,
    last_ping: Option<Duration>,
    last_frames: u64,
    ready: bool,
    status_every: Duration,
    /// Loop time and frame count of the last STATUS line.
    last_status: Option<(Duration, u64)>,
    model: String,
    line: String,
    pings: u64,
    failures: u64,
}

impl WatchdogObserver {
    /// Observe for `notifier`, pinging within `watchdog` (the timeout systemd gave, see
    /// [`watchdog_interval`]); `model` names the model in STATUS lines.
    pub fn new(notifier: Notifier, watchdog: Option<Duration>, model: &str) -> Self {
        WatchdogObserver {
            notifier,
            ping_every: watchdog.map(|w| w / 2),
            last_ping: None,
            last_frames: 0,
            ready: false,
            status_every: DEFAULT_STATUS_EVERY,
            last_status: None,
            model: model.to_string(),
            line: String::with_capacity(256),
            pings: 0,
            failures: 0,
        }
    }

    /// Send STATUS lines at most this often (default [`DEFAULT_STATUS_EVERY`]).
    pub fn with_status_every(mut self, every: Duration) -> Self {
        self.status_every = every;
        self
    }

    /// Whether `READY=1` was sent.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `WATCHDOG=1` pings sent so far.
    pub fn pings(&self) -> u64 {
        self.pings
    }

    /// Notifications that could not be sent (logged once, then only counted).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The notifier, e.g. for `STOPPING=1` or `RELOADING=1` outside the loop.
    pub fn notifier_mut(&mut self) -> &mut Notifier {
        &mut self.notifier
    }

    /// The notifier, once the loop is done.
    pub fn into_notifier(self) -> Notifier {
        self.notifier
    }

    fn check(&mut self, result: Result<(), NotifyError>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                if self.failures == 0 {
                    tracing::warn!(
                        "systemd notification failed (further failures are only counted): {e}"
                    );
                }
                self.failures += 1;
                false
            }
        }
    }

    fn send_status(&mut self, now: Duration, frames: u64) {
        let fps = match self.last_status {
            Some((then, before)) if now > then => {
                (frames - before) as f64 / (now - then).as_secs_f64()
            }
            _ if !now.is_zero() => frames as f64 / now.as_secs_f64(),
            _ => 0.0,
        };
        self.line.clear();
        // Writing into a String cannot fail; the buffer's capacity covers the usual line.
        let _ = write!(
            self.line,
            "running: {fps:.1} fps, {frames} frames, model {}",
            self.model
        );
        let line = std::mem::take(&mut self.line);
        let result = self.notifier.status(&line);
        self.line = line;
        self.check(result);
        self.last_status = Some((now, frames));
    }
}

impl Observer for WatchdogObserver {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        if report.frames <= self.last_frames {
            return;
        }
        self.last_frames = report.frames;
        let now = report.elapsed;
        if !self.ready {
            let prediction = report.prediction;
            // A finite confidence: the model's top score, or an embedding-only model's KNN vote.
            if !prediction.confidence.is_finite() {
                return;
            }
            let sent = self.notifier.ready();
            self.ready = self.check(sent);
            if !self.ready {
                return;
            }
            tracing::info!("first good inference: READY=1 sent to systemd");
            self.send_status(now, report.frames);
        }
        if let Some(every) = self.ping_every {
            if self
                .last_ping
                .is_none_or(|last| now.saturating_sub(last) >= every)
            {
                let sent = self.notifier.watchdog();
                if self.check(sent) {
                    self.pings += 1;
                }
                self.last_ping = Some(now);
            }
        }
        if self
            .last_status
            .is_none_or(|(last, _)| now.saturating_sub(last) >= self.status_every)
        {
            self.send_status(now, report.frames);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_systemds_rules() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7).unwrap(),
            Some(Duration::from_secs(30))
        );
        // Meant for another process (e.g. inherited by a child): not ours to feed.
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("8"), 7).unwrap(),
            None
        );
        assert_eq!(watchdog_interval(None, None, 7).unwrap(), None);
        for bad in ["", "0", "-5", "thirty"] {
            let e = watchdog_interval(Some(bad), None, 7).unwrap_err();
            assert!(e.to_string().contains("WATCHDOG_USEC"), "{e}");
        }
    }
}
