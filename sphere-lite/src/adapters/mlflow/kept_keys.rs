//! Which metric keys the MLflow backend logs as MLflow metrics: every key (the default), or
//! only the keys an operator names plus the ones the server reads itself.
//!
//! Why a choice: MLflow stores each metric point as a database row, and that row is most of
//! what a package costs MLflow (measured with `cargo bench -p sphere-lite --bench replicas`:
//! ≈ 0.15–0.3 ms of MLflow's CPU per point, so a device sending a per-class breakdown of a
//! 64-class model, 140 keys a package, costs MLflow 20–40 ms per package). A large fleet can
//! keep MLflow to the series its data scientists browse. What is not logged is not lost: the
//! package's `metrics.json` stays in the blob store (listed on the device's packages page),
//! and the embedded backend keeps every key whatever this says.

use std::fmt;

use tinylcm_protocol::device_json::metrics::valid_key;
use tinylcm_protocol::metric_keys::{DEFAULT_CHARTS, SYNC_KEYS};

/// Most patterns in one setting (each key of each package is matched against them).
pub const MAX_PATTERNS: usize = 256;

/// One pattern: a whole key, or every key under a prefix (`latency.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// The prefix including its trailing `.`.
    Under(String),
}

/// The metric keys logged to MLflow (see the module docs). [`KeptKeys::default`] keeps all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeptKeys {
    /// `None`: every key.
    patterns: Option<Vec<Pattern>>,
}

/// Why a pattern list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

impl KeptKeys {
    /// Every key (the default).
    pub fn all() -> Self {
        KeptKeys::default()
    }

    /// The keys `patterns` name: `*` alone keeps every key; `a.b` keeps that key; `a.*` keeps
    /// every key under `a.`. An empty list keeps only the keys the server reads itself
    /// ([`KeptKeys::keeps`]). Each pattern must be a valid metric key (with `.*` after it for a
    /// prefix).
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        if patterns.len() > MAX_PATTERNS {
            return Err(PatternError(format!(
                "{} patterns; at most {MAX_PATTERNS}",
                patterns.len()
            )));
        }
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p == "*" {
                return Ok(KeptKeys::all());
            }
            let (name, pattern) = match p.strip_suffix(".*") {
                Some(prefix) => (prefix, Pattern::Under(format!("{prefix}."))),
                None => (p, Pattern::Exact(p.to_owned())),
            };
            if !valid_key(name) {
                return Err(PatternError(format!(
                    "{p:?} is not a metric key or a key prefix followed by .*"
                )));
            }
            out.push(pattern);
        }
        Ok(KeptKeys {
            patterns: Some(out),
        })
    }

    /// Whether every key is kept.
    pub fn keeps_all(&self) -> bool {
        self.patterns.is_none()
    }

    /// Whether `key` is logged: a key the patterns name, or one of the keys the server reads
    /// back from the series itself (the device page's default charts and the sync figures),
    /// whatever the patterns say.
    pub fn keeps(&self, key: &str) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        DEFAULT_CHARTS.contains(&key)
            || SYNC_KEYS.contains(&key)
            || patterns.iter().any(|p| match p {
                Pattern::Exact(k) => k == key,
                Pattern::Under(prefix) => key.starts_with(prefix.as_str()),
            })
    }
}

impl fmt::Display for KeptKeys {
    /// The patterns as an operator writes them (`*` for all).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(patterns) = &self.patterns else {
            return f.write_str("*");
        };
        let names: Vec<String> = patterns
            .iter()
            .map(|p| match p {
                Pattern::Exact(k) => k.clone(),
                Pattern::Under(prefix) => format!("{prefix}*"),
            })
            .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinylcm_protocol::metric_keys::{LATENCY_P50_US, SYNC_INTERVAL_SECONDS};

    #[test]
    fn the_default_and_a_star_keep_every_key() {
        assert!(KeptKeys::default().keeps("classes.cat.total"));
        let star = KeptKeys::parse(&["latency.*", "*"]).unwrap();
        assert!(star.keeps_all());
        assert_eq!(star.to_string(), "*");
    }

    #[test]
    fn patterns_keep_their_keys_and_the_servers_own_reads() {
        let kept = KeptKeys::parse(&["system.rss_mib", " latency.* "]).unwrap();
        assert!(kept.keeps("system.rss_mib"));
        assert!(kept.keeps("latency.infer.p50_us"));
        assert!(
            !kept.keeps("system.rss_mib_peak"),
            "an exact key is not a prefix"
        );
        assert!(
            !kept.keeps("latency"),
            "a prefix names the keys under it only"
        );
        assert!(!kept.keeps("classes.cat.total"));
        assert!(kept.keeps(LATENCY_P50_US));
        assert_eq!(kept.to_string(), "system.rss_mib,latency.*");

        let none = KeptKeys::parse::<&str>(&[]).unwrap();
        assert!(!none.keeps_all());
        assert!(!none.keeps("classes.cat.total"));
        for key in DEFAULT_CHARTS.iter().chain(&SYNC_KEYS) {
            assert!(none.keeps(key), "{key}");
        }
        assert!(none.keeps(SYNC_INTERVAL_SECONDS));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern_named() {
        for bad in ["", "a..b", "a.*.b", "*.total", "sphere.x", "a b", "a.**"] {
            let e = KeptKeys::parse(&[bad]).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("k{i}")).collect();
        assert!(KeptKeys::parse(&many).is_err());
    }
}
