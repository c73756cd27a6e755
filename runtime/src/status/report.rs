//! [`StatusReport`]: what a running `tinylcm` says about itself in `status.json`.
//!
//! The state database can be open in one process only, and the service holds it, so
//! `tinylcm status` cannot ask the database while the service runs. Instead the service
//! writes this report every few seconds; `tinylcm status` (or a shell script, or a
//! monitoring agent) reads it. It is JSON because that is what such tools read, and it is
//! versioned ([`STATUS_FORMAT`]) so a reader can tell a report it does not understand from
//! a damaged one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StatusError;
use super::system::SystemMetrics;
use crate::autonomy::Autonomy;
use crate::drift::Phase;
use crate::state::StoreStats;
use crate::stats::Percentiles;

/// Version of the report's layout; readers refuse other versions.
pub const STATUS_FORMAT: u32 = 1;

/// Largest status file read: a report is a few KiB; anything much larger is not one.
pub const MAX_STATUS_BYTES: u64 = 1 << 20;

/// One status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// [`STATUS_FORMAT`].
    pub format: u32,
    /// `false` in the last report a process writes when it stops cleanly.
    pub running: bool,
    /// When the file was written, ms since the Unix epoch.
    pub written_unix_ms: u64,
    /// When the process started reporting, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The writing process.
    pub pid: u32,
    /// Seconds since it started reporting.
    pub uptime_s: f64,
    /// Seconds between reports (a reader calls a report stale after a few of these).
    pub interval_s: f64,
    /// What runs.
    pub model: ModelInfo,
    /// Frames processed.
    pub frames: u64,
    /// Frames per second since the loop started.
    pub fps: f64,
    /// Frames per second over the last interval.
    pub fps_interval: f64,
    /// Latency percentiles per stage (`capture`, `preprocess`, `invoke`, `autonomy`,
    /// `rest`, `total`) since the loop started, µs.
    pub latency: BTreeMap<String, Percentiles>,
    /// The model's top-class confidence over the last interval.
    pub confidence: ConfidenceStats,
    /// Frames per reported label.
    pub classes: BTreeMap<String, ClassCount>,
    /// The autonomy layer, when it runs.
    pub autonomy: Option<AutonomyStatus>,
    /// CPU, memory, temperature, disk.
    pub system: SystemMetrics,
    /// The state store's writer, when a store is open.
    pub store: Option<StoreFigures>,
    /// Reports dropped because the writer was still busy with the previous one.
    pub dropped_reports: u64,
    /// Reports that could not be written (the file system refused).
    pub failed_writes: u64,
    /// The over-the-air release that runs (absent: the configured model, or no model store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::modelstore::ActiveModel>,
    /// The sync client's counters, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::SyncStatusView>,
    /// The OS slots, when `[rauc] enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rauc: Option<crate::rauc::RaucStatus>,
}

/// What a service adds to each report, called on the status writer thread (never on the
/// inference thread: it may ask other threads or D-Bus).
#[derive(Clone)]
pub struct StatusExtras(pub std::sync::Arc<dyn Fn(&mut StatusReport) + Send + Sync>);

impl std::fmt::Debug for StatusExtras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusExtras")
    }
}

/// What runs: the model and where it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Where the model came from (a path, or `builtin:<name>`).
    pub origin: String,
    /// Its SHA-256 (lower-case hex).
    pub sha256: String,
    /// The inference library.
    pub backend: String,
    /// What executes it (Edge TPU, XNNPACK, CPU).
    pub accelerator: String,
    /// The frame source.
    pub source: String,
}

/// Confidence statistics of one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceStats {
    /// Frames with a finite confidence in the interval.
    pub frames: u64,
    /// Mean (`None` without frames).
    pub mean: Option<f64>,
    /// Smallest.
    pub min: Option<f64>,
    /// 10th percentile (resolution 0.001): the low tail, where drift shows first.
    pub p10: Option<f64>,
}

/// Frames of one label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    /// Since the loop started.
    pub total: u64,
    /// In the last interval.
    pub interval: u64,
}

/// The autonomy layer's counts and states.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutonomyStatus {
    /// Frames it stepped.
    pub frames: u64,
    /// Drift onsets.
    pub onsets: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Frames far from everything the KNN knows.
    pub far_frames: u64,
    /// Embeddings it could not use.
    pub bad_embeddings: u64,
    /// Writes deferred because the state store's queue was full.
    pub deferred_writes: u64,
    /// The incident open now.
    pub open_incident: Option<OpenIncident>,
    /// The KNN, when it runs.
    pub knn: Option<KnnStatus>,
    /// Detector name → phase.
    pub detectors: BTreeMap<String, Phase>,
    /// The quarantine's counts per status, entries held for review, what it evicted and
    /// released since start (`None`: no quarantine, or a report from before it was listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::quarantine::QuarantineStats>,
}

impl AutonomyStatus {
    /// The counts and states of `autonomy` now.
    pub fn of(autonomy: &Autonomy) -> Self {
        let c = autonomy.counts();
        AutonomyStatus {
            frames: c.frames,
            onsets: c.onsets,
            incidents: c.incidents,
            far_frames: c.far,
            bad_embeddings: c.bad_embeddings,
            deferred_writes: c.deferred_writes,
            open_incident: autonomy.open_incident().map(|i| OpenIncident {
                id: i.id,
                opened_at: i.opened_at,
                detector: i.first.detector.to_string(),
                detectors: i.detectors.iter().map(ToString::to_string).collect(),
            }),
            knn: autonomy.knn().map(|k| KnnStatus {
                samples: k.len(),
                classes: k.labels().len(),
            }),
            detectors: autonomy
                .detectors()
                .detectors()
                .iter()
                .map(|d| (d.kind().name().to_string(), d.state()))
                .collect(),
            quarantine: autonomy.quarantine().map(|q| q.stats()),
        }
    }
}

/// An open drift incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncident {
    /// Its number.
    pub id: u64,
    /// Frame it opened at.
    pub opened_at: u64,
    /// The detector that opened it.
    pub detector: String,
    /// Every detector that fired during it, the first included.
    pub detectors: Vec<String>,
}

/// The KNN's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnnStatus {
    /// Samples held.
    pub samples: usize,
    /// Classes known.
    pub classes: usize,
}

/// [`StoreStats`] as the report carries it (a copy, so the report's layout does not change
/// when the store's bookkeeping does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFigures {
    /// Transactions committed.
    pub commits: u64,
    /// Batches committed.
    pub batches: u64,
    /// Operations committed.
    pub ops: u64,
    /// Batches refused because the queue was full.
    pub rejected: u64,
    /// Last commit, µs.
    pub last_commit_us: u64,
    /// Longest commit, µs.
    pub max_commit_us: u64,
    /// Longest wait from queueing to durable, µs (the measured loss window).
    pub max_wait_us: u64,
    /// The data partition is full: commits fail, or free space is below `[board]
    /// min-free-mib` even after shedding. Inference and detection go on meanwhile.
    #[serde(default)]
    pub disk_full: bool,
    /// Commits that failed since start (the writer keeps the batches and retries).
    #[serde(default)]
    pub failed_commits: u64,
    /// Batches the writer dropped because commits failed for longer than its memory bound.
    #[serde(default)]
    pub dropped_batches: u64,
    /// Operations in those batches.
    #[serde(default)]
    pub dropped_ops: u64,
    /// Batches waiting in memory for a commit that works.
    #[serde(default)]
    pub retained_batches: u64,
    /// The data partition's space budget: free space, floor, what was shed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<crate::board::SpaceStatus>,
}

impl From<StoreStats> for StoreFigures {
    fn from(s: StoreStats) -> Self {
        StoreFigures {
            commits: s.commits,
            batches: s.batches,
            ops: s.ops,
            rejected: s.rejected,
            last_commit_us: s.last_commit_us,
            max_commit_us: s.max_commit_us,
            max_wait_us: s.max_wait_us,
            disk_full: s.commits_failing,
            failed_commits: s.failed_commits,
            dropped_batches: s.dropped_batches,
            dropped_ops: s.dropped_ops,
            retained_batches: s.retained_batches,
            space: None,
        }
    }
}

impl StoreFigures {
    /// The figures of `store`, with its space budget's when one is attached.
    pub fn of(store: &crate::state::Store) -> Self {
        let mut f = StoreFigures::from(store.stats());
        if let Some(space) = store.space() {
            let s = space.status();
            f.disk_full |= s.below_floor;
            f.space = Some(s);
        }
        f
    }
}

impl StatusReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> Result<String, StatusError> {
        serde_json::to_string_pretty(self).map_err(StatusError::Encode)
    }

    /// Parses a report, refusing other format versions.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, StatusError> {
        // The version first, so a newer layout is reported as such and not as damage.
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let bad = |e: serde_json::Error| StatusError::Damaged {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let version: Version = serde_json::from_str(text).map_err(bad)?;
        if version.format != STATUS_FORMAT {
            return Err(StatusError::Format {
                path: path.to_path_buf(),
                found: version.format,
                supported: STATUS_FORMAT,
            });
        }
        serde_json::from_str(text).map_err(bad)
    }

    /// Reads the report at `path` (at most [`MAX_STATUS_BYTES`]).
    pub fn read(path: &Path) -> Result<Self, StatusError> {
        let io = |e| StatusError::io("reading", path, e);
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_STATUS_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => StatusError::Damaged {
                    path: path.to_path_buf(),
                    reason: "not UTF-8 text".into(),
                },
                _ => io(e),
            })?;
        if text.len() as u64 > MAX_STATUS_BYTES {
            return Err(StatusError::Damaged {
                path: path.to_path_buf(),
                reason: format!("larger than {MAX_STATUS_BYTES} bytes"),
            });
        }
        Self::from_json(path, &text)
    }

    /// Milliseconds between the report's writing and `now_unix_ms` (0 if it claims to be
    /// from the future, e.g. after a clock step).
    pub fn age_ms(&self, now_unix_ms: u64) -> u64 {
        now_unix_ms.saturating_sub(self.written_unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl StatusReport {
        /// A report with every part filled, for tests across the crate.
        pub(crate) fn sample() -> StatusReport {
            let p = Percentiles {
                count: 3,
                mean_us: 12.5,
                p50_us: 10,
                p90_us: 20,
                p99_us: 30,
                max_us: 31,
            };
            StatusReport {
                format: STATUS_FORMAT,
                running: true,
                written_unix_ms: 1_000,
                started_unix_ms: 500,
                pid: 42,
                uptime_s: 0.5,
                interval_s: 5.0,
                model: ModelInfo {
                    origin: "builtin:default-f32".into(),
                    sha256: "ab".repeat(32),
                    backend: "tflite-c 2.6.0".into(),
                    accelerator: "xnnpack".into(),
                    source: "synthetic".into(),
                },
                frames: 3,
                fps: 6.0,
                fps_interval: 6.0,
                latency: [("invoke".to_string(), p)].into(),
                confidence: ConfidenceStats {
                    frames: 3,
                    mean: Some(0.9),
                    min: Some(0.8),
                    p10: Some(0.8),
                },
                classes: [(
                    "ball".to_string(),
                    ClassCount {
                        total: 3,
                        interval: 3,
                    },
                )]
                .into(),
                autonomy: Some(AutonomyStatus {
                    detectors: [("cusum".to_string(), Phase::Monitoring)].into(),
                    knn: Some(KnnStatus {
                        samples: 200,
                        classes: 4,
                    }),
                    ..Default::default()
                }),
                system: SystemMetrics {
                    soc_temperature_c: Some(48.3),
                    ..Default::default()
                },
                store: Some(StoreFigures::default()),
                dropped_reports: 0,
                failed_writes: 0,
                release: None,
                sync: None,
                rauc: None,
            }
        }
    }

    #[test]
    fn round_trips_through_json() {
        let r = StatusReport::sample();
        let text = r.to_json().unwrap();
        assert!(text.contains("\"format\": 1"), "{text}");
        assert!(text.contains("\"cusum\": \"monitoring\""), "{text}");
        assert_eq!(
            StatusReport::from_json(Path::new("s.json"), &text).unwrap(),
            r
        );
    }

    #[test]
    fn other_versions_and_garbage_are_refused_clearly() {
        let p = Path::new("s.json");
        let newer = StatusReport::sample()
            .to_json()
            .unwrap()
            .replace("\"format\": 1", "\"format\": 2");
        let e = StatusReport::from_json(p, &newer).unwrap_err();
        assert!(matches!(e, StatusError::Format { found: 2, .. }), "{e}");
        for garbage in [
            "",
            "{",
            "[]",
            "{\"format\": 1}",
            "\u{0}",
            "{\"format\": -1}",
        ] {
            let e = StatusReport::from_json(p, garbage).unwrap_err();
            assert!(matches!(e, StatusError::Damaged { .. }), "{garbage:?}: {e}");
            assert!(e.to_string().contains("s.json"), "{e}");
        }
    }

    #[test]
    fn reading_bounds_the_size_and_refuses_binary() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_STATUS_BYTES as usize + 2]).unwrap();
        assert!(matches!(
            StatusReport::read(&big).unwrap_err(),
            StatusError::Damaged { .. }
        ));
        let bin = dir.path().join("bin.json");
        std::fs::write(&bin, [0xff, 0xfe, 0xfd]).unwrap();
        assert!(matches!(
            StatusReport::read(&bin).unwrap_err(),
            StatusError::Damaged { .. }
        ));
        let missing = StatusReport::read(&dir.path().join("none.json")).unwrap_err();
        assert!(matches!(missing, StatusError::Io { .. }), "{missing}");
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, StatusReport::sample().to_json().unwrap()).unwrap();
        assert_eq!(StatusReport::read(&ok).unwrap(), StatusReport::sample());
    }
}
