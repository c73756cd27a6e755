//! System metrics read from Linux's `/proc` and `/sys` files.
//!
//! A device in the field is judged by more than its frame rate: a Pi Zero 2 W that runs hot
//! throttles its CPU, a failing power supply shows as under-voltage, and a full `/data`
//! partition stops the state store. Every figure here is optional: a file that is missing
//! (another OS, a container, a board without the sensor) or holds something unexpected gives
//! `None`, never an error or a panic, because a status report must never stop the runtime.
//!
//! The parsers are pure functions of the file's text so they can be tested on samples
//! (and garbage); [`SystemSampler`] reads the files and keeps what the CPU percentage needs
//! between two samples. Reading costs a handful of small `read`s of in-memory pseudo-files
//! and one `statvfs`, which is why it runs on the status writer thread, never per frame.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Highest temperature a thermal zone may report and still be believed, millidegrees. Some
/// zones report placeholders (e.g. 255 °C or −273 °C) that would otherwise dominate the
/// maximum.
const MAX_PLAUSIBLE_MILLI_C: i64 = 150_000;
/// Lowest believable temperature, millidegrees.
const MIN_PLAUSIBLE_MILLI_C: i64 = -60_000;
/// Thermal zones looked at, at most: boards have a handful; this bounds the work when a
/// system exposes many.
const MAX_THERMAL_ZONES: usize = 64;

/// System metrics of one sample; `None` wherever the system does not say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemMetrics {
    /// CPU time used by this process since it started (user + system), seconds.
    pub process_cpu_seconds: Option<f64>,
    /// CPU use of this process since the previous sample, percent of one core (like `top`:
    /// up to 100 × cores).
    pub process_cpu_percent: Option<f64>,
    /// System load average over 1, 5 and 15 minutes.
    pub load_average: Option<[f64; 3]>,
    /// Resident memory of this process, bytes.
    pub rss_bytes: Option<u64>,
    /// Peak resident memory of this process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Memory available to new work system-wide (`MemAvailable`), bytes.
    pub memory_available_bytes: Option<u64>,
    /// Physical memory (`MemTotal`), bytes.
    pub memory_total_bytes: Option<u64>,
    /// Highest thermal zone temperature (the SoC on a Raspberry Pi), °C.
    pub soc_temperature_c: Option<f64>,
    /// Raspberry Pi firmware throttling flags, where the firmware exposes them.
    pub throttled: Option<Throttled>,
    /// Free space for unprivileged writers on the state folder's file system, bytes.
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system, bytes.
    pub disk_total_bytes: Option<u64>,
}

/// The Raspberry Pi firmware's `get_throttled` word, raw and decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttled {
    /// The raw bit field.
    pub raw: u32,
    /// Names of the set bits, e.g. `under-voltage-now`, `throttled-since-boot`.
    pub flags: Vec<String>,
}

/// Bits of `get_throttled` and their names (the firmware's documented layout).
const THROTTLE_BITS: [(u32, &str); 8] = [
    (0, "under-voltage-now"),
    (1, "frequency-capped-now"),
    (2, "throttled-now"),
    (3, "soft-temperature-limit-now"),
    (16, "under-voltage-since-boot"),
    (17, "frequency-capped-since-boot"),
    (18, "throttled-since-boot"),
    (19, "soft-temperature-limit-since-boot"),
];

impl Throttled {
    /// Decodes the raw word.
    pub fn from_raw(raw: u32) -> Self {
        let flags = THROTTLE_BITS
            .iter()
            .filter(|(bit, _)| raw & (1 << bit) != 0)
            .map(|(_, name)| (*name).to_string())
            .collect();
        Throttled { raw, flags }
    }
}

/// CPU ticks (user, system) of a process from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_proc_stat_ticks(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let mut fields = rest.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The state letter of a process (`R`, `S`, `Z`, ...) from the text of `/proc/<pid>/stat`.
pub fn parse_proc_stat_state(text: &str) -> Option<char> {
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Whether process `pid` is alive, from its `/proc` entry: `Some(false)` when it is gone or
/// a zombie (killed but not yet reaped, so its pid still exists), `None` when `/proc` is
/// not there to ask.
pub fn process_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self/stat").exists() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    Some(
        stat.as_deref()
            .and_then(parse_proc_stat_state)
            .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x')),
    )
}

/// The three load averages from the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace();
    let mut out = [0.0; 3];
    for slot in &mut out {
        let v: f64 = fields.next()?.parse().ok()?;
        // "nan" and "inf" parse as floats; they are not load averages.
        if !v.is_finite() || v < 0.0 {
            return None;
        }
        *slot = v;
    }
    Some(out)
}

/// The value of a `Key:   1234 kB` line (as in `/proc/meminfo` and `/proc/self/status`),
/// in bytes.
pub fn parse_kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => n.checked_mul(1024),
            _ => None,
        }
    })
}

/// A thermal zone's `temp` file (millidegrees Celsius) in °C, if plausible.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    (MIN_PLAUSIBLE_MILLI_C..=MAX_PLAUSIBLE_MILLI_C)
        .contains(&milli)
        .then(|| milli as f64 / 1000.0)
}

/// The Raspberry Pi firmware's `get_throttled` file: a hexadecimal word, with or without `0x`.
pub fn parse_throttled(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.is_empty() {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Where the sampler reads from; [`Sources::default`] is the real system, tests point it
/// at a folder of sample files.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `/proc/self/stat`.
    pub proc_stat: PathBuf,
    /// `/proc/self/status`.
    pub proc_status: PathBuf,
    /// `/proc/loadavg`.
    pub loadavg: PathBuf,
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
    /// `/sys/class/thermal`: its `thermal_zone*/temp` files are read.
    pub thermal: PathBuf,
    /// `/sys/devices/platform/soc/soc:firmware/get_throttled`.
    pub throttled: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            proc_stat: "/proc/self/stat".into(),
            proc_status: "/proc/self/status".into(),
            loadavg: "/proc/loadavg".into(),
            meminfo: "/proc/meminfo".into(),
            thermal: "/sys/class/thermal".into(),
            throttled: "/sys/devices/platform/soc/soc:firmware/get_throttled".into(),
        }
    }
}

/// Reads [`SystemMetrics`]; keeps the previous CPU time for the percentage.
#[derive(Debug)]
pub struct SystemSampler {
    sources: Sources,
    disk: Option<PathBuf>,
    ticks_per_second: Option<f64>,
    previous: Option<(Instant, f64)>,
}

impl SystemSampler {
    /// A sampler of the real system; `disk` is the folder whose file system's free space is
    /// reported (the state folder).
    pub fn new(disk: Option<PathBuf>) -> Self {
        Self::with_sources(Sources::default(), disk, clock_ticks_per_second())
    }

    /// A sampler reading from `sources`, with `ticks_per_second` for `/proc` CPU times.
    pub fn with_sources(
        sources: Sources,
        disk: Option<PathBuf>,
        ticks_per_second: Option<f64>,
    ) -> Self {
        SystemSampler {
            sources,
            disk,
            ticks_per_second: ticks_per_second.filter(|t| t.is_finite() && *t > 0.0),
            previous: None,
        }
    }

    /// One sample. The CPU percentage needs a previous sample, so the first has none.
    pub fn sample(&mut self) -> SystemMetrics {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let now = Instant::now();
        let cpu = read(&self.sources.proc_stat)
            .as_deref()
            .and_then(parse_proc_stat_ticks)
            .zip(self.ticks_per_second)
            .map(|((user, system), hz)| user.saturating_add(system) as f64 / hz);
        let percent = match (cpu, self.previous) {
            (Some(cpu), Some((then, before))) => {
                let wall = now.duration_since(then).as_secs_f64();
                (wall > 0.0 && cpu >= before).then(|| (cpu - before) / wall * 100.0)
            }
            _ => None,
        };
        if let Some(cpu) = cpu {
            self.previous = Some((now, cpu));
        }
        let status = read(&self.sources.proc_status);
        let meminfo = read(&self.sources.meminfo);
        let (disk_free_bytes, disk_total_bytes) = self.disk.as_deref().and_then(disk_space).unzip();
        SystemMetrics {
            process_cpu_seconds: cpu,
            process_cpu_percent: percent,
            load_average: read(&self.sources.loadavg)
                .as_deref()
                .and_then(parse_loadavg),
            rss_bytes: status.as_deref().and_then(|s| parse_kib_field(s, "VmRSS")),
            peak_rss_bytes: status.as_deref().and_then(|s| parse_kib_field(s, "VmHWM")),
            memory_available_bytes: meminfo
                .as_deref()
                .and_then(|s| parse_kib_field(s, "MemAvailable")),
            memory_total_bytes: meminfo
                .as_deref()
                .and_then(|s| parse_kib_field(s, "MemTotal")),
            soc_temperature_c: max_temperature(&self.sources.thermal),
            throttled: read(&self.sources.throttled)
                .as_deref()
                .and_then(parse_throttled)
                .map(Throttled::from_raw),
            disk_free_bytes,
            disk_total_bytes,
        }
    }
}

/// The highest plausible `thermal_zone*/temp` under `dir`, °C.
fn max_temperature(dir: &Path) -> Option<f64> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .take(MAX_THERMAL_ZONES)
        .filter_map(|e| std::fs::read_to_string(e.path().join("temp")).ok())
        .filter_map(|t| parse_millidegrees(&t))
        .reduce(f64::max)
}

/// Clock ticks per second, the unit of `/proc` CPU times.
fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf only reads a constant of the C library; no pointers are involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// (free for unprivileged writers, total) bytes of the file system holding `path`, or of
/// its nearest existing ancestor (the state folder may not exist before the first write).
#[allow(
    clippy::useless_conversion,
    reason = "statvfs field types are u64 here but u32 on 32-bit targets"
)]
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let c_path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable
    // memory of the right type for the call's duration.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the whole struct (and it was zeroed anyway).
    let stat = unsafe { stat.assume_init() };
    let unit = match u64::from(stat.f_frsize) {
        0 => u64::from(stat.f_bsize),
        n => n,
    };
    Some((
        u64::from(stat.f_bavail).saturating_mul(unit),
        u64::from(stat.f_blocks).saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a Pi, with a command name that contains `) (` to trip naive parsers.
    const STAT: &str = "1234 (tiny) (lcm) S 1 1234 1234 0 -1 4194560 5300 0 12 0 \
                        731 219 0 0 20 0 5 0 4242 123456789 6000 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17415 0 0 0 17 2 0 0 0 0 0\n";

    #[test]
    fn proc_stat_ticks_come_after_the_command_name() {
        assert_eq!(parse_proc_stat_ticks(STAT), Some((731, 219)));
        for garbage in [
            "",
            "1234 (tiny",
            "1234 (tiny) S 1 2",
            "1234 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 12",
            "\u{0}\u{1}))) 9 9",
        ] {
            assert_eq!(parse_proc_stat_ticks(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn process_state_and_liveness() {
        assert_eq!(parse_proc_stat_state(STAT), Some('S'));
        assert_eq!(parse_proc_stat_state("9 (a) b) Z 1"), Some('Z'));
        assert_eq!(parse_proc_stat_state("9 (a"), None);
        assert_eq!(parse_proc_stat_state("9 (a)"), None);
        if cfg!(target_os = "linux") {
            assert_eq!(process_alive(std::process::id()), Some(true));
            // Beyond the kernel's pid limit (4 194 304): never a process.
            assert_eq!(process_alive(u32::MAX), Some(false));
        }
    }

    #[test]
    fn loadavg_needs_three_finite_numbers() {
        assert_eq!(
            parse_loadavg("0.52 0.58 1.59 1/389 12345\n"),
            Some([0.52, 0.58, 1.59])
        );
        for garbage in ["", "0.5 0.5", "nan 1 1", "1 inf 1", "-1 0 0", "a b c"] {
            assert_eq!(parse_loadavg(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn kib_fields_of_meminfo_and_status() {
        let meminfo = "MemTotal:         437552 kB\nMemFree:           28000 kB\n\
                       MemAvailable:     301234 kB\nHugePages_Total:       0\n";
        assert_eq!(parse_kib_field(meminfo, "MemTotal"), Some(437_552 * 1024));
        assert_eq!(
            parse_kib_field(meminfo, "MemAvailable"),
            Some(301_234 * 1024)
        );
        // A prefix of another key is not that key; a value without the unit is not bytes.
        assert_eq!(parse_kib_field(meminfo, "Mem"), None);
        assert_eq!(parse_kib_field(meminfo, "HugePages_Total"), None);
        let status = "Name:\ttinylcm\nVmHWM:\t   28672 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(parse_kib_field(status, "VmRSS"), Some(20_480 * 1024));
        assert_eq!(parse_kib_field(status, "VmHWM"), Some(28_672 * 1024));
        for garbage in ["", "VmRSS:", "VmRSS: x kB", "VmRSS: -5 kB", "VmRSS 5 kB"] {
            assert_eq!(parse_kib_field(garbage, "VmRSS"), None, "{garbage:?}");
        }
        // Overflow is refused, not wrapped.
        assert_eq!(
            parse_kib_field("VmRSS: 18446744073709551615 kB", "VmRSS"),
            None
        );
    }

    #[test]
    fn temperatures_in_millidegrees_within_reason() {
        assert_eq!(parse_millidegrees("48312\n"), Some(48.312));
        assert_eq!(parse_millidegrees("-5000"), Some(-5.0));
        for garbage in [
            "",
            "warm",
            "48.3",
            "255000",
            "-273150",
            "99999999999999999999",
        ] {
            assert_eq!(parse_millidegrees(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn throttled_hex_with_or_without_prefix() {
        assert_eq!(parse_throttled("50005\n"), Some(0x50005));
        assert_eq!(parse_throttled("0x0"), Some(0));
        assert_eq!(parse_throttled("0X1"), Some(1));
        for garbage in ["", "0x", "zz", "123456789", "-1"] {
            assert_eq!(parse_throttled(garbage), None, "{garbage:?}");
        }
        let t = Throttled::from_raw(0x50005);
        assert_eq!(
            t.flags,
            [
                "under-voltage-now",
                "throttled-now",
                "under-voltage-since-boot",
                "throttled-since-boot"
            ]
        );
        assert!(Throttled::from_raw(0).flags.is_empty());
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn fake_sources(root: &Path) -> Sources {
        Sources {
            proc_stat: root.join("stat"),
            proc_status: root.join("status"),
            loadavg: root.join("loadavg"),
            meminfo: root.join("meminfo"),
            thermal: root.join("thermal"),
            throttled: root.join("get_throttled"),
        }
    }

    #[test]
    fn a_sampler_reads_sample_files_and_computes_cpu_percent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("stat"), STAT);
        write(&root.join("status"), "VmHWM:\t 2048 kB\nVmRSS:\t 1024 kB\n");
        write(&root.join("loadavg"), "1.00 2.00 3.00 1/1 1\n");
        write(
            &root.join("meminfo"),
            "MemTotal: 4 kB\nMemAvailable: 2 kB\n",
        );
        write(&root.join("thermal/thermal_zone0/temp"), "41000\n");
        write(&root.join("thermal/thermal_zone1/temp"), "52500\n");
        write(&root.join("thermal/thermal_zone2/temp"), "255000\n");
        write(&root.join("thermal/cooling_device0/temp"), "90000\n");
        write(&root.join("get_throttled"), "4\n");
        let mut s =
            SystemSampler::with_sources(fake_sources(root), Some(root.join("state")), Some(100.0));
        let m = s.sample();
        assert_eq!(m.process_cpu_seconds, Some(9.5));
        assert_eq!(m.process_cpu_percent, None, "needs a previous sample");
        assert_eq!(m.load_average, Some([1.0, 2.0, 3.0]));
        assert_eq!(
            (m.rss_bytes, m.peak_rss_bytes),
            (Some(1024 * 1024), Some(2048 * 1024))
        );
        assert_eq!(m.memory_total_bytes, Some(4096));
        assert_eq!(m.memory_available_bytes, Some(2048));
        // The implausible zone and the cooling device are ignored.
        assert_eq!(m.soc_temperature_c, Some(52.5));
        assert_eq!(m.throttled.unwrap().flags, ["throttled-now"]);
        // The state folder does not exist: its nearest existing ancestor's file system counts.
        assert!(m.disk_free_bytes.is_some() && m.disk_total_bytes >= m.disk_free_bytes);

        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&root.join("stat"), &STAT.replace(" 731 219 ", " 741 219 "));
        let m = s.sample();
        let pct = m.process_cpu_percent.unwrap();
        assert!(pct > 0.0 && pct <= 0.1 / 0.02 * 100.0, "{pct}");
    }

    #[test]
    fn garbage_or_missing_files_give_none_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut s = SystemSampler::with_sources(fake_sources(root), None, Some(100.0));
        assert_eq!(s.sample(), SystemMetrics::default());
        for name in ["stat", "status", "loadavg", "meminfo", "get_throttled"] {
            write(&root.join(name), "\u{fffd}garbage ) ( :: kB 0x\n");
        }
        write(&root.join("thermal/thermal_zone0/temp"), "hot");
        assert_eq!(s.sample(), SystemMetrics::default());
        // Invalid bytes (not UTF-8) too.
        std::fs::write(root.join("meminfo"), [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(s.sample(), SystemMetrics::default());
        // No clock tick rate: no CPU figures, whatever the file says.
        write(&root.join("stat"), STAT);
        let mut s = SystemSampler::with_sources(fake_sources(root), None, Some(0.0));
        assert_eq!(s.sample().process_cpu_seconds, None);
    }

    #[test]
    fn the_real_system_reports_what_linux_always_has() {
        let m = SystemSampler::new(Some(std::env::temp_dir())).sample();
        if cfg!(target_os = "linux") {
            assert!(m.process_cpu_seconds.is_some());
            assert!(m.rss_bytes.unwrap_or(0) > 0);
            assert!(m.memory_total_bytes.unwrap_or(0) > 0);
            assert!(m.disk_total_bytes.unwrap_or(0) > 0);
        }
    }
}
