//! The metric keys both sides name: the series the runtime's `metrics.json` always carries
//! (when it has the figure) and the server charts by default.
//!
//! Why here: the runtime flattens its status report into dotted keys, and the dashboard looked
//! for keys of an older layout (`latency_ms.p50`, `system.cpu_percent`), so four of its six
//! default charts stayed empty and nothing failed. Both sides now write these constants: the
//! runtime's metrics builder sets each key from its typed status field, the server's device
//! page charts [`DEFAULT_CHARTS`], and a cross-component test (`tests/e2e/tests/metric_keys.rs`)
//! checks that a real device's keys reach every default chart.

/// Median latency of a whole frame (capture to result), µs.
pub const LATENCY_P50_US: &str = "latency.total.p50_us";
/// 99th-percentile latency of a whole frame, µs.
pub const LATENCY_P99_US: &str = "latency.total.p99_us";
/// Frames per second over the last status interval (the rate since start hides a slowdown
/// behind the hours before it).
pub const FPS: &str = "fps_interval";
/// Mean top-class confidence over the last status interval, 0..=1.
pub const CONFIDENCE_MEAN: &str = "confidence.mean";
/// CPU use of the runtime process, percent of one core (up to 100 × cores).
pub const PROCESS_CPU_PERCENT: &str = "system.process_cpu_percent";
/// Highest thermal zone temperature (the SoC on a Raspberry Pi), °C; absent on machines
/// without a thermal zone.
pub const SOC_TEMPERATURE_C: &str = "system.soc_temperature_c";

/// How often the device syncs (its `[sync] interval-seconds`), s: the fleet page judges the
/// age of a device's last sync against this interval rather than one window for every device.
pub const SYNC_INTERVAL_SECONDS: &str = "sync.interval_seconds";

/// How many model releases the device refused since it started (before or after their
/// download): the rollout page's fallback for a device too old to say which release it
/// refused and why ([`crate::device_json::refusal`]). It restarts at 0 with the device.
pub const MODELS_REFUSED: &str = "sync.models_refused";

/// The keys of the sync client's own figures the server reads (beside the charts), which the
/// runtime sends in every metrics file.
pub const SYNC_KEYS: [&str; 2] = [SYNC_INTERVAL_SECONDS, MODELS_REFUSED];

/// The series a device page charts when the operator chose none, in this order.
pub const DEFAULT_CHARTS: [&str; 6] = [
    LATENCY_P50_US,
    LATENCY_P99_US,
    FPS,
    CONFIDENCE_MEAN,
    PROCESS_CPU_PERCENT,
    SOC_TEMPERATURE_C,
];

/// The key of a class's count since start: the runtime's status report counts frames per
/// class (`classes.<name>.total` once flattened), and the dashboard's label chooser reads
/// a device's classes from these keys.
pub fn class_count_key(class: &str) -> String {
    format!("classes.{class}.total")
}

/// The class a [`class_count_key`] names, or `None` for any other key.
pub fn class_of_count_key(key: &str) -> Option<&str> {
    key.strip_prefix("classes.")?
        .strip_suffix(".total")
        .filter(|name| !name.is_empty() && !name.contains('.'))
}

/// What a series measures, for an axis that means something (a confidence axis runs 0..1,
/// not 0.956..1, so a small dip does not look like a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A fraction, 0..=1 (confidences, ratios).
    Fraction,
    /// A percentage, from 0 (at least 0..=100 on an axis).
    Percent,
    /// Any other quantity.
    Other,
}

/// The scale of `key`: [`Scale::Fraction`] for confidences, [`Scale::Percent`] for keys
/// ending in `percent`, else [`Scale::Other`].
pub fn scale_of(key: &str) -> Scale {
    let last = key.rsplit('.').next().unwrap_or(key);
    if key == CONFIDENCE_MEAN || key.starts_with("confidence.") {
        Scale::Fraction
    } else if last.ends_with("percent") {
        Scale::Percent
    } else {
        Scale::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's rule for a metric key (dot-separated parts of `[A-Za-z0-9_-]`, at most
    /// 100 bytes), restated so this test does not depend on the parser's module.
    fn valid_key(key: &str) -> bool {
        key.len() <= 100
            && key.split('.').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
    }

    #[test]
    fn a_class_count_key_names_its_class_and_nothing_else_does() {
        assert_eq!(class_of_count_key(&class_count_key("new-1")), Some("new-1"));
        assert_eq!(class_of_count_key("classes.box.total"), Some("box"));
        for other in [
            "classes..total",
            "classes.a.b.total",
            "classes.box.mean",
            FPS,
        ] {
            assert_eq!(class_of_count_key(other), None, "{other}");
        }
    }

    #[test]
    fn default_charts_and_sync_keys_are_valid_distinct_keys() {
        let all: Vec<&str> = DEFAULT_CHARTS.iter().chain(&SYNC_KEYS).copied().collect();
        for (i, k) in all.iter().enumerate() {
            assert!(valid_key(k), "{k}");
            assert!(!all[..i].contains(k), "{k} twice");
        }
    }

    #[test]
    fn scales_follow_the_key() {
        assert_eq!(scale_of(CONFIDENCE_MEAN), Scale::Fraction);
        assert_eq!(scale_of("confidence.p10"), Scale::Fraction);
        assert_eq!(scale_of(PROCESS_CPU_PERCENT), Scale::Percent);
        assert_eq!(scale_of(LATENCY_P50_US), Scale::Other);
        assert_eq!(scale_of(FPS), Scale::Other);
    }
}
