//! The `[sync]` section: which server, how to enroll, how often, and how much disk the outbox
//! may use. Owned here, beside the code it configures.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// `[sync]` configuration. Sync is off until `server` is set (or the device was enrolled with
/// `tinylcm enroll`, which records the server with the credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncConfig {
    /// sphere-lite's base URL, e.g. `https://sphere.example:8470`. Default: none. Must be
    /// `https://` (the device's token, remote configuration and feedback cross it), except a
    /// loopback address (`127.0.0.0/8`, `::1`, `localhost`: a server on the device itself or
    /// a local tunnel) or with `allow-insecure-http = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Allow a plain `http://` server that is not a loopback address. Anyone on the path can
    /// then read the device's token and change the configuration and feedback it is sent:
    /// only for a closed lab network. Default false.
    pub allow_insecure_http: bool,
    /// A file holding an enrollment key (e.g. on the boot partition), used once when the device
    /// has no credentials yet. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_key_file: Option<PathBuf>,
    /// PEM file of a private CA to trust in addition to the built-in roots. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Seconds between sync rounds (package, upload, pull). Default 60.
    pub interval_seconds: u64,
    /// Largest package built, KiB. Default 4096.
    pub max_package_kib: u64,
    /// Disk the outbox may hold, MiB. Default 64.
    pub max_outbox_mib: u64,
    /// Packages the outbox may hold. Default 1000.
    pub max_outbox_packages: u64,
    /// Longest wait between retries, seconds (the backoff's cap). Default 300.
    pub max_backoff_seconds: u64,
    /// TCP connect timeout, seconds. Default 10.
    pub connect_timeout_seconds: u64,
    /// Whole-request timeout, seconds (uploads and model downloads restart or resume after
    /// it). Default 120.
    pub request_timeout_seconds: u64,
    /// Prediction samples kept per class between two packages. Default 2.
    pub predictions_per_class: usize,
    /// Least time between two prediction samples of one class, seconds. Default 300.
    pub prediction_interval_seconds: u64,
    /// Ship the runtime's logs (JSON lines). Default true.
    pub logs: bool,
    /// Log lines kept on disk at most, KiB (rotating files; the oldest is removed). Default 4096.
    pub max_log_kib: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            server: None,
            allow_insecure_http: false,
            enrollment_key_file: None,
            ca_file: None,
            interval_seconds: 60,
            max_package_kib: 4096,
            max_outbox_mib: 64,
            max_outbox_packages: 1000,
            max_backoff_seconds: 300,
            connect_timeout_seconds: 10,
            request_timeout_seconds: 120,
            predictions_per_class: 2,
            prediction_interval_seconds: 300,
            logs: true,
            max_log_kib: 4096,
        }
    }
}

impl SyncConfig {
    /// Time between rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds)
    }

    /// Largest package in bytes.
    pub fn max_package_bytes(&self) -> u64 {
        self.max_package_kib * 1024
    }

    /// Outbox byte budget.
    pub fn max_outbox_bytes(&self) -> u64 {
        self.max_outbox_mib * 1024 * 1024
    }

    /// Checks a server URL (`[sync] server`, `tinylcm enroll --server`, the server recorded in
    /// the credentials) against the https rule of [`SyncConfig::server`], naming `key`.
    pub fn check_server(&self, key: &str, server: &str) -> Result<(), ConfigError> {
        check_server_url(key, server, self.allow_insecure_http)
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(server) = &self.server {
            self.check_server("sync.server", server)?;
        }
        let max_member_mib = crate::state::MAX_VALUE_BYTES as u64 / 1024 / 2;
        ConfigError::first_failed([
            (
                "sync.interval-seconds",
                (1..=86_400).contains(&self.interval_seconds),
                self.interval_seconds.to_string(),
                "use 1..=86400 (60 sends a package a minute)".to_string(),
            ),
            (
                "sync.max-package-kib",
                (64..=max_member_mib).contains(&self.max_package_kib),
                self.max_package_kib.to_string(),
                format!("use 64..={max_member_mib} (a package is kept in the state database)"),
            ),
            (
                "sync.max-outbox-mib",
                self.max_outbox_mib >= 1
                    && self.max_outbox_mib * 1024 >= self.max_package_kib
                    && self.max_outbox_mib <= 1 << 20,
                self.max_outbox_mib.to_string(),
                "use at least one package's worth (max-package-kib) and at most 1048576"
                    .to_string(),
            ),
            (
                "sync.max-outbox-packages",
                (1..=1_000_000).contains(&self.max_outbox_packages),
                self.max_outbox_packages.to_string(),
                "use 1..=1000000".to_string(),
            ),
            (
                "sync.max-backoff-seconds",
                (1..=86_400).contains(&self.max_backoff_seconds),
                self.max_backoff_seconds.to_string(),
                "use 1..=86400 (300 retries at least every five minutes)".to_string(),
            ),
            (
                "sync.connect-timeout-seconds",
                (1..=600).contains(&self.connect_timeout_seconds),
                self.connect_timeout_seconds.to_string(),
                "use 1..=600".to_string(),
            ),
            (
                "sync.request-timeout-seconds",
                (1..=86_400).contains(&self.request_timeout_seconds),
                self.request_timeout_seconds.to_string(),
                "use 1..=86400".to_string(),
            ),
            (
                "sync.predictions-per-class",
                self.predictions_per_class <= 64,
                self.predictions_per_class.to_string(),
                "use 0..=64 (0 sends no prediction samples)".to_string(),
            ),
            (
                "sync.max-log-kib",
                (64..=1 << 20).contains(&self.max_log_kib),
                self.max_log_kib.to_string(),
                "use 64..=1048576".to_string(),
            ),
        ])
    }
}

/// The https rule: `server` must be an `https://` URL, or `http://` to a loopback host
/// (`127.0.0.0/8`, `::1`, `localhost`), or any `http://` when `allow_insecure_http`.
pub fn check_server_url(
    key: &str,
    server: &str,
    allow_insecure_http: bool,
) -> Result<(), ConfigError> {
    let example = "write the server's base URL, e.g. \"https://sphere.example:8470\"";
    let url = match reqwest::Url::parse(server) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            return Err(ConfigError::new(
                key,
                format!("{server:?} is not an http(s) URL"),
                example,
            ));
        }
    };
    if url.scheme() == "https" || allow_insecure_http || is_loopback(&url) {
        return Ok(());
    }
    Err(ConfigError::new(
        key,
        format!(
            "{server:?} is plain http to a host that is not this machine: the device's token, \
             its remote configuration and feedback would cross the network readable and \
             changeable by anyone on the path"
        ),
        "use https:// (sphere-lite serves TLS with --tls-cert/--tls-key; a private CA goes in \
         [sync] ca-file); plain http is accepted only to a loopback address (127.0.0.0/8, ::1, \
         localhost) or with [sync] allow-insecure-http = true",
    ))
}

/// Whether `url`'s host is this machine: `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // An IPv6 host comes bracketed; the URL parser has already normalized IPv4 forms.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        SyncConfig::default().validate().unwrap();
        let c: SyncConfig = toml::from_str("server = \"ftp://x\"").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("sync.server")
        );
        let c: SyncConfig = toml::from_str("max-outbox-mib = 1\nmax-package-kib = 4096").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sync.max-outbox-mib"), "{e}");
        let c: SyncConfig = toml::from_str("interval-seconds = 0").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<SyncConfig>("bogus = 1").is_err());
    }
}

#[cfg(test)]
mod https_rule {
    use super::*;

    fn check(server: &str, allow: bool) -> Result<(), String> {
        let c = SyncConfig {
            server: Some(server.into()),
            allow_insecure_http: allow,
            ..Default::default()
        };
        c.validate().map_err(|e| e.to_string())
    }

    /// `[sync] server` must be https unless it is this machine or insecure http is allowed
    /// explicitly. Fails before this change: any `http://` server was accepted, so the token
    /// and the unsigned configuration and feedback crossed the network in the clear.
    #[test]
    fn plain_http_is_refused_except_loopback_or_when_allowed() {
        for ok in [
            "https://sphere.example:8470",
            "https://10.0.0.5",
            "http://127.0.0.1:8470",
            "http://127.1.2.3/",
            "http://[::1]:8470",
            "http://localhost:8470",
            "http://LOCALHOST",
        ] {
            check(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://sphere.example:8470",
            "http://10.0.0.5:8470",
            "http://localhost.evil.example",
            "http://128.0.0.1",
            "http://[::2]",
            "http://0.0.0.0:8470",
        ] {
            let e = check(bad, false).unwrap_err();
            assert!(e.contains("sync.server"), "{e}");
            assert!(e.contains("allow-insecure-http = true"), "{e}");
            assert!(e.contains("https://"), "{e}");
            check(bad, true).unwrap_or_else(|e| panic!("{bad} with allow-insecure-http: {e}"));
        }
        for garbage in ["ftp://x", "sphere.example", "http://", "file:///etc"] {
            let e = check(garbage, true).unwrap_err();
            assert!(e.contains("not an http(s) URL"), "{garbage}: {e}");
        }
        let c: SyncConfig =
            toml::from_str("server = \"http://lab:1\"\nallow-insecure-http = true").unwrap();
        c.validate().unwrap();
    }
}
