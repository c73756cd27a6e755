//! The `[rauc]` section: whether the runtime talks to RAUC, on which bus, and how long an OS
//! bundle install may take. Off by default: only the OS image runs a RAUC service.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// Which D-Bus bus the RAUC service is on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum BusAddress {
    /// The system bus (where `rauc.service` runs on the device).
    #[default]
    System,
    /// The session bus of `DBUS_SESSION_BUS_ADDRESS` (development, tests).
    Session,
    /// An explicit D-Bus address, e.g. `unix:path=/run/dbus/system_bus_socket`.
    Address(String),
}

impl From<String> for BusAddress {
    fn from(text: String) -> Self {
        match text.as_str() {
            "system" => BusAddress::System,
            "session" => BusAddress::Session,
            _ => BusAddress::Address(text),
        }
    }
}

impl From<BusAddress> for String {
    fn from(bus: BusAddress) -> Self {
        bus.to_string()
    }
}

impl fmt::Display for BusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddress::System => f.write_str("system"),
            BusAddress::Session => f.write_str("session"),
            BusAddress::Address(a) => f.write_str(a),
        }
    }
}

impl BusAddress {
    /// Whether an explicit address has the D-Bus form `transport:key=value,...`.
    fn is_well_formed(&self) -> bool {
        match self {
            BusAddress::Address(a) => a
                .split_once(':')
                .is_some_and(|(transport, rest)| !transport.is_empty() && rest.contains('=')),
            _ => true,
        }
    }
}

/// `[rauc]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RaucConfig {
    /// Talk to RAUC (report slots, mark good, install bundles). Default `false`.
    pub enabled: bool,
    /// `system`, `session`, or a D-Bus address. Default `system`.
    pub bus: BusAddress,
    /// Longest an OS bundle install may take, seconds. Default 900.
    pub install_timeout_seconds: u64,
}

impl Default for RaucConfig {
    fn default() -> Self {
        RaucConfig {
            enabled: false,
            bus: BusAddress::System,
            install_timeout_seconds: 900,
        }
    }
}

impl RaucConfig {
    /// Longest wait for an install to complete.
    pub fn install_timeout(&self) -> Duration {
        Duration::from_secs(self.install_timeout_seconds)
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::first_failed([
            (
                "rauc.bus",
                self.bus.is_well_formed(),
                format!("{:?}", self.bus.to_string()),
                "use \"system\", \"session\" or a D-Bus address like \
                 \"unix:path=/run/dbus/system_bus_socket\""
                    .to_string(),
            ),
            (
                "rauc.install-timeout-seconds",
                (10..=86_400).contains(&self.install_timeout_seconds),
                self.install_timeout_seconds.to_string(),
                "use 10..=86400 (writing a root file system to an SD card takes minutes)"
                    .to_string(),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_names_and_addresses_round_trip() {
        for (text, bus) in [
            ("system", BusAddress::System),
            ("session", BusAddress::Session),
            (
                "unix:path=/tmp/bus",
                BusAddress::Address("unix:path=/tmp/bus".into()),
            ),
        ] {
            let c: RaucConfig = toml::from_str(&format!("bus = {text:?}")).unwrap();
            assert_eq!(c.bus, bus);
            c.validate().unwrap();
            assert!(toml::to_string(&c).unwrap().contains(text));
        }
        RaucConfig::default().validate().unwrap();
        for bad in [
            "bus = \"sistem\"",
            "bus = \"unix:\"",
            "install-timeout-seconds = 1",
        ] {
            let c: RaucConfig = toml::from_str(bad).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("rauc."), "{bad}: {e}");
        }
        assert!(toml::from_str::<RaucConfig>("bogus = 1").is_err());
    }
}
