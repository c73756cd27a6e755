//! Living under systemd: `Type=notify` readiness, status lines and a watchdog that is fed
//! only while frames progress, plus the boot health gate's verdict on `status.json`.
//!
//! systemd decides whether the service is alive from what it is told: `READY=1` ends the
//! start-up, `WATCHDOG=1` must arrive within `WatchdogSec=` or the service is restarted,
//! `STOPPING=1` says a stop is on purpose. A loop that hangs (camera gone, model stuck)
//! must therefore stop pinging by itself, which is why the ping lives in a pipeline
//! observer: no frames, no observer call, no ping.
//!
//! * [`notify`] — [`Notifier`], one connected datagram socket to `NOTIFY_SOCKET` (a no-op
//!   without it).
//! * [`watchdog`] — the watchdog interval from `WATCHDOG_USEC`/`WATCHDOG_PID` and
//!   [`WatchdogObserver`], the per-frame observer sending READY, WATCHDOG and STATUS.
//! * [`health`] — [`HealthGate`], whether successive status reports show a healthy service
//!   (used by `tinylcm healthcheck`).

pub mod health;
pub mod notify;
pub mod watchdog;

pub use health::{HealthGate, Verdict};
pub use notify::{Notifier, NotifyError};
pub use watchdog::{WatchdogObserver, watchdog_from_env, watchdog_interval};
