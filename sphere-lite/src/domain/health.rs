//! A device's health at a glance: ok, late, offline or alert, and why.
//!
//! Why: one fixed "online" window (it was 10 minutes) calls a device that syncs every 5 s
//! online for minutes after it stopped, and one that syncs hourly offline most of the time.
//! Each device is judged against its own interval instead: the one it reports
//! ([`tinylcm_protocol::metric_keys::SYNC_INTERVAL_SECONDS`]), else the median gap between its
//! recent packages, else the runtime's default. A device is *late* once it missed two syncs
//! and *offline* once it missed ten (with one and two intervals of slack, at most 30 s and
//! 1 min, for a slow round). Open drift
//! incidents and a blocked sync make it *alert*; offline outranks alert, which outranks late.

use super::reported::Reported;

/// The interval assumed for a device that neither reports one nor sent enough packages for a
/// cadence: the runtime's default `[sync] interval-seconds`.
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;

/// Missed syncs after which a device is late.
pub const LATE_AFTER_INTERVALS: u64 = 2;
/// Missed syncs after which a device is offline.
pub const OFFLINE_AFTER_INTERVALS: u64 = 10;
/// Most slack on top of the missed intervals before a device is late (a slow round, a retry);
/// the slack is one interval up to this.
pub const LATE_SLACK_MS: u64 = 30_000;
/// Most slack on top of the missed intervals before a device is offline; the slack is two
/// intervals up to this.
pub const OFFLINE_SLACK_MS: u64 = 60_000;

/// The badge on the fleet page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Syncing on time, nothing open.
    Ok,
    /// Missed two or more syncs.
    Late,
    /// Open drift incidents or a blocked sync: an operator should look.
    Alert,
    /// Missed ten or more syncs.
    Offline,
}

impl Status {
    /// Its word on the badge (also its CSS class).
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Late => "late",
            Status::Alert => "alert",
            Status::Offline => "offline",
        }
    }
}

/// Where a device's expected interval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalSource {
    /// The device reports its `[sync] interval-seconds`.
    Reported,
    /// The median gap between its recent packages.
    Cadence,
    /// Neither: the runtime's default.
    Assumed,
}

/// A device's expected sync interval (ms) and where it came from.
pub fn expected_interval(reported: &Reported) -> (u64, IntervalSource) {
    if let Some(s) = reported.sync_interval_seconds.filter(|s| *s > 0) {
        (s * 1000, IntervalSource::Reported)
    } else if let Some(c) = reported.cadence_ms() {
        (c, IntervalSource::Cadence)
    } else {
        (DEFAULT_INTERVAL_MS, IntervalSource::Assumed)
    }
}

/// A device's health and the reasons for it, worst first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The badge.
    pub status: Status,
    /// Why (empty when ok), e.g. `last sync 3 min ago, every 5 s expected`.
    pub reasons: Vec<String>,
}

/// A duration for people: `42 s`, `3 min`, `5 h`, `2 d`.
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7_200 => format!("{} min", s / 60),
        7_200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// Judge a device last seen at `last_seen_unix_ms` (server clock) at `now`, expected every
/// `interval_ms`, with `open_incidents` undecided and `sync_blocked` when something that is not
/// sphere-lite answers its requests (that reason's text is the sync alert's own, so it adds
/// none here).
pub fn judge(
    last_seen_unix_ms: u64,
    now: u64,
    interval_ms: u64,
    open_incidents: u64,
    sync_blocked: bool,
) -> Health {
    let interval = interval_ms.max(1000);
    let age = now.saturating_sub(last_seen_unix_ms);
    let mut status = Status::Ok;
    let mut reasons = Vec::new();
    let missed = |n: u64, slack: u64| age > n.saturating_mul(interval).saturating_add(slack);
    let offline = missed(
        OFFLINE_AFTER_INTERVALS,
        (2 * interval).min(OFFLINE_SLACK_MS),
    );
    if offline || missed(LATE_AFTER_INTERVALS, interval.min(LATE_SLACK_MS)) {
        status = if offline {
            Status::Offline
        } else {
            Status::Late
        };
        reasons.push(format!(
            "last sync {} ago, every {} expected",
            human_ms(age),
            human_ms(interval)
        ));
    }
    if sync_blocked {
        // No reason text: the page shows the sync alert's own (who answered, with what).
        status = status.max(Status::Alert);
    }
    if open_incidents > 0 {
        status = status.max(Status::Alert);
        reasons.push(format!(
            "{open_incidents} open drift incident{}",
            if open_incidents == 1 { "" } else { "s" }
        ));
    }
    Health { status, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails before this change: a device was "online" for 10 minutes after its last request
    /// whatever its interval. Now a 5 s device is late after 15 s and offline after 60 s,
    /// and an hourly one is still ok after 90 minutes.
    #[test]
    fn each_device_is_judged_against_its_own_interval() {
        let now = 100_000_000;
        let at = |age_s: u64, interval_s: u64| {
            judge(now - age_s * 1000, now, interval_s * 1000, 0, false).status
        };
        assert_eq!(at(4, 5), Status::Ok);
        assert_eq!(at(15, 5), Status::Ok);
        assert_eq!(at(16, 5), Status::Late);
        assert_eq!(at(60, 5), Status::Late);
        assert_eq!(at(61, 5), Status::Offline);
        assert_eq!(at(90 * 60, 3600), Status::Ok);
        assert_eq!(at(2 * 3600 + 31, 3600), Status::Late);
        assert_eq!(at(10 * 3600 + 61, 3600), Status::Offline);
        // A clock step back (last seen ahead of now) is no age.
        assert_eq!(judge(now + 5_000, now, 5_000, 0, false).status, Status::Ok);
    }

    #[test]
    fn offline_outranks_alert_which_outranks_late() {
        let now = 10_000_000;
        let h = judge(now - 60_000, now, 5_000, 2, false);
        assert_eq!(h.status, Status::Alert);
        assert_eq!(
            h.reasons,
            [
                "last sync 60 s ago, every 5 s expected",
                "2 open drift incidents"
            ]
        );
        assert_eq!(
            judge(now - 600_000, now, 5_000, 1, true).status,
            Status::Offline
        );
        assert_eq!(judge(now, now, 5_000, 0, true).status, Status::Alert);
        assert!(judge(now, now, 5_000, 0, true).reasons.is_empty());
        assert_eq!(
            judge(now, now, 5_000, 0, false).reasons,
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_interval_is_reported_else_the_cadence_else_assumed() {
        let mut r = Reported::default();
        assert_eq!(
            expected_interval(&r),
            (DEFAULT_INTERVAL_MS, IntervalSource::Assumed)
        );
        r.packages_unix_ms = vec![0, 7_000, 14_000];
        assert_eq!(expected_interval(&r), (7_000, IntervalSource::Cadence));
        r.sync_interval_seconds = Some(5);
        assert_eq!(expected_interval(&r), (5_000, IntervalSource::Reported));
    }
}
