//! [`HealthGate`]: whether the service is healthy, judged from successive `status.json`
//! reports — the boot health gate behind `tinylcm healthcheck`.
//!
//! A new OS slot is only marked good when the runtime works on it. "Works" is what the
//! service itself publishes: a fresh report (younger than three of its intervals), a model
//! loaded, and a frame count that grows between two reports of the same run. One report
//! alone cannot show progress, so the gate remembers the first fresh report of a run as its
//! baseline; a restart of the service (another pid or start time) starts a new baseline.

use std::path::Path;

use crate::status::{StatusError, StatusReport};

/// What the gate concluded from the latest report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fresh, a model loaded, frames increasing.
    Healthy {
        /// Frames counted in the latest report.
        frames: u64,
    },
    /// Not (yet) healthy, with the one-line reason.
    Waiting(String),
}

/// Watches successive status reports of one service.
#[derive(Debug, Default)]
pub struct HealthGate {
    /// (pid, start time, frames) of the first fresh report of the current run.
    baseline: Option<(u32, u64, u64)>,
}

impl HealthGate {
    /// A gate that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judge the report read from `path` (or the error reading it) at `now_unix_ms`.
    pub fn observe(
        &mut self,
        path: &Path,
        read: Result<&StatusReport, &StatusError>,
        now_unix_ms: u64,
    ) -> Verdict {
        let report = match read {
            Ok(report) => report,
            Err(StatusError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Verdict::Waiting(format!(
                    "no status report at {} (is tinylcm.service running with [status] enabled?)",
                    path.display()
                ));
            }
            Err(e) => return Verdict::Waiting(format!("unreadable status report: {e}")),
        };
        let age_ms = report.age_ms(now_unix_ms);
        let interval_ms = (report.interval_s * 1000.0).max(1.0) as u64;
        if age_ms >= interval_ms.saturating_mul(3) {
            return Verdict::Waiting(format!(
                "the status report is stale: written {:.1} s ago, expected every {:.1} s \
                 (is tinylcm.service running?)",
                age_ms as f64 / 1000.0,
                report.interval_s
            ));
        }
        if !report.running {
            return Verdict::Waiting("the service reports that it has stopped".into());
        }
        if report.model.sha256.is_empty() || report.model.origin.is_empty() {
            return Verdict::Waiting("no model loaded yet".into());
        }
        let run = (report.pid, report.started_unix_ms);
        let baseline = match self.baseline {
            Some((pid, started, frames)) if (pid, started) == run => frames,
            _ => {
                self.baseline = Some((run.0, run.1, report.frames));
                return Verdict::Waiting(if report.frames == 0 {
                    "no frames processed yet".into()
                } else {
                    format!(
                        "{} frames so far; waiting for the next report",
                        report.frames
                    )
                });
            }
        };
        if report.frames == 0 {
            return Verdict::Waiting("no frames processed yet".into());
        }
        if report.frames <= baseline {
            return Verdict::Waiting(format!(
                "frames are not increasing ({} at the first report, {} now): \
                 is the camera or the model stuck?",
                baseline, report.frames
            ));
        }
        Verdict::Healthy {
            frames: report.frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pid: u32, frames: u64, written_unix_ms: u64) -> StatusReport {
        StatusReport {
            written_unix_ms,
            started_unix_ms: u64::from(pid) * 10,
            pid,
            frames,
            ..StatusReport::sample()
        }
    }

    #[test]
    fn progress_is_judged_within_one_run_of_the_service() {
        let path = Path::new("status.json");
        let mut gate = HealthGate::new();
        let now = 100_000;
        let waiting = |v: Verdict| matches!(v, Verdict::Waiting(_));
        // The first report is only a baseline, however many frames it counts.
        assert!(waiting(gate.observe(path, Ok(&report(1, 50, now)), now)));
        assert_eq!(
            gate.observe(path, Ok(&report(1, 60, now)), now),
            Verdict::Healthy { frames: 60 }
        );
        // A restarted service (another pid) starts over: its count is no progress yet.
        assert!(waiting(gate.observe(path, Ok(&report(2, 70, now)), now)));
        assert!(waiting(gate.observe(path, Ok(&report(2, 70, now)), now)));
        assert_eq!(
            gate.observe(path, Ok(&report(2, 71, now)), now),
            Verdict::Healthy { frames: 71 }
        );
        // Three intervals old is stale, just under is not.
        let stale = gate.observe(path, Ok(&report(2, 80, now - 15_000)), now);
        assert!(
            matches!(&stale, Verdict::Waiting(r) if r.contains("stale")),
            "{stale:?}"
        );
        assert_eq!(
            gate.observe(path, Ok(&report(2, 80, now - 14_999)), now),
            Verdict::Healthy { frames: 80 }
        );
    }
}
