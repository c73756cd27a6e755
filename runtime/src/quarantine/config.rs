//! The `[quarantine]` section: how many suspicious samples are kept, for how long, and how
//! their thumbnails are written. Owned here so the knobs and their validation sit beside the
//! code they bound. (Not yet composed into `crate::config::Config`: that is the wiring step.)
//!
//! Every bound exists because the device runs unattended: without them a long drift would
//! fill the database, the memory (entries are held in memory, see
//! [`Quarantine`](super::Quarantine)) and the SD card.
//!
//! The section with its defaults:
//!
//! ```toml
//! [quarantine]
//! # Keep suspicious samples at all (false: nothing is admitted; kept entries stay readable).
//! enabled = true
//! # Entries kept at most; a new sample evicts resolved entries first, then the oldest pending.
//! max-entries = 500
//! # Feature-vector bytes kept at most (4 bytes per value), in memory and in the database.
//! max-bytes = 8388608
//! # Entries older than this are removed by `expire` (hours).
//! max-age-hours = 168
//! # Entries kept per predicted label, so one class cannot push out all others.
//! per-class-cap = 150
//! # Entries backing a drift event sent for review, kept from eviction until their verdict
//! # (0: none); beyond it the oldest is released. Never more than max-entries / 2.
//! max-under-review = 32
//! # A sample waits this long for its verdict before it is released from review (hours).
//! review-hours = 72
//! # Write a small JPEG of each admitted frame (for a human to label later).
//! thumbnails = true
//! # Longest side of a thumbnail, pixels (8..=256).
//! thumbnail-size = 64
//! # JPEG quality (1..=100).
//! thumbnail-quality = 80
//! # Where thumbnails go; only files named <20-digit id>.jpg are ever written or removed.
//! thumbnail-dir = "/data/tinylcm/quarantine"
//! # Bytes of thumbnails kept on disk at most; the oldest are deleted first.
//! max-thumbnail-bytes = 16777216
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// Largest `max-entries`: the index is held in memory and scanned on admission.
pub const MAX_ENTRIES: usize = 10_000;
/// Largest `max-bytes`: 64 MiB of feature vectors (the runtime's whole budget is ~40 MB, so
/// the default is far below).
pub const MAX_BYTES: u64 = 64 << 20;
/// Largest `max-age-hours`: one year.
pub const MAX_AGE_HOURS: u64 = 24 * 366;
/// Smallest and largest `thumbnail-size`: a queued thumbnail job holds up to
/// `size² × 3` bytes, so the bound caps the writer queue's memory.
pub const THUMBNAIL_SIZE_RANGE: std::ops::RangeInclusive<u32> =
    8..=super::thumbnails::scale::MAX_SIZE;
/// Smallest and largest `max-thumbnail-bytes`.
pub const THUMBNAIL_BYTES_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(4 << 30);

/// `[quarantine]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuarantineConfig {
    /// Admit samples at all. Default true.
    pub enabled: bool,
    /// Entries kept at most, 1..=10000. Default 500.
    pub max_entries: usize,
    /// Feature-vector bytes kept at most (in memory and in the database). Default 8 MiB.
    pub max_bytes: u64,
    /// Age after which [`Quarantine::expire`](super::Quarantine::expire) removes an
    /// entry, hours. Default 168 (a week).
    pub max_age_hours: u64,
    /// Entries kept per predicted label. Default 150.
    pub per_class_cap: usize,
    /// Entries under review (they back a drift event sent to a human) that eviction leaves
    /// alone until their verdict (0: no entry is held for review), 0..=10000; never more than
    /// half of `max-entries` ([`QuarantineConfig::review_limit`]), so new samples always find
    /// room. Beyond it, or beyond half of `max-bytes`, the oldest is released (and logged).
    /// Default 32.
    pub max_under_review: usize,
    /// How long an entry under review waits for its verdict before it is released (logged)
    /// and may be evicted like any other, hours. Default 72.
    pub review_hours: u64,
    /// Write JPEG thumbnails of admitted frames. Default true.
    pub thumbnails: bool,
    /// Longest side of a thumbnail, px. Default 64.
    pub thumbnail_size: u32,
    /// JPEG quality, 1..=100. Default 80.
    pub thumbnail_quality: u8,
    /// The thumbnails directory. Default `/data/tinylcm/quarantine`.
    pub thumbnail_dir: PathBuf,
    /// Thumbnail bytes kept on disk at most. Default 16 MiB.
    pub max_thumbnail_bytes: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            enabled: true,
            max_entries: 500,
            max_bytes: 8 << 20,
            max_age_hours: 168,
            per_class_cap: 150,
            max_under_review: 32,
            review_hours: 72,
            thumbnails: true,
            thumbnail_size: 64,
            thumbnail_quality: 80,
            thumbnail_dir: PathBuf::from("/data/tinylcm/quarantine"),
            max_thumbnail_bytes: 16 << 20,
        }
    }
}

impl QuarantineConfig {
    /// `max-age-hours` in milliseconds.
    pub fn max_age_ms(&self) -> u64 {
        self.max_age_hours.saturating_mul(3_600_000)
    }

    /// Entries held for review at most: `max-under-review`, but never more than half of
    /// `max-entries`.
    pub fn review_limit(&self) -> usize {
        self.max_under_review.min(self.max_entries / 2)
    }

    /// `review-hours` in milliseconds.
    pub fn review_ms(&self) -> u64 {
        self.review_hours.saturating_mul(3_600_000)
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = QuarantineConfig::default();
        let checks: [crate::config_error::Check<'_>; 10] = [
            (
                "quarantine.max-entries",
                (1..=MAX_ENTRIES).contains(&self.max_entries),
                self.max_entries.to_string(),
                format!("set 1..={MAX_ENTRIES} (default {})", d.max_entries),
            ),
            (
                "quarantine.max-bytes",
                (1024..=MAX_BYTES).contains(&self.max_bytes),
                self.max_bytes.to_string(),
                format!(
                    "set 1024..={MAX_BYTES} (default {}); entries are held in memory",
                    d.max_bytes
                ),
            ),
            (
                "quarantine.max-age-hours",
                (1..=MAX_AGE_HOURS).contains(&self.max_age_hours),
                self.max_age_hours.to_string(),
                format!("set 1..={MAX_AGE_HOURS} (default {})", d.max_age_hours),
            ),
            (
                "quarantine.per-class-cap",
                (1..=self.max_entries).contains(&self.per_class_cap),
                self.per_class_cap.to_string(),
                format!(
                    "set 1..=quarantine.max-entries ({}) (default {})",
                    self.max_entries, d.per_class_cap
                ),
            ),
            (
                "quarantine.max-under-review",
                self.max_under_review <= MAX_ENTRIES,
                self.max_under_review.to_string(),
                format!(
                    "set 0..={MAX_ENTRIES} (default {}); at most half of \
                     quarantine.max-entries are held",
                    d.max_under_review
                ),
            ),
            (
                "quarantine.review-hours",
                (1..=MAX_AGE_HOURS).contains(&self.review_hours),
                self.review_hours.to_string(),
                format!("set 1..={MAX_AGE_HOURS} (default {})", d.review_hours),
            ),
            (
                "quarantine.thumbnail-size",
                THUMBNAIL_SIZE_RANGE.contains(&self.thumbnail_size),
                self.thumbnail_size.to_string(),
                format!(
                    "set {}..={} px (default {})",
                    THUMBNAIL_SIZE_RANGE.start(),
                    THUMBNAIL_SIZE_RANGE.end(),
                    d.thumbnail_size
                ),
            ),
            (
                "quarantine.thumbnail-quality",
                (1..=100).contains(&self.thumbnail_quality),
                self.thumbnail_quality.to_string(),
                format!("set 1..=100 (default {})", d.thumbnail_quality),
            ),
            (
                "quarantine.max-thumbnail-bytes",
                THUMBNAIL_BYTES_RANGE.contains(&self.max_thumbnail_bytes),
                self.max_thumbnail_bytes.to_string(),
                format!(
                    "set {}..={} (default {})",
                    THUMBNAIL_BYTES_RANGE.start(),
                    THUMBNAIL_BYTES_RANGE.end(),
                    d.max_thumbnail_bytes
                ),
            ),
            (
                "quarantine.thumbnail-dir",
                !self.thumbnails || !self.thumbnail_dir.as_os_str().is_empty(),
                format!("{:?}", self.thumbnail_dir.display().to_string()),
                "give a directory for thumbnails, or set quarantine.thumbnails = false".into(),
            ),
        ];
        ConfigError::first_failed(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML block in this module's documentation, so that the example a user copies
    /// cannot drift from the defaults.
    fn doc_example() -> String {
        let source = include_str!("config.rs");
        source
            .lines()
            .skip_while(|l| l.trim() != "//! ```toml")
            .skip(1)
            .take_while(|l| l.trim() != "//! ```")
            .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn defaults_are_valid_and_equal_the_documented_example() {
        let c = QuarantineConfig::default();
        c.validate().unwrap();
        let doc = doc_example();
        assert!(doc.starts_with("[quarantine]"), "{doc}");
        #[derive(Deserialize)]
        struct File {
            quarantine: QuarantineConfig,
        }
        let parsed: File = toml::from_str(&doc).unwrap();
        assert_eq!(parsed.quarantine, c);
        // Every key is in the example (deny_unknown_fields checks the other direction).
        let rendered = toml::to_string(&c).unwrap();
        for line in rendered.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            assert!(doc.contains(&format!("\n{key} = ")), "{key} undocumented");
        }
        assert_eq!(c.max_age_ms(), 168 * 3_600_000);
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let cases = [
            ("max-entries = 0", "quarantine.max-entries"),
            ("max-under-review = 10001", "quarantine.max-under-review"),
            ("review-hours = 0", "quarantine.review-hours"),
            ("max-bytes = 10", "quarantine.max-bytes"),
            ("max-age-hours = 0", "quarantine.max-age-hours"),
            (
                "max-entries = 10\nper-class-cap = 11",
                "quarantine.per-class-cap",
            ),
            ("thumbnail-size = 4", "quarantine.thumbnail-size"),
            ("thumbnail-size = 4096", "quarantine.thumbnail-size"),
            ("thumbnail-quality = 0", "quarantine.thumbnail-quality"),
            ("max-thumbnail-bytes = 1", "quarantine.max-thumbnail-bytes"),
            ("thumbnail-dir = \"\"", "quarantine.thumbnail-dir"),
        ];
        for (toml_text, key) in cases {
            let c: QuarantineConfig = toml::from_str(toml_text).unwrap();
            let err = c.validate().unwrap_err();
            assert_eq!(err.key, key, "{toml_text}: {err}");
            assert!(err.fix.contains("set") || err.fix.contains("give"), "{err}");
        }
        // No thumbnails: no directory needed.
        let c: QuarantineConfig =
            toml::from_str("thumbnails = false\nthumbnail-dir = \"\"").unwrap();
        c.validate().unwrap();
        assert!(toml::from_str::<QuarantineConfig>("max-entry = 1").is_err());
    }
}
