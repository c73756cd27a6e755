//! [`RaucError`]: what went wrong talking to RAUC, and what to check.

use std::path::PathBuf;

/// RAUC could not be reached or refused.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    /// The client's own runtime could not be created.
    #[error("cannot start the D-Bus client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The bus could not be reached.
    #[error(
        "cannot connect to the D-Bus {bus} bus: {source}; is dbus running, and is `rauc.bus` right?"
    )]
    Connect {
        /// The bus asked for.
        bus: String,
        /// What zbus said (boxed: zbus' error is large).
        #[source]
        source: Box<zbus::Error>,
    },
    /// The RAUC service is not on the bus.
    #[error("RAUC is not on the D-Bus {bus} bus ({detail}); is rauc.service running?")]
    NotRunning {
        /// The bus asked.
        bus: String,
        /// What the bus said.
        detail: String,
    },
    /// A call failed.
    #[error("RAUC {call} failed: {source}")]
    Call {
        /// The method or property.
        call: &'static str,
        /// What zbus or RAUC said (boxed: zbus' error is large).
        #[source]
        source: Box<zbus::Error>,
    },
    /// The bundle to install does not exist.
    #[error("OS bundle {path}: {source}")]
    Bundle {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// RAUC reported a failed installation.
    #[error("installing {path} failed (code {code}): {last_error}")]
    InstallFailed {
        /// The bundle.
        path: PathBuf,
        /// RAUC's result code.
        code: i32,
        /// RAUC's `LastError`.
        last_error: String,
    },
    /// The installation did not complete in time.
    #[error(
        "installing {path} did not complete within {seconds} s (RAUC is still `{operation}`); \
         raise `rauc.install-timeout-seconds` or check `rauc status`"
    )]
    InstallTimeout {
        /// The bundle.
        path: PathBuf,
        /// The timeout.
        seconds: u64,
        /// RAUC's operation when giving up.
        operation: String,
    },
    /// Another operation is running.
    #[error("RAUC is busy ({operation}); try again when it is idle")]
    Busy {
        /// What RAUC is doing.
        operation: String,
    },
    /// The service reported no booted slot.
    #[error(
        "RAUC knows no booted slot: the kernel command line lacks `rauc.slot=` (or `root=` of a \
         configured slot); check the bootloader script"
    )]
    NoBootedSlot,
}

impl RaucError {
    /// A failed call, told apart: "service unknown" means RAUC is not running.
    pub(crate) fn call(call: &'static str, bus: &str, source: zbus::Error) -> Self {
        if let zbus::Error::MethodError(name, detail, _) = &source {
            let name = name.as_str();
            if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
            {
                return RaucError::NotRunning {
                    bus: bus.to_string(),
                    detail: detail.clone().unwrap_or_else(|| name.to_string()),
                };
            }
        }
        RaucError::Call {
            call,
            source: Box::new(source),
        }
    }
}
