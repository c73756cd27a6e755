//! The human form of `tinylcm status` (and `snapshot list`): a headline that says whether
//! the service runs, then tables.

use std::fmt::Write as _;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tinylcm::status::{StatusReport, StoreView, SystemMetrics};

use crate::status::{FileView, Found, Service, SnapshotView};

/// `writeln!` into a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// `3 h 02 min`, `4 min 10 s`, `12.3 s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s as u64;
    match whole {
        0..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        3600..86_400 => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {:02} h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// Bytes in MiB (or GiB from 10 GiB).
fn size(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 10_240.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// `2026-11-26 05:26:00Z` from ms since the Unix epoch.
pub fn utc(unix_ms: u64) -> String {
    tinylcm::utc::readable(unix_ms)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1} %", v * 100.0))
}

/// Everything `status` found.
pub fn render(found: &Found) -> String {
    let mut buf = String::new();
    let out = &mut buf;
    match (&found.service, &found.status_file) {
        (_, Some(f)) => headline(out, found.service, f),
        (_, None) => put!(out, "tinylcm: no status report"),
    }
    if let Some(f) = &found.status_file {
        print_report(out, &f.report);
    }
    if let Some(store) = &found.store {
        print_store(out, store);
    }
    if !found.snapshots.is_empty() {
        put!(out, "{}", snapshot_table(&found.snapshots));
    } else if found.store.is_some() {
        put!(out, "snapshots: none");
    }
    for note in &found.notes {
        put!(out, "note: {note}");
    }
    buf
}

/// Writes `text` to stdout; a closed pipe (`tinylcm status | head`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

fn headline(out: &mut String, service: Service, f: &FileView) {
    let r = &f.report;
    let age = duration(f.age_s);
    let path = f.path.display();
    match service {
        Service::Running => put!(
            out,
            "tinylcm: running (pid {}, up {}), report {age} old from {path}",
            r.pid,
            duration(r.uptime_s + f.age_s)
        ),
        Service::Stalled => put!(
            out,
            "tinylcm: STALLED? pid {} lives but its last report is {age} old (interval {}): \
             the frame source may have stopped delivering frames; {path}",
            r.pid,
            duration(r.interval_s)
        ),
        _ => put!(
            out,
            "tinylcm: not running; last report {age} old ({}), from {path}",
            if r.running {
                "its process is gone: it did not stop cleanly"
            } else {
                "it stopped cleanly"
            }
        ),
    }
}

fn print_report(out: &mut String, r: &StatusReport) {
    let m = &r.model;
    let sha = m.sha256.get(..12).unwrap_or(&m.sha256);
    put!(
        out,
        "model {} (sha256 {sha}…) on {} ({}), source: {}",
        m.origin,
        m.backend,
        m.accelerator,
        m.source
    );
    if let Some(release) = &r.release {
        put!(
            out,
            "release {} {} ({}, slot {}, key {})",
            release.name,
            release.version,
            release.state.as_str(),
            release.slot.dir_name(),
            release.key_id
        );
    }
    if let Some(s) = &r.sync {
        let enrolled = if s.needs_enrollment {
            "must enroll again (the server refused the token)"
        } else if s.enrolled {
            "enrolled"
        } else {
            "not enrolled"
        };
        put!(
            out,
            "sync: {enrolled}; outbox {} packages ({}); queued {}, uploaded {}, duplicates {}, \
             dropped {}, rejected {}, failures {}; last success {}{}",
            s.outbox_packages,
            size(s.outbox_bytes),
            s.queued,
            s.uploaded,
            s.duplicates,
            s.dropped,
            s.rejected,
            s.failures,
            s.last_success_unix_ms
                .map_or_else(|| "never".to_string(), utc),
            s.last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
        if let Some(a) = &s.foreign_answer {
            put!(
                out,
                "ALERT sync: {} is answered by {}, not sphere-lite: HTTP {} ({} times since {}); \
                 the data is kept and retried. {}. Answer: {}",
                a.request,
                a.answered_by,
                a.status,
                a.times,
                utc(a.since_unix_ms),
                a.fix,
                a.error
            );
        }
    }
    if let Some(rauc) = &r.rauc {
        put!(
            out,
            "OS (RAUC, {}): booted {}, primary {}, {}{}",
            rauc.compatible,
            rauc.booted,
            rauc.primary,
            rauc.operation,
            rauc.last_error
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    let c = &r.confidence;
    put!(
        out,
        "{} frames: {:.1} fps overall, {:.1} fps over the last interval; confidence over the \
         last interval: mean {}, min {}, p10 {} ({} frames)",
        r.frames,
        r.fps,
        r.fps_interval,
        pct(c.mean),
        pct(c.min),
        pct(c.p10),
        c.frames
    );
    let mut lat = table(&[
        "stage", "frames", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
    ]);
    for stage in tinylcm::stats::Stage::ALL {
        if let Some(p) = r.latency.get(stage.name()) {
            lat.add_row(crate::summary::latency_row(stage.name(), p));
        }
    }
    put!(out, "{lat}");
    if !r.classes.is_empty() {
        let total: u64 = r.classes.values().map(|c| c.total).sum();
        let mut t = table(&["label", "frames", "share", "last interval"]);
        for (label, c) in &r.classes {
            t.add_row(vec![
                label.clone(),
                c.total.to_string(),
                format!("{:.1} %", c.total as f64 * 100.0 / total.max(1) as f64),
                c.interval.to_string(),
            ]);
        }
        put!(out, "{t}");
    }
    if let Some(a) = &r.autonomy {
        let knn = a.knn.map_or_else(
            || "no KNN".into(),
            |k| format!("KNN {} samples of {} classes", k.samples, k.classes),
        );
        let open = a.open_incident.as_ref().map_or_else(
            || "no open incident".into(),
            |i| {
                format!(
                    "incident #{} open since frame {} ({})",
                    i.id,
                    i.opened_at,
                    i.detectors.join(", ")
                )
            },
        );
        put!(
            out,
            "autonomy: {} incidents from {} detector onsets, {} far frames; {knn}; {open}",
            a.incidents,
            a.onsets,
            a.far_frames
        );
        let phases: Vec<String> = a
            .detectors
            .iter()
            .map(|(name, phase)| format!("{name} {}", phase_name(*phase)))
            .collect();
        if !phases.is_empty() {
            put!(out, "detectors: {}", phases.join(", "));
        }
        if let Some(q) = &a.quarantine {
            print_quarantine(out, q);
        }
    }
    put!(out, "{}", system_table(&r.system));
    if let Some(s) = &r.store {
        put!(
            out,
            "state store: {} commits of {} operations, last {:.1} ms, longest {:.1} ms, longest \
             wait for durability {:.2} s, {} batches refused",
            s.commits,
            s.ops,
            s.last_commit_us as f64 / 1000.0,
            s.max_commit_us as f64 / 1000.0,
            s.max_wait_us as f64 / 1e6,
            s.rejected
        );
        print_disk(out, s);
    }
    if r.dropped_reports + r.failed_writes > 0 {
        put!(
            out,
            "status reports: {} dropped (writer busy), {} failed writes",
            r.dropped_reports,
            r.failed_writes
        );
    }
}

/// What the quarantine holds, which of it waits for a human, and what it let go.
fn print_quarantine(out: &mut String, q: &tinylcm::quarantine::QuarantineStats) {
    put!(
        out,
        "quarantine: {} entries ({} pending, {} pseudo-labelled, {} adapted, {} validated, {} \
         rejected), {} held for review; since start {} admitted, {} evicted, {} expired, {} \
         released from review unanswered",
        q.entries,
        q.pending,
        q.pseudo_labelled,
        q.adapted,
        q.validated,
        q.rejected,
        q.under_review,
        q.admitted,
        q.evicted,
        q.expired,
        q.released
    );
}

/// The data partition's state: an alert line while it is full, then what the budget shed.
fn print_disk(out: &mut String, s: &tinylcm::status::StoreFigures) {
    if s.disk_full {
        put!(
            out,
            "ALERT disk: the data partition is full ({} failed commits, {} writes waiting in \
             memory, {} batches dropped); inference and detection go on, expendable files are \
             shed. Free space on the data partition to recover.",
            s.failed_commits,
            s.retained_batches,
            s.dropped_batches
        );
    } else if s.failed_commits + s.dropped_batches > 0 {
        put!(
            out,
            "state store: {} commits failed since start, {} batches dropped; commits work again",
            s.failed_commits,
            s.dropped_batches
        );
    }
    if let Some(sp) = &s.space {
        let shed = &sp.shed_bytes;
        put!(
            out,
            "data partition: {} free of {}, floor {}; shed {} downloads, {} logs, {} thumbnails, \
             {} snapshots; {} writes refused",
            size(sp.free_bytes),
            size(sp.total_bytes),
            size(sp.min_free_bytes),
            size(shed.downloads),
            size(shed.logs),
            size(shed.thumbnails),
            size(shed.snapshots),
            sp.refused_writes
        );
    }
}

fn phase_name(phase: tinylcm::drift::Phase) -> &'static str {
    use tinylcm::drift::Phase;
    match phase {
        Phase::WarmUp => "warm-up",
        Phase::Reference => "reference",
        Phase::Monitoring => "monitoring",
        Phase::Drift => "DRIFT",
        Phase::Cooldown => "cooldown",
    }
}

fn system_table(s: &SystemMetrics) -> Table {
    let na = || "n/a".to_string();
    let mut t = table(&["system", "value"]);
    let cpu = match (s.process_cpu_percent, s.process_cpu_seconds) {
        (Some(p), Some(total)) => format!("{p:.1} % of a core ({} in total)", duration(total)),
        (None, Some(total)) => format!("{} in total", duration(total)),
        _ => na(),
    };
    let memory = match (s.rss_bytes, s.peak_rss_bytes) {
        (Some(r), Some(p)) => format!("{} resident, peak {}", size(r), size(p)),
        (Some(r), None) => size(r),
        _ => na(),
    };
    let available = match (s.memory_available_bytes, s.memory_total_bytes) {
        (Some(a), Some(t)) => format!("{} of {}", size(a), size(t)),
        (Some(a), None) => size(a),
        _ => na(),
    };
    let disk = match (s.disk_free_bytes, s.disk_total_bytes) {
        (Some(f), Some(t)) => format!("{} free of {}", size(f), size(t)),
        _ => na(),
    };
    let throttled = s.throttled.as_ref().map_or_else(na, |t| {
        if t.flags.is_empty() {
            format!("none (0x{:x})", t.raw)
        } else {
            format!("{} (0x{:x})", t.flags.join(", "), t.raw)
        }
    });
    let rows = [
        ("process CPU", cpu),
        (
            "load average",
            s.load_average
                .map_or_else(na, |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])),
        ),
        ("process memory", memory),
        ("memory available", available),
        (
            "SoC temperature",
            s.soc_temperature_c
                .map_or_else(na, |c| format!("{c:.1} °C")),
        ),
        ("throttling", throttled),
        ("state folder disk", disk),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

fn print_store(out: &mut String, v: &StoreView) {
    put!(
        out,
        "state database {} (schema {}): {} frames, {} drift onsets, {} incidents",
        v.path.display(),
        v.schema_version,
        v.frames,
        v.drift_onsets,
        v.drift_incidents
    );
    let mut counters = table(&["counter", "value"]);
    for (name, value) in &v.counters {
        counters.add_row(vec![name.clone(), value.to_string()]);
    }
    put!(out, "{counters}");
    put!(
        out,
        "component states: {}",
        if v.states.is_empty() {
            "none".to_string()
        } else {
            v.states.join(", ")
        }
    );
    let Some((first, last)) = v.event_bounds else {
        put!(out, "event log: empty");
        return;
    };
    put!(
        out,
        "event log: events {first}–{last}; the newest {}:",
        v.events.len()
    );
    let mut t = table(&[
        "seq",
        "time",
        "kind",
        "incident",
        "detector / class",
        "detail",
    ]);
    for e in &v.events {
        let row = match &e.event {
            Some(ev) => {
                let time = utc(ev.unix_ms);
                let r = ev.kind.row();
                vec![
                    e.seq.to_string(),
                    time,
                    r.what,
                    r.incident.map_or("-".into(), |i| format!("#{i}")),
                    r.subject,
                    if r.detail.is_empty() {
                        "-".into()
                    } else {
                        r.detail
                    },
                ]
            }
            None => vec![
                e.seq.to_string(),
                "-".into(),
                format!("undecodable ({} bytes)", e.bytes),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        };
        t.add_row(row);
    }
    put!(out, "{t}");
}

/// Snapshots, oldest first.
pub fn snapshot_table(snapshots: &[SnapshotView]) -> Table {
    let mut t = table(&["snapshot", "taken", "size", "schema"]);
    for s in snapshots {
        t.add_row(vec![
            s.id.clone(),
            if s.created_unix_ms == 0 {
                "unreadable header".into()
            } else {
                utc(s.created_unix_ms)
            },
            format!("{} bytes", s.bytes),
            s.schema_version.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_795_678_560_000), "2026-11-26 07:36:00Z");
        assert_eq!(utc(1_709_251_199_999), "2024-02-29 23:59:59Z");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(250.0), "4 min 10 s");
        assert_eq!(duration(3.0 * 3600.0 + 125.0), "3 h 02 min");
        assert_eq!(duration(-1.0), "0.0 s");
    }

    /// Fails before this change: `tinylcm status` printed the store's commit figures only, so
    /// a device on a full disk looked healthy to whoever read it (status.json alone said so).
    #[test]
    fn a_full_disk_is_an_alert_with_what_was_shed() {
        let mut s = tinylcm::status::StoreFigures {
            disk_full: true,
            failed_commits: 7,
            retained_batches: 3,
            ..Default::default()
        };
        s.space = Some(tinylcm::board::SpaceStatus {
            free_bytes: 0,
            total_bytes: 128 << 20,
            min_free_bytes: 4 << 20,
            below_floor: true,
            shed_bytes: tinylcm::board::space::ShedBytes {
                thumbnails: 3 << 20,
                ..Default::default()
            },
            ..Default::default()
        });
        let mut out = String::new();
        print_disk(&mut out, &s);
        assert!(
            out.contains("ALERT disk: the data partition is full (7 failed commits, 3 writes"),
            "{out}"
        );
        assert!(
            out.contains("0.0 MiB free of 128.0 MiB, floor 4.0 MiB"),
            "{out}"
        );
        assert!(out.contains("3.0 MiB thumbnails"), "{out}");

        let healthy = tinylcm::status::StoreFigures::default();
        let mut out = String::new();
        print_disk(&mut out, &healthy);
        assert!(out.is_empty(), "{out}");
    }
}
