//! The `[drift]` configuration section: shared life-cycle settings and one sub-table per
//! detector, each with documented defaults and a `validate` that names the key.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// Which scalar of an [`Observation`](super::Observation) a scalar detector watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// The prediction's confidence.
    Confidence,
    /// The mean k-NN distance.
    Distance,
}

/// Which direction of change counts as drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Only increases of the mean.
    Increase,
    /// Only decreases of the mean.
    Decrease,
    /// Both.
    Both,
}

/// Settings every detector shares (keys directly under `[drift]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommonConfig {
    /// Samples ignored at the start (`drift.warm-up`).
    pub warm_up: u32,
    /// Samples that build the reference (`drift.reference-samples`).
    pub reference_samples: u32,
    /// Samples after leaving drift before a new onset can emit an event (`drift.cooldown`).
    pub cooldown: u32,
    /// Weight of the new batch in rolling reference updates; 0 keeps the reference fixed
    /// (`drift.reference-beta`).
    pub reference_beta: f64,
    /// Monitoring samples per rolling update (`drift.reference-interval`).
    pub reference_interval: u32,
    /// Threshold multiplier per false alarm (`drift.false-alarm-raise`).
    pub false_alarm_raise: f64,
    /// Upper bound of the accumulated multiplier (`drift.max-threshold-factor`).
    pub max_threshold_factor: f64,
}

impl Default for CommonConfig {
    fn default() -> Self {
        DriftConfig::default().common()
    }
}

/// The `[drift]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DriftConfig {
    /// See [`CommonConfig::warm_up`].
    pub warm_up: u32,
    /// See [`CommonConfig::reference_samples`].
    pub reference_samples: u32,
    /// See [`CommonConfig::cooldown`].
    pub cooldown: u32,
    /// See [`CommonConfig::reference_beta`].
    pub reference_beta: f64,
    /// See [`CommonConfig::reference_interval`].
    pub reference_interval: u32,
    /// See [`CommonConfig::false_alarm_raise`].
    pub false_alarm_raise: f64,
    /// See [`CommonConfig::max_threshold_factor`].
    pub max_threshold_factor: f64,
    /// `[drift.page-hinkley-distance]`.
    pub page_hinkley_distance: PageHinkleyConfig,
    /// `[drift.ewma-confidence]`.
    pub ewma_confidence: EwmaConfig,
    /// `[drift.page-hinkley-confidence]`.
    pub page_hinkley_confidence: PageHinkleyConfig,
    /// `[drift.cusum]`.
    pub cusum: CusumConfig,
    /// `[drift.distribution]`.
    pub distribution: DistributionConfig,
    /// `[drift.embedding]`.
    pub embedding: EmbeddingConfig,
    /// `[drift.adwin]`.
    pub adwin: AdwinConfig,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            warm_up: 0,
            reference_samples: 300,
            cooldown: 200,
            reference_beta: 0.0,
            reference_interval: 100,
            false_alarm_raise: 1.25,
            max_threshold_factor: 2.0,
            page_hinkley_distance: PageHinkleyConfig::default(),
            ewma_confidence: EwmaConfig::default(),
            page_hinkley_confidence: PageHinkleyConfig::default(),
            cusum: CusumConfig::default(),
            distribution: DistributionConfig::default(),
            embedding: EmbeddingConfig::default(),
            adwin: AdwinConfig::default(),
        }
    }
}

/// Largest warm-up, reference, cooldown or window length accepted (bounded state).
pub const MAX_SAMPLES: u32 = 1_000_000;

fn range_u32(key: &str, value: u32, min: u32, max: u32, fix: &str) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            key,
            format!("{value} is out of range {min}..={max}"),
            fix,
        ));
    }
    Ok(())
}

fn range_f64(key: &str, value: f64, min: f64, max: f64, fix: &str) -> Result<(), ConfigError> {
    if !value.is_finite() || value < min || value > max {
        return Err(ConfigError::new(
            key,
            format!("{value} is out of range {min}..={max}"),
            fix,
        ));
    }
    Ok(())
}

fn positive(key: &str, value: f64, fix: &str) -> Result<(), ConfigError> {
    if !value.is_finite() || value <= 0.0 {
        return Err(ConfigError::new(
            key,
            format!("{value} must be a positive number"),
            fix,
        ));
    }
    Ok(())
}

impl DriftConfig {
    /// The shared settings.
    pub fn common(&self) -> CommonConfig {
        CommonConfig {
            warm_up: self.warm_up,
            reference_samples: self.reference_samples,
            cooldown: self.cooldown,
            reference_beta: self.reference_beta,
            reference_interval: self.reference_interval,
            false_alarm_raise: self.false_alarm_raise,
            max_threshold_factor: self.max_threshold_factor,
        }
    }

    /// Check every key; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range_u32(
            "drift.warm-up",
            self.warm_up,
            0,
            MAX_SAMPLES,
            "use 0 (no warm-up) up to a few hundred samples",
        )?;
        range_u32(
            "drift.reference-samples",
            self.reference_samples,
            10,
            MAX_SAMPLES,
            "use at least 10; 300 (the default) gives a stable mean and spread",
        )?;
        range_u32(
            "drift.cooldown",
            self.cooldown,
            0,
            MAX_SAMPLES,
            "use 0..=1000000 samples",
        )?;
        range_f64(
            "drift.reference-beta",
            self.reference_beta,
            0.0,
            1.0,
            "use 0 (fixed reference) or a small weight of the new batch such as 0.05",
        )?;
        range_u32(
            "drift.reference-interval",
            self.reference_interval,
            2,
            MAX_SAMPLES,
            "use at least 2 samples per rolling update",
        )?;
        range_f64(
            "drift.false-alarm-raise",
            self.false_alarm_raise,
            1.0,
            10.0,
            "use 1 (never raise) up to 10; 1.25 is the default",
        )?;
        range_f64(
            "drift.max-threshold-factor",
            self.max_threshold_factor,
            1.0,
            100.0,
            "use 1..=100; 2 (the default) at most doubles a threshold",
        )?;
        self.page_hinkley_distance
            .validate("drift.page-hinkley-distance")?;
        self.ewma_confidence.validate()?;
        self.page_hinkley_confidence
            .validate("drift.page-hinkley-confidence")?;
        self.cusum.validate()?;
        self.distribution.validate()?;
        self.embedding.validate()?;
        self.adwin.validate()?;
        Ok(())
    }
}

/// `[drift.page-hinkley-distance]` and `[drift.page-hinkley-confidence]`: one-sided
/// Page-Hinkley, δ and λ in units of the reference σ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PageHinkleyConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Allowed drift of the mean per sample (σ).
    pub delta: f64,
    /// Alarm threshold on the Page-Hinkley statistic (σ).
    pub lambda: f64,
    /// Leave drift when the recovery statistic (evidence that the mean is back) exceeds this (σ).
    pub exit_lambda: f64,
}

impl Default for PageHinkleyConfig {
    fn default() -> Self {
        PageHinkleyConfig {
            enabled: true,
            delta: 0.5,
            lambda: 24.0,
            exit_lambda: 18.0,
        }
    }
}

impl PageHinkleyConfig {
    /// Check the keys under `section`.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        range_f64(
            &format!("{section}.delta"),
            self.delta,
            0.0,
            100.0,
            "use 0..=100 σ; 0.5 detects shifts of about 1 σ",
        )?;
        positive(
            &format!("{section}.lambda"),
            self.lambda,
            "use a positive threshold in σ; 24 (the default) gave no false alarm in 10^6 stationary samples",
        )?;
        positive(
            &format!("{section}.exit-lambda"),
            self.exit_lambda,
            "use a positive threshold in σ, e.g. the same as lambda",
        )
    }
}

/// `[drift.ewma-confidence]`: EWMA control chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EwmaConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Smoothing weight of the newest sample.
    pub lambda: f64,
    /// Control-limit width, in σ of the EWMA.
    pub limit: f64,
    /// Leave drift when the EWMA is back within this many σ of the EWMA.
    pub exit_limit: f64,
    /// Consecutive samples outside the limits before an alarm.
    pub persistence: u32,
    /// Which direction counts (a confidence drop by default).
    pub direction: Direction,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            enabled: true,
            lambda: 0.05,
            limit: 6.0,
            exit_limit: 2.0,
            persistence: 3,
            direction: Direction::Decrease,
        }
    }
}

impl EwmaConfig {
    /// Check the keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range_f64(
            "drift.ewma-confidence.lambda",
            self.lambda,
            1e-4,
            1.0,
            "use a smoothing weight in 0.0001..=1, e.g. 0.05",
        )?;
        positive("drift.ewma-confidence.limit", self.limit, "use e.g. 6")?;
        positive(
            "drift.ewma-confidence.exit-limit",
            self.exit_limit,
            "use a positive value below `limit`, e.g. 2",
        )?;
        if self.exit_limit >= self.limit {
            return Err(ConfigError::new(
                "drift.ewma-confidence.exit-limit",
                "must be below `limit` (hysteresis)",
                "use e.g. 2 with limit 6",
            ));
        }
        range_u32(
            "drift.ewma-confidence.persistence",
            self.persistence,
            1,
            10_000,
            "use 1..=10000 samples",
        )
    }
}

/// `[drift.cusum]`: tabular CUSUM, k and h in σ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CusumConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Input.
    pub signal: Signal,
    /// Which direction counts.
    pub direction: Direction,
    /// Allowance (σ), about half the shift to detect.
    pub k: f64,
    /// Decision interval (σ).
    pub h: f64,
    /// Leave drift when the recovery sum exceeds this (σ).
    pub exit_h: f64,
}

impl Default for CusumConfig {
    fn default() -> Self {
        CusumConfig {
            enabled: true,
            signal: Signal::Confidence,
            direction: Direction::Both,
            k: 0.5,
            h: 24.0,
            exit_h: 18.0,
        }
    }
}

impl CusumConfig {
    /// Check the keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range_f64(
            "drift.cusum.k",
            self.k,
            0.0,
            100.0,
            "use 0..=100 σ, e.g. 0.5",
        )?;
        positive(
            "drift.cusum.h",
            self.h,
            "use a positive threshold in σ, e.g. 24",
        )?;
        positive(
            "drift.cusum.exit-h",
            self.exit_h,
            "use a positive threshold in σ, e.g. the same as h",
        )
    }
}

/// `[drift.distribution]`: class-mix shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DistributionConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Sliding window of recent predictions.
    pub window: u32,
    /// Alarm when the JS divergence (bits, 0..=1) exceeds this.
    pub threshold: f64,
    /// Leave drift when it is below this.
    pub exit_threshold: f64,
    /// Additive (Laplace) smoothing per class count.
    pub smoothing: f64,
    /// Largest class count accepted (bounds memory).
    pub max_classes: u32,
}

impl Default for DistributionConfig {
    fn default() -> Self {
        DistributionConfig {
            enabled: true,
            window: 300,
            threshold: 0.1,
            exit_threshold: 0.04,
            smoothing: 0.5,
            max_classes: 1024,
        }
    }
}

impl DistributionConfig {
    /// Check the keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range_u32(
            "drift.distribution.window",
            self.window,
            10,
            100_000,
            "use 10..=100000 predictions",
        )?;
        range_f64(
            "drift.distribution.threshold",
            self.threshold,
            1e-6,
            1.0,
            "use a divergence in bits, 0 < t <= 1, e.g. 0.1",
        )?;
        range_f64(
            "drift.distribution.exit-threshold",
            self.exit_threshold,
            0.0,
            self.threshold,
            "use a value below `threshold`, e.g. 0.04",
        )?;
        range_f64(
            "drift.distribution.smoothing",
            self.smoothing,
            1e-6,
            100.0,
            "use a small positive count such as 0.5",
        )?;
        range_u32(
            "drift.distribution.max-classes",
            self.max_classes,
            2,
            65_535,
            "use 2..=65535",
        )
    }
}

/// `[drift.embedding]`: shift of the mean embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EmbeddingConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight of the newest embedding in the running mean.
    pub lambda: f64,
    /// Alarm threshold, in units of the statistic's null spread (≈ 1 without drift).
    pub threshold: f64,
    /// Leave drift below this.
    pub exit_threshold: f64,
    /// Largest embedding length accepted (bounds memory).
    pub max_dim: u32,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            enabled: true,
            lambda: 0.02,
            threshold: 4.0,
            exit_threshold: 2.0,
            max_dim: 4096,
        }
    }
}

impl EmbeddingConfig {
    /// Check the keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range_f64(
            "drift.embedding.lambda",
            self.lambda,
            1e-4,
            1.0,
            "use a weight in 0.0001..=1, e.g. 0.02",
        )?;
        positive("drift.embedding.threshold", self.threshold, "use e.g. 4")?;
        range_f64(
            "drift.embedding.exit-threshold",
            self.exit_threshold,
            0.0,
            self.threshold,
            "use a value below `threshold`, e.g. 2",
        )?;
        range_u32(
            "drift.embedding.max-dim",
            self.max_dim,
            1,
            65_536,
            "use 1..=65536",
        )
    }
}

/// `[drift.adwin]`: ADWIN2 adaptive window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdwinConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Input.
    pub signal: Signal,
    /// Confidence parameter of the cut test (smaller: fewer cuts).
    pub delta: f64,
    /// Samples between cut tests.
    pub clock: u32,
    /// Buckets per row of the exponential histogram.
    pub max_buckets: u32,
    /// Smallest sub-window on either side of a cut.
    pub min_window: u32,
    /// Largest window (older buckets are dropped; bounds memory).
    pub max_window: u32,
    /// Alarm when the window mean is this many reference σ outside the reference.
    pub min_shift: f64,
}

impl Default for AdwinConfig {
    fn default() -> Self {
        AdwinConfig {
            enabled: true,
            signal: Signal::Confidence,
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window: 16,
            max_window: 8192,
            min_shift: 1.0,
        }
    }
}

impl AdwinConfig {
    /// Check the keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range_f64(
            "drift.adwin.delta",
            self.delta,
            1e-12,
            0.5,
            "use a small probability such as 0.002",
        )?;
        range_u32("drift.adwin.clock", self.clock, 1, 10_000, "use e.g. 32")?;
        range_u32(
            "drift.adwin.max-buckets",
            self.max_buckets,
            2,
            64,
            "use 2..=64, e.g. 5",
        )?;
        range_u32(
            "drift.adwin.min-window",
            self.min_window,
            1,
            100_000,
            "use e.g. 16",
        )?;
        range_u32(
            "drift.adwin.max-window",
            self.max_window,
            self.min_window.saturating_mul(4).max(16),
            MAX_SAMPLES,
            "use at least 4 × min-window, e.g. 8192",
        )?;
        positive(
            "drift.adwin.min-shift",
            self.min_shift,
            "use a shift in reference σ, e.g. 1",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        DriftConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = DriftConfig::default();
        c.page_hinkley_distance.lambda = f64::NAN;
        assert_eq!(
            c.validate().unwrap_err().key,
            "drift.page-hinkley-distance.lambda"
        );
        let c = DriftConfig {
            reference_samples: 1,
            ..DriftConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "drift.reference-samples");
        let mut c = DriftConfig::default();
        c.ewma_confidence.exit_limit = 9.0;
        assert_eq!(
            c.validate().unwrap_err().key,
            "drift.ewma-confidence.exit-limit"
        );
    }

    #[test]
    fn toml_round_trip_with_kebab_keys() {
        let text = "reference-samples = 100\n[cusum]\nsignal = \"distance\"\nexit-h = 3.0\n";
        let c: DriftConfig = toml::from_str(text).unwrap();
        assert_eq!(c.reference_samples, 100);
        assert_eq!(c.cusum.signal, Signal::Distance);
        assert!(toml::from_str::<DriftConfig>("bogus = 1").is_err());
        let back: DriftConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
