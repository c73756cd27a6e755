//! RAUC over D-Bus: which OS slot booted, which boots next, marking slots good or bad, and
//! installing OS bundles.
//!
//! The OS is updated by RAUC into A/B root file systems; the bootloader falls back to the
//! old slot unless the new one is marked good. The runtime is what knows whether the device
//! works, so it talks to the RAUC service (`de.pengutronix.rauc` on the system bus) through
//! the `rauc` crate's zbus proxy. The crate is async; the runtime is sync code, so
//! [`RaucClient`] owns a small current-thread tokio runtime and blocks on each call.
//!
//! * [`config`] — the `[rauc]` section and [`BusAddress`].
//! * [`client`] — [`RaucClient`], the blocking client.
//! * [`status`] — [`RaucStatus`], the serialisable summary for `tinylcm status` and metrics.
//! * [`error`] — [`RaucError`].
//! * [`trial`] — [`Confirmations`]: whether the booted slot is still on trial (the health
//!   gate marks only such a slot bad).

pub mod client;
pub mod config;
pub mod error;
pub mod status;
pub mod trial;

pub use client::RaucClient;
pub use config::{BusAddress, RaucConfig};
pub use error::RaucError;
pub use status::{RaucStatus, SlotSummary};
pub use trial::{Confirmations, Trial};
