//! Remote configuration: settings an operator pushes from sphere-lite to a device, a device
//! group or the whole fleet (e.g. drift detector thresholds), delivered through the device's
//! feedback queue and acknowledged like feedback.
//!
//! Why a shared module: the server must refuse a configuration the device would refuse
//! *before* it queues it, and both sides must compute the same effective configuration and
//! revision. A configuration is a TOML fragment of the runtime's own config file, limited to
//! the sections that are safe to change from afar ([`REMOTE_SECTIONS`]): what the device
//! learns and how it watches for drift — never which model, camera, engine or state folder it
//! uses (a typo there would take a device off the air with nobody on site).
//!
//! Layers: the fleet-wide fragment (`all`), then the device's group, then the device's own
//! fragment; a later layer wins key by key (tables merge deeply). The device receives the
//! whole effective fragment every time ([`crate::api::FeedbackVerdict::Config`]), so items
//! that arrive late or twice never leave it half-configured; the runtime checks it against
//! its complete config schema before applying it.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Largest fragment, and largest effective configuration, in bytes: a detector-threshold
/// change is a few hundred, and the whole configuration must fit in one feedback item (the
/// MLflow adapter keeps an item in a 6000-character param).
pub const MAX_CONFIG_BYTES: usize = 4 * 1024;

/// Top-level sections of the runtime's config file a remote fragment may set.
pub const REMOTE_SECTIONS: [&str; 5] = ["autonomy", "knn", "drift", "quarantine", "adaptation"];

/// Why a fragment is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// More than [`MAX_CONFIG_BYTES`] (a layer, or the layers merged).
    #[error("the configuration has {0} bytes; at most {MAX_CONFIG_BYTES} are accepted")]
    TooLarge(usize),
    /// Not TOML.
    #[error("the configuration is not valid TOML: {0}")]
    Toml(String),
    /// A top-level key that is not a remotely settable section.
    #[error(
        "section {0:?} cannot be set remotely; allowed: autonomy, knn, drift, quarantine, adaptation"
    )]
    Section(String),
    /// A top-level key that is not a table (`drift = 3`).
    #[error("{0:?} must be a table ([{0}] …)")]
    NotATable(String),
}

/// Parse and check one layer; an empty or blank text is the empty fragment.
pub fn parse_fragment(text: &str) -> Result<toml::Table, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(text.len()));
    }
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml(e.message().to_owned()))?;
    for (key, value) in &table {
        if !REMOTE_SECTIONS.contains(&key.as_str()) {
            return Err(ConfigError::Section(key.clone()));
        }
        if !value.is_table() {
            return Err(ConfigError::NotATable(key.clone()));
        }
    }
    Ok(table)
}

/// `over` merged onto `base`: tables merge key by key, anything else in `over` replaces.
fn merge_into(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_into(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The configuration a device should run, and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The merged fragment (canonical TOML; empty when no layer sets anything).
    pub toml: String,
    /// First 16 hex digits of the SHA-256 of [`Effective::toml`]: equal fragments have equal
    /// revisions, so the server delivers a change once and the device can tell it has it.
    pub revision: String,
}

/// Merge `layers` (fleet-wide first, device last) into the effective configuration.
pub fn effective<'a>(layers: impl IntoIterator<Item = &'a str>) -> Result<Effective, ConfigError> {
    let mut merged = toml::Table::new();
    for layer in layers {
        merge_into(&mut merged, parse_fragment(layer)?);
    }
    let toml = if merged.is_empty() {
        String::new()
    } else {
        toml::to_string(&merged).map_err(|e| ConfigError::Toml(e.to_string()))?
    };
    if toml.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(toml.len()));
    }
    let revision = crate::package::hex(&Sha256::digest(toml.as_bytes()))[..16].to_owned();
    Ok(Effective { toml, revision })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_deeply_and_the_last_wins() {
        let e = effective([
            "[drift.page-hinkley-distance]\nlambda = 50.0\ndelta = 0.005\n[knn]\nk = 5\n",
            "",
            "[drift.page-hinkley-distance]\nlambda = 80.0\n",
        ])
        .unwrap();
        let t: toml::Table = e.toml.parse().unwrap();
        assert_eq!(
            t["drift"]["page-hinkley-distance"]["lambda"].as_float(),
            Some(80.0)
        );
        assert_eq!(
            t["drift"]["page-hinkley-distance"]["delta"].as_float(),
            Some(0.005)
        );
        assert_eq!(t["knn"]["k"].as_integer(), Some(5));
        assert_eq!(e.revision.len(), 16);
    }

    #[test]
    fn equal_configurations_have_equal_revisions() {
        let a = effective(["[knn]\nk = 5\n[drift]\nx = 1\n"]).unwrap();
        let b = effective(["[drift]\nx = 1\n", "[knn]\nk = 5"]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.revision, effective([""]).unwrap().revision);
        assert_eq!(effective(["", "  \n"]).unwrap().toml, "");
    }

    #[test]
    fn unsafe_or_malformed_fragments_are_refused() {
        assert_eq!(
            parse_fragment("[model]\npath = \"/tmp/x.tflite\"\n"),
            Err(ConfigError::Section("model".into()))
        );
        assert_eq!(
            parse_fragment("drift = 3"),
            Err(ConfigError::NotATable("drift".into()))
        );
        assert!(matches!(
            parse_fragment("[drift"),
            Err(ConfigError::Toml(_))
        ));
        let big = format!("[knn]\n# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        assert!(matches!(
            parse_fragment(&big),
            Err(ConfigError::TooLarge(_))
        ));
        // A layer that is refused makes the merge fail: nothing half-valid is delivered.
        assert!(effective(["[knn]\nk = 3", "[engine]\nx = 1"]).is_err());
    }
}
