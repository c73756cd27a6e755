//! The `[server]` section of the config file: the door's timeouts, connection cap, host
//! allow-list, trusted proxies and failed-authentication budget, with defaults and bounds.
//!
//! Why beside the door and not in `config`: each section type lives beside the code it
//! configures; `config` only composes them (and turns a bad value into its `ConfigError`).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Default `header_read_timeout_secs`.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default `request_body_timeout_secs`.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_SECS: u64 = 300;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `auth_failure_burst`.
pub const DEFAULT_AUTH_FAILURE_BURST: u32 = 10;
/// Default `auth_failure_refill_secs`.
pub const DEFAULT_AUTH_FAILURE_REFILL_SECS: u64 = 6;

/// What the door enforces (see [`crate::door`]); `Default` is what `serve` runs with when the
/// config file has no `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorSettings {
    /// From the moment a connection waits for a request (just opened, or after its previous
    /// response) until that request's head is complete; also the keep-alive idle deadline.
    pub header_read_timeout: Duration,
    /// From a request's head to the last byte of its body; a later body is cut off with 408.
    pub request_body_timeout: Duration,
    /// Open connections at most; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Host names (lower case, no port) answered besides loopback and the address a connection
    /// arrived at; `*` answers any `Host`.
    pub allowed_hosts: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client for the failure budget.
    pub trusted_proxies: Vec<IpAddr>,
    /// Failed authentications a source may make in a burst before it gets 429.
    pub auth_failure_burst: u32,
    /// After the burst, one more failure is allowed every this long.
    pub auth_failure_refill: Duration,
}

impl Default for DoorSettings {
    fn default() -> Self {
        DoorSettings {
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            request_body_timeout: Duration::from_secs(DEFAULT_REQUEST_BODY_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            auth_failure_burst: DEFAULT_AUTH_FAILURE_BURST,
            auth_failure_refill: Duration::from_secs(DEFAULT_AUTH_FAILURE_REFILL_SECS),
        }
    }
}

/// `[server]` of the TOML file: every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `header_read_timeout_secs = 10` (1..=300)
    pub header_read_timeout_secs: Option<u64>,
    /// `request_body_timeout_secs = 300` (1..=3600)
    pub request_body_timeout_secs: Option<u64>,
    /// `max_connections = 1024` (1..=65536)
    pub max_connections: Option<usize>,
    /// `allowed_hosts = ["sphere.example.net"]`
    pub allowed_hosts: Option<Vec<String>>,
    /// `trusted_proxies = ["127.0.0.1"]`
    pub trusted_proxies: Option<Vec<String>>,
    /// `auth_failure_burst = 10` (1..=1000)
    pub auth_failure_burst: Option<u32>,
    /// `auth_failure_refill_secs = 6` (1..=3600)
    pub auth_failure_refill_secs: Option<u64>,
}

/// `value` when within `lo..=hi`, else the error naming `key` and its bounds.
fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: Option<T>,
    default: T,
    (lo, hi): (T, T),
    fix: &'static str,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v < lo || v > hi {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("{v} is outside {lo}..={hi}"),
            fix,
        });
    }
    Ok(v)
}

/// `name` as the allow-list compares it (lower case, no trailing dot), or `None` when it is
/// neither `*`, an IP address nor a DNS name.
pub(crate) fn normalise_host(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name == "*" {
        return Some(name);
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_canonical().to_string());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

impl ServerSection {
    /// Defaults for missing keys; every value checked against its bounds.
    pub fn resolve(self) -> Result<DoorSettings, ConfigError> {
        let header = bounded(
            "server.header_read_timeout_secs",
            self.header_read_timeout_secs,
            DEFAULT_HEADER_READ_TIMEOUT_SECS,
            (1, 300),
            "use 1..=300 seconds (default 10)",
        )?;
        let body = bounded(
            "server.request_body_timeout_secs",
            self.request_body_timeout_secs,
            DEFAULT_REQUEST_BODY_TIMEOUT_SECS,
            (1, 3600),
            "use 1..=3600 seconds (default 300); raise it for large packages over slow links",
        )?;
        let max_connections = bounded(
            "server.max_connections",
            self.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            (1, 65536),
            "use 1..=65536 (default 1024)",
        )?;
        let burst = bounded(
            "server.auth_failure_burst",
            self.auth_failure_burst,
            DEFAULT_AUTH_FAILURE_BURST,
            (1, 1000),
            "use 1..=1000 (default 10)",
        )?;
        let refill = bounded(
            "server.auth_failure_refill_secs",
            self.auth_failure_refill_secs,
            DEFAULT_AUTH_FAILURE_REFILL_SECS,
            (1, 3600),
            "use 1..=3600 seconds (default 6)",
        )?;
        let mut allowed_hosts = Vec::new();
        for name in self.allowed_hosts.unwrap_or_default() {
            let Some(n) = normalise_host(&name) else {
                return Err(ConfigError::Invalid {
                    key: "server.allowed_hosts",
                    problem: format!("{name:?} is not a host name or IP address"),
                    fix: "list names as the clients write them in URLs, without scheme or port (e.g. \"sphere.example.net\"), or \"*\" to answer any Host",
                });
            };
            allowed_hosts.push(n);
        }
        let mut trusted_proxies = Vec::new();
        for text in self.trusted_proxies.unwrap_or_default() {
            let Ok(ip) = text.trim().parse::<IpAddr>() else {
                return Err(ConfigError::Invalid {
                    key: "server.trusted_proxies",
                    problem: format!("{text:?} is not an IP address"),
                    fix: "list the reverse proxies' own addresses, e.g. \"127.0.0.1\" (no ranges, no names)",
                });
            };
            trusted_proxies.push(ip.to_canonical());
        }
        Ok(DoorSettings {
            header_read_timeout: Duration::from_secs(header),
            request_body_timeout: Duration::from_secs(body),
            max_connections,
            allowed_hosts,
            trusted_proxies,
            auth_failure_burst: burst,
            auth_failure_refill: Duration::from_secs(refill),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<DoorSettings, ConfigError> {
        toml::from_str::<ServerSection>(text).unwrap().resolve()
    }

    #[test]
    fn an_empty_section_is_the_defaults() {
        assert_eq!(section("").unwrap(), DoorSettings::default());
    }

    #[test]
    fn keys_are_read_and_normalised() {
        let s = section(
            "header_read_timeout_secs = 3\nrequest_body_timeout_secs = 60\nmax_connections = 8\n\
             allowed_hosts = [\"Sphere.Example.NET.\", \"[::1]\", \"*\"]\n\
             trusted_proxies = [\"10.0.0.1\", \"::ffff:10.0.0.2\"]\n\
             auth_failure_burst = 3\nauth_failure_refill_secs = 60",
        )
        .unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_secs(3));
        assert_eq!(s.request_body_timeout, Duration::from_secs(60));
        assert_eq!(s.max_connections, 8);
        assert_eq!(s.allowed_hosts, ["sphere.example.net", "::1", "*"]);
        assert_eq!(
            s.trusted_proxies,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(s.auth_failure_burst, 3);
        assert_eq!(s.auth_failure_refill, Duration::from_secs(60));
    }

    #[test]
    fn values_out_of_bounds_name_the_key_and_the_fix() {
        for (text, key) in [
            (
                "header_read_timeout_secs = 0",
                "server.header_read_timeout_secs",
            ),
            (
                "header_read_timeout_secs = 301",
                "server.header_read_timeout_secs",
            ),
            (
                "request_body_timeout_secs = 0",
                "server.request_body_timeout_secs",
            ),
            ("max_connections = 0", "server.max_connections"),
            ("max_connections = 100000", "server.max_connections"),
            ("auth_failure_burst = 0", "server.auth_failure_burst"),
            (
                "auth_failure_refill_secs = 0",
                "server.auth_failure_refill_secs",
            ),
            ("allowed_hosts = [\"http://x\"]", "server.allowed_hosts"),
            ("allowed_hosts = [\"a:80\"]", "server.allowed_hosts"),
            (
                "trusted_proxies = [\"proxy.lan\"]",
                "server.trusted_proxies",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/8\"]",
                "server.trusted_proxies",
            ),
        ] {
            let err = section(text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("Fix"),
                "{text}: {err}"
            );
        }
        assert!(toml::from_str::<ServerSection>("bogus = 1").is_err());
    }
}
