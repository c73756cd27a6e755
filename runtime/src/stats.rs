//! Latency and outcome statistics of a run, cheap enough for every frame.
//!
//! Each pipeline stage records into an HDR histogram (fixed memory, no
//! allocation per sample), so percentiles cost nothing until they are read.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The stages of one frame, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Producing the frame: camera dequeue and decode, image decode, or rendering.
    Capture,
    /// Resize, channel order and normalisation into the input tensor.
    Preprocess,
    /// The model itself.
    Invoke,
    /// After the model: features, KNN, drift detectors, quarantine, adaptation, state.
    Autonomy,
    /// Everything else per frame: reading outputs, scoring, bookkeeping.
    Rest,
    /// Whole frame as the inference loop sees it (waiting for a frame included).
    Total,
}

impl Stage {
    /// All stages, in report order.
    pub const ALL: [Stage; 6] = [
        Stage::Capture,
        Stage::Preprocess,
        Stage::Invoke,
        Stage::Autonomy,
        Stage::Rest,
        Stage::Total,
    ];

    /// Short name for tables and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Preprocess => "preprocess",
            Stage::Invoke => "invoke",
            Stage::Autonomy => "autonomy",
            Stage::Rest => "rest",
            Stage::Total => "total",
        }
    }
}

/// Percentiles of one stage, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

/// Per-stage latency histograms.
///
/// Percentiles come from histograms of whole microseconds; the mean comes from an exact
/// nanosecond sum, so a stage of a few microseconds is not rounded to one.
#[derive(Debug, Clone)]
pub struct StageLatencies {
    histograms: [Histogram<u64>; 6],
    sums_ns: [u128; 6],
}

/// Longest latency a histogram tracks exactly (60 s); longer samples are clamped.
const MAX_TRACKED_US: u64 = 60_000_000;

impl Default for StageLatencies {
    fn default() -> Self {
        let make = || {
            Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
                .expect("constant histogram bounds are valid")
        };
        StageLatencies {
            histograms: std::array::from_fn(|_| make()),
            sums_ns: [0; 6],
        }
    }
}

impl StageLatencies {
    /// Record one sample of `stage`.
    pub fn record(&mut self, stage: Stage, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(MAX_TRACKED_US)
            .clamp(1, MAX_TRACKED_US);
        self.histograms[stage as usize].saturating_record(micros);
        self.sums_ns[stage as usize] += elapsed.as_nanos();
    }

    /// Percentiles of `stage`.
    pub fn percentiles(&self, stage: Stage) -> Percentiles {
        let h = &self.histograms[stage as usize];
        Percentiles {
            count: h.len(),
            mean_us: if h.is_empty() {
                0.0
            } else {
                self.sums_ns[stage as usize] as f64 / 1000.0 / h.len() as f64
            },
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// Prediction outcome counts: per class, and accuracy per scenario phase where truth is known.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// Frames predicted as each class.
    pub predicted: BTreeMap<String, u64>,
    /// Per phase (or "all" when the source has no phases), in the order phases
    /// were first seen: (phase, correct, labelled frames).
    pub accuracy: Vec<(String, u64, u64)>,
    /// Sum of top-class confidence, for the mean.
    confidence_sum: f64,
    /// Frames counted.
    pub frames: u64,
}

impl Outcomes {
    /// Count one prediction; `truth` is (phase, true label) when known.
    pub fn record(&mut self, predicted: &str, confidence: f32, truth: Option<(&str, &str)>) {
        self.frames += 1;
        self.confidence_sum += f64::from(confidence);
        // Clone only the first time a class or phase is seen: the steady state allocates nothing.
        match self.predicted.get_mut(predicted) {
            Some(n) => *n += 1,
            None => {
                self.predicted.insert(predicted.to_string(), 1);
            }
        }
        if let Some((phase, label)) = truth {
            let hit = u64::from(label == predicted);
            // A handful of phases at most: a linear scan beats hashing.
            match self.accuracy.iter_mut().find(|(p, _, _)| p == phase) {
                Some((_, correct, total)) => {
                    *correct += hit;
                    *total += 1;
                }
                None => self.accuracy.push((phase.to_string(), hit, 1)),
            }
        }
    }

    /// (correct, labelled frames) of `phase`, if any frame of it was labelled.
    pub fn phase_accuracy(&self, phase: &str) -> Option<(u64, u64)> {
        self.accuracy
            .iter()
            .find(|(p, _, _)| p == phase)
            .map(|&(_, correct, total)| (correct, total))
    }

    /// Mean top-class confidence.
    pub fn mean_confidence(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.confidence_sum / self.frames as f64
        }
    }
}

/// Peak resident set size of this process in bytes (`VmHWM`), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    MemoryUse::read().map(|m| m.peak_bytes)
}

/// This process's resident memory: its peak, and what is resident now split by kind, so a
/// peak RSS figure says what it is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Peak resident set size (`VmHWM`).
    pub peak_bytes: u64,
    /// Resident anonymous memory now (`RssAnon`): heap, thread stacks, the inference
    /// library's arena, our buffers, and what the allocator keeps after a free.
    pub anon_bytes: u64,
    /// Resident file-backed memory now (`RssFile`): the pages of our binary's code and
    /// data and of the shared libraries (the inference library) that were touched.
    pub file_bytes: u64,
}

impl MemoryUse {
    /// Read `/proc/self/status`; `None` where the OS does not report these fields.
    pub fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// The fields of a `/proc/<pid>/status` text (`kB` values).
    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024)
        };
        Some(MemoryUse {
            peak_bytes: field("VmHWM:")?,
            anon_bytes: field("RssAnon:")?,
            file_bytes: field("RssFile:")?,
        })
    }
}

/// Resident memory of one mapped file (our binary, a shared library), summed over its
/// mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentFile {
    /// The file's name without its folder (`tinylcm`, `libLiteRt.so`, `libc.so.6`).
    pub name: String,
    /// Bytes of it resident now.
    pub bytes: u64,
}

/// What of this process's file-backed memory is resident now, per file, largest first:
/// which code a smaller build would have to shrink. `None` where the OS has no
/// `/proc/self/smaps`.
pub fn resident_files() -> Option<Vec<ResidentFile>> {
    Some(parse_smaps(
        &std::fs::read_to_string("/proc/self/smaps").ok()?,
    ))
}

/// Sums the `Rss:` of every mapping of a file in a `/proc/<pid>/smaps` text, by file name.
/// Anonymous mappings, the heap, stacks and `[vdso]`-like pseudo-files are left out: they
/// are `RssAnon`.
fn parse_smaps(smaps: &str) -> Vec<ResidentFile> {
    let mut by_file: BTreeMap<&str, u64> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first.ends_with(':') {
            let kib = fields.next().and_then(|v| v.parse::<u64>().ok());
            if let (true, Some(file), Some(kib)) = (first == "Rss:", current, kib) {
                *by_file.entry(file).or_default() += kib * 1024;
            }
            continue;
        }
        // A mapping's header: `start-end perms offset dev inode [path]`.
        let inode = fields.nth(3);
        let path = fields.next();
        current = match (inode, path) {
            (Some(inode), Some(path)) if inode != "0" && path.starts_with('/') => {
                Some(path.rsplit('/').next().unwrap_or(path))
            }
            _ => None,
        };
    }
    let mut files: Vec<ResidentFile> = by_file
        .into_iter()
        .map(|(name, bytes)| ResidentFile {
            name: name.to_string(),
            bytes,
        })
        .collect();
    files.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    files
}

/// CPU time the calling thread has used so far, where the OS reports it.
///
/// Benchmarks divide differences of this by a frame count: on a machine shared with other
/// work, wall time also counts the time the thread waited for a core, which says nothing
/// about the code measured.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call writes only into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_recorded_samples() {
        let mut lat = StageLatencies::default();
        for ms in 1..=100 {
            lat.record(Stage::Invoke, Duration::from_millis(ms));
        }
        let p = lat.percentiles(Stage::Invoke);
        assert_eq!(p.count, 100);
        // HDR histograms keep 3 significant digits.
        assert!((49_900..=50_100).contains(&p.p50_us), "{p:?}");
        assert!((98_900..=99_100).contains(&p.p99_us), "{p:?}");
        assert!((99_900..=100_100).contains(&p.max_us), "{p:?}");
        assert_eq!(lat.percentiles(Stage::Capture).count, 0);
    }

    /// Fails before this change: the mean came from the microsecond histogram, where 400 ns
    /// counted as 1 µs and 1.9 µs as 1 µs.
    #[test]
    fn the_mean_keeps_sub_microsecond_precision() {
        let mut lat = StageLatencies::default();
        lat.record(Stage::Autonomy, Duration::from_nanos(400));
        lat.record(Stage::Autonomy, Duration::from_nanos(1_900));
        let p = lat.percentiles(Stage::Autonomy);
        assert!((p.mean_us - 1.15).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn absurd_latencies_are_clamped_not_lost() {
        let mut lat = StageLatencies::default();
        lat.record(Stage::Total, Duration::from_secs(3600));
        lat.record(Stage::Total, Duration::ZERO);
        assert_eq!(lat.percentiles(Stage::Total).count, 2);
    }

    #[test]
    fn outcomes_count_accuracy_per_phase() {
        let mut o = Outcomes::default();
        o.record("ball", 0.9, Some(("normal", "ball")));
        o.record("box", 0.5, Some(("normal", "ball")));
        o.record("ball", 0.7, Some(("noise", "ball")));
        o.record("bar", 0.6, None);
        assert_eq!(o.phase_accuracy("normal"), Some((1, 2)));
        assert_eq!(o.phase_accuracy("noise"), Some((1, 1)));
        assert_eq!(o.phase_accuracy("lighting"), None);
        // First-seen order, as the scenario ran.
        assert_eq!(o.accuracy[0].0, "normal");
        assert_eq!(o.accuracy[1].0, "noise");
        assert_eq!(o.predicted["ball"], 2);
        assert_eq!(o.frames, 4);
        assert!((o.mean_confidence() - 0.675).abs() < 1e-6);
    }

    #[test]
    fn thread_cpu_time_grows_with_work_not_with_sleep() {
        let start = thread_cpu_time().expect("Linux reports thread CPU time");
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu_time().unwrap() - start;
        assert!(slept < Duration::from_millis(25), "{slept:?}");
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_time().unwrap() > start + slept);
    }

    #[test]
    fn peak_rss_is_reported_on_linux() {
        assert!(peak_rss_bytes().unwrap_or(0) > 0);
    }

    #[test]
    fn memory_use_splits_what_is_resident_by_kind() {
        let m = MemoryUse::read().expect("Linux reports VmHWM, RssAnon and RssFile");
        assert!(m.anon_bytes > 0 && m.file_bytes > 0, "{m:?}");
        // What is resident now (shared memory aside) never exceeds the peak.
        assert!(m.anon_bytes + m.file_bytes <= m.peak_bytes, "{m:?}");
        let parsed = MemoryUse::parse(
            "VmPeak:\t  100 kB\nVmHWM:\t    30 kB\nVmRSS:\t 25 kB\n\
             RssAnon:\t  10 kB\nRssFile:\t  15 kB\nRssShmem:\t 0 kB\n",
        );
        assert_eq!(
            parsed,
            Some(MemoryUse {
                peak_bytes: 30 * 1024,
                anon_bytes: 10 * 1024,
                file_bytes: 15 * 1024,
            })
        );
        assert_eq!(MemoryUse::parse("VmHWM:\t 30 kB\n"), None);
    }

    #[test]
    fn resident_files_sum_each_files_mappings_and_leave_anonymous_memory_out() {
        let smaps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 1234 /usr/bin/tinylcm
Size:               1024 kB
Rss:                 400 kB
55d0c0100000-55d0c0900000 r-xp 00100000 fd:01 1234 /usr/bin/tinylcm
Rss:                6000 kB
55d0c2000000-55d0c2400000 rw-p 00000000 00:00 0 [heap]
Rss:                3000 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                 900 kB
7f0000200000-7f0000300000 r-xp 00000000 fd:01 77 /usr/lib/libLiteRt.so
Rss:                2000 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
";
        assert_eq!(
            parse_smaps(smaps),
            vec![
                ResidentFile {
                    name: "tinylcm".into(),
                    bytes: 6400 * 1024
                },
                ResidentFile {
                    name: "libLiteRt.so".into(),
                    bytes: 2000 * 1024
                },
            ]
        );
        // The live process: its own executable is resident, and the files add up to no
        // more than the file-backed total the kernel reports.
        let files = resident_files().expect("Linux has /proc/self/smaps");
        assert!(!files.is_empty());
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        let m = MemoryUse::read().unwrap();
        assert!(
            total <= m.file_bytes + m.file_bytes / 10,
            "{files:?} vs {m:?}"
        );
    }
}
