//! The error every configuration section reports, on the ground floor of the crate.
//!
//! Each subsystem validates its own section and answers with a [`ConfigError`]; the
//! composed configuration in [`crate::config`] imports those sections. The error type lives
//! here, depending on nothing in the crate, so a section's module does not import the module
//! that imports it (one import circle through every subsystem, before).

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

/// One validation rule of a section: the key, whether its value is acceptable, the value as
/// shown to the user, and the fix.
pub type Check<'a> = (&'a str, bool, String, String);

impl ConfigError {
    /// The first failed check of `checks` as an error ("`value` is not valid"), if any.
    pub fn first_failed<'a>(
        checks: impl IntoIterator<Item = Check<'a>>,
    ) -> Result<(), ConfigError> {
        match checks.into_iter().find(|(_, ok, _, _)| !ok) {
            Some((key, _, value, fix)) => {
                Err(ConfigError::new(key, format!("{value} is not valid"), fix))
            }
            None => Ok(()),
        }
    }

    /// Build an error for `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
