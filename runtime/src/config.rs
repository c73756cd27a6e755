//! The one configuration file: TOML with documented defaults, environment
//! overrides, and validation errors that name the key and the fix.
//!
//! Each subsystem owns its section type (e.g. [`crate::engine::EngineConfig`]);
//! this module only composes them, loads them and reports errors.

/// A configuration value that cannot work, with the key and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config key `{key}`: {problem}. Fix: {fix}")]
pub struct ConfigError {
    /// Dotted key, e.g. `engine.threads`.
    pub key: String,
    /// What is wrong with the value.
    pub problem: String,
    /// What the user should write instead.
    pub fix: String,
}

impl ConfigError {
    /// Build an error for `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
