//! [`RaucClient`]: blocking calls to the RAUC service's `de.pengutronix.rauc.Installer`.
//!
//! The `rauc` crate gives an async zbus proxy. Each client owns a current-thread tokio
//! runtime and blocks on it per call; zbus' connection tasks run only inside those calls,
//! which is enough because every exchange is a call and its reply (the install's
//! `Completed` signal is subscribed to before the install starts and waited for in the same
//! blocking call). Properties are read fresh each time (no cache): `Operation` and
//! `LastError` change during an install.

use std::mem::ManuallyDrop;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use rauc::{
    GetSlotStatusInfo, InstallBundleArgs, InstallationResult, InstallerProxy, MarkState,
    SlotIdentifier,
};
use zbus::proxy::CacheProperties;

use super::config::BusAddress;
use super::error::RaucError;
use super::status::{RaucStatus, SlotSummary};

/// The RAUC service's well-known bus name.
pub const RAUC_SERVICE: &str = "de.pengutronix.rauc";

/// Longest wait for one D-Bus call (installs wait for their signal separately).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the RAUC service.
pub struct RaucClient {
    runtime: tokio::runtime::Runtime,
    /// Dropped by hand inside the runtime's context (see `Drop`).
    proxy: ManuallyDrop<InstallerProxy<'static>>,
    bus: String,
}

impl Drop for RaucClient {
    fn drop(&mut self) {
        // zbus spawns clean-up tasks when a proxy or connection is dropped, which panics
        // outside a tokio context; enter the client's runtime for that.
        let _context = self.runtime.enter();
        // SAFETY: the proxy is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.proxy) };
    }
}

impl std::fmt::Debug for RaucClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaucClient")
            .field("bus", &self.bus)
            .finish()
    }
}

impl RaucClient {
    /// Connect to `bus` and check that the RAUC service is on it.
    pub fn connect(bus: &BusAddress) -> Result<Self, RaucError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RaucError::Runtime)?;
        let name = bus.to_string();
        let connect_error = |source| RaucError::Connect {
            bus: name.clone(),
            source: Box::new(source),
        };
        let proxy = runtime.block_on(async {
            let builder = match bus {
                BusAddress::System => zbus::connection::Builder::system(),
                BusAddress::Session => zbus::connection::Builder::session(),
                BusAddress::Address(address) => {
                    zbus::connection::Builder::address(address.as_str())
                }
            }
            .map_err(connect_error)?;
            // A hung service must not hang the health gate (or the service loop's caller).
            let connection = builder
                .method_timeout(CALL_TIMEOUT)
                .build()
                .await
                .map_err(connect_error)?;
            let dbus = zbus::fdo::DBusProxy::new(&connection)
                .await
                .map_err(connect_error)?;
            let service = zbus::names::BusName::try_from(RAUC_SERVICE)
                .map_err(|e| connect_error(e.into()))?;
            let present = dbus
                .name_has_owner(service)
                .await
                .map_err(|e| connect_error(e.into()))?;
            // On the device rauc.service is D-Bus activated: a name that is not owned yet
            // but activatable starts with the first call.
            let activatable = present
                || dbus
                    .list_activatable_names()
                    .await
                    .map_err(|e| connect_error(e.into()))?
                    .iter()
                    .any(|n| n.as_str() == RAUC_SERVICE);
            if !activatable {
                return Err(RaucError::NotRunning {
                    bus: name.clone(),
                    detail: format!("no owner of {RAUC_SERVICE}"),
                });
            }
            InstallerProxy::builder(&connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(connect_error)
        })?;
        tracing::debug!(bus = %name, "connected to RAUC");
        Ok(RaucClient {
            runtime,
            proxy: ManuallyDrop::new(proxy),
            bus: name,
        })
    }

    fn fail(&self, call: &'static str) -> impl Fn(zbus::Error) -> RaucError + '_ {
        move |e| RaucError::call(call, &self.bus, e)
    }

    /// The bootname of the slot the system booted from (e.g. `A`).
    pub fn booted_slot(&self) -> Result<String, RaucError> {
        let slot = self
            .runtime
            .block_on(self.proxy.boot_slot())
            .map_err(self.fail("BootSlot"))?;
        if slot.is_empty() {
            return Err(RaucError::NoBootedSlot);
        }
        Ok(slot)
    }

    /// The slot the bootloader boots next (e.g. `rootfs.1`).
    pub fn primary(&self) -> Result<String, RaucError> {
        self.runtime
            .block_on(self.proxy.get_primary())
            .map_err(self.fail("GetPrimary"))
    }

    /// The system's compatible string.
    pub fn compatible(&self) -> Result<String, RaucError> {
        self.runtime
            .block_on(self.proxy.compatible())
            .map_err(self.fail("Compatible"))
    }

    /// What RAUC is doing (`idle`, `installing`).
    pub fn operation(&self) -> Result<String, RaucError> {
        let op = self
            .runtime
            .block_on(self.proxy.operation())
            .map_err(self.fail("Operation"))?;
        Ok(operation_name(op).to_string())
    }

    /// RAUC's last error message (empty after a success).
    pub fn last_error(&self) -> Result<String, RaucError> {
        self.runtime
            .block_on(self.proxy.last_error())
            .map_err(self.fail("LastError"))
    }

    /// Every slot's status, typed.
    pub fn slot_status(&self) -> Result<Vec<SlotSummary>, RaucError> {
        let slots: Vec<(String, GetSlotStatusInfo)> = self
            .runtime
            .block_on(self.proxy.get_slot_status())
            .map_err(self.fail("GetSlotStatus"))?;
        Ok(slots
            .into_iter()
            .map(|(name, info)| SlotSummary::new(name, &info))
            .collect())
    }

    /// The whole picture in one value, for `tinylcm status` and sync metrics.
    pub fn status(&self) -> Result<RaucStatus, RaucError> {
        Ok(RaucStatus {
            compatible: self.compatible()?,
            booted: self.booted_slot()?,
            primary: self.primary()?,
            operation: self.operation()?,
            last_error: Some(self.last_error()?).filter(|e| !e.is_empty()),
            slots: self.slot_status()?,
        })
    }

    /// Mark the booted slot good (the health gate passed); returns the slot's name.
    pub fn mark_good_booted(&self) -> Result<String, RaucError> {
        self.mark(MarkState::Good, SlotIdentifier::Booted)
    }

    /// Mark the booted slot bad, so the bootloader falls back to the other slot on the next
    /// boot; returns the slot's name.
    pub fn mark_bad_booted(&self) -> Result<String, RaucError> {
        self.mark(MarkState::Bad, SlotIdentifier::Booted)
    }

    /// Make the other slot the one booted next; returns its name.
    pub fn activate_other(&self) -> Result<String, RaucError> {
        self.mark(MarkState::Active, SlotIdentifier::Other)
    }

    fn mark(&self, state: MarkState, slot: SlotIdentifier) -> Result<String, RaucError> {
        let info = self
            .runtime
            .block_on(self.proxy.mark(state, &slot))
            .map_err(self.fail("Mark"))?;
        tracing::info!(slot = %info.slot_name, "RAUC: {}", info.message);
        Ok(info.slot_name)
    }

    /// Install the OS bundle at `path` into the other slot and wait (at most `timeout`) for
    /// RAUC's `Completed` signal; a failure returns RAUC's `LastError`.
    pub fn install_bundle(&self, path: &Path, timeout: Duration) -> Result<(), RaucError> {
        let path = std::fs::canonicalize(path).map_err(|source| RaucError::Bundle {
            path: path.to_path_buf(),
            source,
        })?;
        let operation = self.operation()?;
        if operation != "idle" {
            return Err(RaucError::Busy { operation });
        }
        let source = path.to_str().ok_or_else(|| RaucError::Bundle {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not UTF-8"),
        })?;
        tracing::info!(bundle = %path.display(), "RAUC: installing");
        let completed = self.runtime.block_on(async {
            // Subscribe first: a small bundle can complete before the call returns.
            let mut signals = self
                .proxy
                .receive_completed()
                .await
                .map_err(self.fail("Completed"))?;
            self.proxy
                .install_bundle(source, InstallBundleArgs::default())
                .await
                .map_err(self.fail("InstallBundle"))?;
            match tokio::time::timeout(timeout, signals.next()).await {
                Ok(Some(signal)) => signal
                    .args()
                    .map(|a| Some(a.result))
                    .map_err(self.fail("Completed")),
                Ok(None) => Err(RaucError::Call {
                    call: "Completed",
                    source: Box::new(zbus::Error::Failure("the bus connection closed".into())),
                }),
                Err(_) => Ok(None),
            }
        })?;
        match completed {
            Some(InstallationResult::Success) => {
                tracing::info!(bundle = %path.display(), "RAUC: installed");
                Ok(())
            }
            Some(InstallationResult::Failure(code)) => Err(RaucError::InstallFailed {
                path: path.clone(),
                code,
                last_error: self.last_error()?,
            }),
            None => Err(RaucError::InstallTimeout {
                path: path.clone(),
                seconds: timeout.as_secs(),
                operation: self.operation().unwrap_or_else(|e| e.to_string()),
            }),
        }
    }
}

fn operation_name(op: rauc::Operation) -> &'static str {
    match op {
        rauc::Operation::Idle => "idle",
        rauc::Operation::Installing => "installing",
    }
}
