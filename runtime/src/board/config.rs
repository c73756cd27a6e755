//! The `[board]` section: status LED and button pins, and the free space the disk guard
//! keeps. Owned here, beside the code it configures.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// BCM pins usable on the 40-pin header (0 and 1 are the HAT ID EEPROM's bus).
const HEADER_PINS: std::ops::RangeInclusive<u8> = 2..=27;

/// `[board]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BoardConfig {
    /// Free space (MiB) that must stay on the data partition: writes that can wait or drop
    /// (thumbnails, outbox, downloads) are refused below it, and the space budget
    /// ([`super::SpaceBudget`]) sheds downloads, old logs, the oldest thumbnails and old
    /// snapshots to get back above it. Default 64.
    pub min_free_mib: u64,
    /// BCM pin of the status LED; absent: no LED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub led_pin: Option<u8>,
    /// The LED is lit when the pin is low. Default `false`.
    pub led_active_low: bool,
    /// BCM pin of a button to ground (internal pull-up); absent: no button. Held for
    /// [`crate::service::LONG_PRESS`], it marks the open drift incident as a false alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub button_pin: Option<u8>,
    /// Label of the GPIO chip the LED and button are on (as `gpioinfo` shows it); absent:
    /// the Pi's header controller (`pinctrl-bcm2835`, `pinctrl-bcm2711` or `pinctrl-rp1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpio_chip: Option<String>,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            min_free_mib: 64,
            led_pin: None,
            led_active_low: false,
            button_pin: None,
            gpio_chip: None,
        }
    }
}

impl BoardConfig {
    /// Bytes that must stay free.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_mib.saturating_mul(1 << 20)
    }

    /// A disk guard for the file system holding `path` with this section's minimum.
    pub fn disk_guard(&self, path: impl Into<std::path::PathBuf>) -> super::DiskGuard {
        super::DiskGuard::new(path, self.min_free_bytes())
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pin_ok = |p: Option<u8>| p.is_none_or(|p| HEADER_PINS.contains(&p));
        let show = |p: Option<u8>| p.map(|p| p.to_string()).unwrap_or_default();
        ConfigError::first_failed([
            (
                "board.min-free-mib",
                self.min_free_mib <= 1 << 20,
                self.min_free_mib.to_string(),
                "use 0..=1048576 MiB (64 keeps room for logs and the database)".to_string(),
            ),
            (
                "board.led-pin",
                pin_ok(self.led_pin),
                show(self.led_pin),
                "use a BCM pin number 2..=27 of the 40-pin header".to_string(),
            ),
            (
                "board.button-pin",
                pin_ok(self.button_pin),
                show(self.button_pin),
                "use a BCM pin number 2..=27 of the 40-pin header".to_string(),
            ),
        ])?;
        if let Some(chip) = &self.gpio_chip {
            // The kernel's label field holds 31 bytes and a NUL.
            if chip.trim().is_empty() || chip.len() > 31 {
                return Err(ConfigError::new(
                    "board.gpio-chip",
                    format!("{chip:?} is not a GPIO chip label (1..=31 bytes)"),
                    "use the label `gpioinfo` prints, or remove the key for the Pi's own chip",
                ));
            }
        }
        if self.led_pin.is_some() && self.led_pin == self.button_pin {
            return Err(ConfigError::new(
                "board.button-pin",
                "is the LED's pin",
                "give the button and the LED different pins",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_checked_against_the_header() {
        BoardConfig::default().validate().unwrap();
        let ok: BoardConfig = toml::from_str("led-pin = 17\nbutton-pin = 27").unwrap();
        ok.validate().unwrap();
        for (text, key) in [
            ("led-pin = 1", "board.led-pin"),
            ("led-pin = 40", "board.led-pin"),
            ("button-pin = 28", "board.button-pin"),
            ("led-pin = 17\nbutton-pin = 17", "board.button-pin"),
            ("min-free-mib = 2000000", "board.min-free-mib"),
            ("gpio-chip = \"\"", "board.gpio-chip"),
            (
                "gpio-chip = \"an-expander-label-longer-than-31-bytes\"",
                "board.gpio-chip",
            ),
        ] {
            let c: BoardConfig = toml::from_str(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(toml::from_str::<BoardConfig>("led-pin = -1").is_err());
        assert!(toml::from_str::<BoardConfig>("bogus = 1").is_err());
    }
}
