//! Board glue: the status LED, the button, and the disk-space guard.
//!
//! A field device has no screen; an LED says in which state it is and a button is the
//! one input a person on site has. Both sit behind traits with a no-op implementation, so
//! the service runs the same off the Pi, and a GPIO implementation (the kernel's GPIO
//! character device) on it. The SD
//! card is the other hazard: a full card corrupts more than it stores, so writers that can
//! wait or drop (quarantine thumbnails, the sync outbox, model downloads) ask the
//! [`DiskGuard`] or the [`SpaceBudget`] first, and the budget sheds expendable files when the
//! partition falls below its floor.
//! SoC temperature and throttling are read by [`crate::status::system`].
//!
//! * [`led`] — [`LedState`], its [`BlinkPattern`], the [`StatusLed`] and [`Button`] traits
//!   and the no-op implementations.
//! * `gpio` (Linux) — [`GpioLed`] and [`GpioButton`] over `/dev/gpiochipN`.
//! * [`disk`] — [`DiskGuard`] over `statvfs`.
//! * [`space`] — [`SpaceBudget`]: the floor, and who is shed in which order below it.
//! * [`config`] — the `[board]` section.

pub mod config;
pub mod disk;
#[cfg(target_os = "linux")]
pub mod gpio;
pub mod led;
pub mod space;

pub use config::BoardConfig;
pub use disk::{DiskGuard, DiskSpace};
#[cfg(target_os = "linux")]
pub use gpio::{GpioButton, GpioLed};
pub use led::{BlinkPattern, Button, LedState, NoButton, NoLed, StatusLed};
pub use space::{SpaceBudget, SpaceStatus, Tier};

/// Board hardware or the disk could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// There is no GPIO character device (not a Pi, or no access to it).
    #[error(
        "no GPIO device at {path}: this board has no GPIO or the kernel driver is missing; \
         remove `board.led-pin`/`board.button-pin` off the Pi"
    )]
    NoGpio {
        /// The device looked for.
        path: std::path::PathBuf,
    },
    /// No GPIO chip has the label looked for.
    #[error(
        "no GPIO chip labelled {wanted} (the kernel has: {found}); set `board.gpio-chip` to \
         the label of the chip the LED and button are on"
    )]
    NoGpioChip {
        /// The label(s) looked for.
        wanted: String,
        /// The chips there are, as "label (path)".
        found: String,
    },
    /// A GPIO chip's device could not be opened or asked (no permission, not a chip).
    #[error("GPIO chip {chip}: {reason} (may the service open `char-gpiochip` devices?)")]
    GpioChip {
        /// The device.
        chip: std::path::PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The kernel refused a line (pin busy, out of range, no permission).
    #[error("GPIO {pin}: {reason} (is the pin free, and is it the right `board` pin?)")]
    Gpio {
        /// BCM pin number.
        pin: u8,
        /// What the library said.
        reason: String,
    },
    /// `statvfs` failed on the guarded path.
    #[error("cannot read the free space of {path}: {source}")]
    Statvfs {
        /// The path asked about.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// A write would leave less free space than configured.
    #[error(
        "not writing {bytes} bytes to {path}: {free} bytes free, {min_free} must stay free \
         (`board.min-free-mib`); free space on the data partition"
    )]
    DiskFull {
        /// The guarded path.
        path: std::path::PathBuf,
        /// The size of the refused write.
        bytes: u64,
        /// Free bytes now.
        free: u64,
        /// Bytes that must stay free.
        min_free: u64,
    },
}

/// The status LED configured in `[board]`: a GPIO LED on Linux when `led-pin` is set, else
/// [`NoLed`].
pub fn open_led(config: &BoardConfig) -> Result<Box<dyn StatusLed>, BoardError> {
    match config.led_pin {
        #[cfg(target_os = "linux")]
        Some(pin) => Ok(Box::new(GpioLed::open(
            config.gpio_chip.as_deref(),
            pin,
            config.led_active_low,
        )?)),
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err(BoardError::NoGpio {
            path: std::path::PathBuf::from("/dev/gpiochip0"),
        }),
        None => Ok(Box::new(NoLed::default())),
    }
}

/// The button configured in `[board]`: a GPIO button on Linux when `button-pin` is set,
/// else [`NoButton`].
pub fn open_button(config: &BoardConfig) -> Result<Box<dyn Button>, BoardError> {
    match config.button_pin {
        #[cfg(target_os = "linux")]
        Some(pin) => Ok(Box::new(GpioButton::open(
            config.gpio_chip.as_deref(),
            pin,
        )?)),
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err(BoardError::NoGpio {
            path: std::path::PathBuf::from("/dev/gpiochip0"),
        }),
        None => Ok(Box::new(NoButton)),
    }
}
