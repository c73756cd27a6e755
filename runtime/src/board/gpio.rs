//! [`GpioLed`] and [`GpioButton`]: the LED and button on the Pi's GPIO header, through the
//! kernel's GPIO character device (`/dev/gpiochipN`, uAPI v2).
//!
//! Why the character device and not memory-mapped registers (`/dev/gpiomem`, as rppal
//! does): the service runs with `DevicePolicy=closed` and may open `char-gpiochip` only; the
//! kernel arbitrates the lines (a pin held by another driver or process is refused, not
//! silently shared), releases them when the process dies, and applies the pull-up through
//! the pin controller's driver. The same code drives every chip the kernel knows, so it is
//! exercised in QEMU on the real `pinctrl-bcm2835` driver (tests/image/qemu-devices.sh).
//!
//! The chip is found by its label: the Pi's own header controller (`pinctrl-bcm2835` on the
//! Zero 2 W and Pi 3, `pinctrl-bcm2711` on the Pi 4/CM4, `pinctrl-rp1` on the Pi 5), whose
//! line numbers are the BCM pin numbers, or the label `[board] gpio-chip` names. Blinking
//! runs on a small thread per LED that sleeps between two value changes.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;

use super::BoardError;
use super::led::{BlinkPattern, Button, LedState, StatusLed};

/// Labels of the Raspberry Pi header's GPIO controller, one per SoC family; their line
/// numbers are BCM pin numbers.
pub const PI_CHIP_LABELS: [&str; 3] = ["pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1"];

/// Where the kernel's GPIO character devices are.
const DEV: &str = "/dev";

/// Name the kernel shows as the consumer of our lines (`gpioinfo`, debugfs).
const CONSUMER: &[u8] = b"tinylcm";

// The uAPI v2 of <linux/gpio.h>, laid out as the kernel's structs (sizes are checked in
// the tests against the numbers the header's ioctl codes encode).
const GPIO_MAX_NAME_SIZE: usize = 32;
const GPIO_V2_LINES_MAX: usize = 64;
const GPIO_V2_LINE_NUM_ATTRS_MAX: usize = 10;
const FLAG_ACTIVE_LOW: u64 = 1 << 1;
const FLAG_INPUT: u64 = 1 << 2;
const FLAG_OUTPUT: u64 = 1 << 3;
const FLAG_BIAS_PULL_UP: u64 = 1 << 8;
const ATTR_ID_OUTPUT_VALUES: u32 = 2;

#[repr(C)]
struct ChipInfo {
    name: [u8; GPIO_MAX_NAME_SIZE],
    label: [u8; GPIO_MAX_NAME_SIZE],
    lines: u32,
}

#[repr(C)]
#[derive(Default)]
struct LineValues {
    bits: u64,
    mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineAttribute {
    id: u32,
    padding: u32,
    /// `flags`, `values` or `debounce_period_us`, by `id`.
    value: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfigAttribute {
    attr: LineAttribute,
    mask: u64,
}

#[repr(C)]
struct LineConfig {
    flags: u64,
    num_attrs: u32,
    padding: [u32; 5],
    attrs: [LineConfigAttribute; GPIO_V2_LINE_NUM_ATTRS_MAX],
}

#[repr(C)]
struct LineRequest {
    offsets: [u32; GPIO_V2_LINES_MAX],
    consumer: [u8; GPIO_MAX_NAME_SIZE],
    config: LineConfig,
    num_lines: u32,
    event_buffer_size: u32,
    padding: [u32; 5],
    fd: i32,
}

/// `_IOC(dir, 0xB4, nr, size)` as <asm-generic/ioctl.h> encodes it (arm64 and x86 alike).
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xB4 << 8) | nr
}
const IOC_READ: u64 = 2;
const IOC_READ_WRITE: u64 = 3;
const GET_CHIPINFO: u64 = ioc(IOC_READ, 0x01, size_of::<ChipInfo>());
const GET_LINE: u64 = ioc(IOC_READ_WRITE, 0x07, size_of::<LineRequest>());
const LINE_GET_VALUES: u64 = ioc(IOC_READ_WRITE, 0x0E, size_of::<LineValues>());
const LINE_SET_VALUES: u64 = ioc(IOC_READ_WRITE, 0x0F, size_of::<LineValues>());

/// `ioctl(fd, request, arg)`, with the OS error on failure.
fn ioctl<T>(fd: &impl AsRawFd, request: u64, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed `#[repr(C)]` struct of exactly the size
    // `request` encodes, so the kernel reads and writes only inside it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A C string field of the uAPI as text.
fn text(field: &[u8]) -> String {
    CStr::from_bytes_until_nul(field)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(field).into_owned())
}

/// An open GPIO chip.
#[derive(Debug)]
struct Chip {
    file: File,
    path: PathBuf,
    label: String,
    lines: u32,
}

/// The GPIO chips the kernel offers, as (path, label, lines), sorted by path.
fn chips() -> Result<Vec<Chip>, BoardError> {
    let no_gpio = || BoardError::NoGpio {
        path: Path::new(DEV).join("gpiochip0"),
    };
    let entries = std::fs::read_dir(DEV).map_err(|_| no_gpio())?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("gpiochip"))
        .map(|e| e.path())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(no_gpio());
    }
    let mut chips = Vec::new();
    for path in paths {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| BoardError::GpioChip {
                chip: path.clone(),
                reason: e.to_string(),
            })?;
        let mut info = ChipInfo {
            name: [0; GPIO_MAX_NAME_SIZE],
            label: [0; GPIO_MAX_NAME_SIZE],
            lines: 0,
        };
        ioctl(&file, GET_CHIPINFO, &mut info).map_err(|e| BoardError::GpioChip {
            chip: path.clone(),
            reason: format!("not a GPIO chip: {e}"),
        })?;
        chips.push(Chip {
            file,
            path,
            label: text(&info.label),
            lines: info.lines,
        });
    }
    Ok(chips)
}

/// The chip labelled `wanted` (`None`: the Pi's header controller).
fn find_chip(wanted: Option<&str>) -> Result<Chip, BoardError> {
    let chips = chips()?;
    let found: Vec<String> = chips
        .iter()
        .map(|c| format!("{} ({})", c.label, c.path.display()))
        .collect();
    let matches = |label: &str| match wanted {
        Some(w) => label == w,
        None => PI_CHIP_LABELS.contains(&label),
    };
    chips
        .into_iter()
        .find(|c| matches(&c.label))
        .ok_or_else(|| BoardError::NoGpioChip {
            wanted: wanted.map_or_else(|| PI_CHIP_LABELS.join(" or "), str::to_string),
            found: found.join(", "),
        })
}

/// One line of a chip, requested from the kernel; released when dropped.
#[derive(Debug)]
struct Line {
    fd: OwnedFd,
    pin: u8,
}

impl Line {
    /// Request line `pin` of the chip labelled `chip` with `flags` (and, for an output,
    /// its first value).
    fn request(chip: Option<&str>, pin: u8, flags: u64, high: bool) -> Result<Line, BoardError> {
        let chip = find_chip(chip)?;
        if u32::from(pin) >= chip.lines {
            return Err(BoardError::Gpio {
                pin,
                reason: format!(
                    "{} ({}) has {} lines",
                    chip.label,
                    chip.path.display(),
                    chip.lines
                ),
            });
        }
        let mut req = LineRequest {
            offsets: [0; GPIO_V2_LINES_MAX],
            consumer: [0; GPIO_MAX_NAME_SIZE],
            config: LineConfig {
                flags,
                num_attrs: 0,
                padding: [0; 5],
                attrs: [LineConfigAttribute::default(); GPIO_V2_LINE_NUM_ATTRS_MAX],
            },
            num_lines: 1,
            event_buffer_size: 0,
            padding: [0; 5],
            fd: -1,
        };
        req.offsets[0] = u32::from(pin);
        req.consumer[..CONSUMER.len()].copy_from_slice(CONSUMER);
        if flags & FLAG_OUTPUT != 0 {
            // The first value comes with the request, so the pin never glitches.
            req.config.num_attrs = 1;
            req.config.attrs[0] = LineConfigAttribute {
                attr: LineAttribute {
                    id: ATTR_ID_OUTPUT_VALUES,
                    padding: 0,
                    value: u64::from(high),
                },
                mask: 1,
            };
        }
        ioctl(&chip.file, GET_LINE, &mut req).map_err(|e| BoardError::Gpio {
            pin,
            reason: format!("{} ({}): {e}", chip.label, chip.path.display()),
        })?;
        if req.fd < 0 {
            return Err(BoardError::Gpio {
                pin,
                reason: format!("{}: the kernel returned no line handle", chip.label),
            });
        }
        tracing::debug!(pin, chip = %chip.label, "GPIO line requested");
        // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(req.fd) };
        Ok(Line { fd, pin })
    }

    fn set(&self, high: bool) -> Result<(), BoardError> {
        let mut values = LineValues {
            bits: u64::from(high),
            mask: 1,
        };
        ioctl(&self.fd, LINE_SET_VALUES, &mut values).map_err(|e| self.error(e))
    }

    fn get(&self) -> Result<bool, BoardError> {
        let mut values = LineValues { bits: 0, mask: 1 };
        ioctl(&self.fd, LINE_GET_VALUES, &mut values).map_err(|e| self.error(e))?;
        Ok(values.bits & 1 == 1)
    }

    fn error(&self, e: std::io::Error) -> BoardError {
        BoardError::Gpio {
            pin: self.pin,
            reason: e.to_string(),
        }
    }
}

/// A running blink: the thread toggling the line, stopped by dropping `stop`.
struct Blink {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// An LED on a GPIO pin (BCM numbering on the Pi's chip), lit high unless `active_low`.
pub struct GpioLed {
    line: Arc<Line>,
    blink: Option<Blink>,
}

impl std::fmt::Debug for GpioLed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioLed")
            .field("line", &self.line)
            .field("blinking", &self.blink.is_some())
            .finish()
    }
}

impl GpioLed {
    /// Claim line `pin` of the chip labelled `chip` (`None`: the Pi's header) as an
    /// output, LED off. `active_low` is handed to the kernel, so "lit" is "active" for it.
    pub fn open(chip: Option<&str>, pin: u8, active_low: bool) -> Result<Self, BoardError> {
        let flags = FLAG_OUTPUT | if active_low { FLAG_ACTIVE_LOW } else { 0 };
        Ok(GpioLed {
            line: Arc::new(Line::request(chip, pin, flags, false)?),
            blink: None,
        })
    }

    fn stop_blinking(&mut self) {
        if let Some(Blink { stop, thread }) = self.blink.take() {
            drop(stop);
            if thread.join().is_err() {
                tracing::warn!(pin = self.line.pin, "status LED blink thread panicked");
            }
        }
    }
}

/// Toggle `line` by `pattern` until `stop` is dropped.
fn blink(line: &Line, pattern: BlinkPattern, stop: &std::sync::mpsc::Receiver<()>) {
    let off = pattern.period.saturating_sub(pattern.on);
    loop {
        for (lit, wait) in [(true, pattern.on), (false, off)] {
            if let Err(e) = line.set(lit) {
                // One warning, then stop: a line that cannot be set will not recover.
                tracing::warn!("status LED: {e}");
                return;
            }
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

impl StatusLed for GpioLed {
    fn set(&mut self, state: LedState) -> Result<(), BoardError> {
        self.stop_blinking();
        let pattern = state.pattern();
        if pattern.is_solid() || pattern.is_off() {
            return self.line.set(pattern.is_solid());
        }
        let (stop, stopped) = channel();
        let line = Arc::clone(&self.line);
        let thread = std::thread::Builder::new()
            .name("status-led".into())
            .spawn(move || blink(&line, pattern, &stopped))
            .map_err(|e| BoardError::Gpio {
                pin: self.line.pin,
                reason: format!("cannot start the blink thread: {e}"),
            })?;
        self.blink = Some(Blink { stop, thread });
        Ok(())
    }
}

impl Drop for GpioLed {
    fn drop(&mut self) {
        self.stop_blinking();
        // Off when the service ends; the line is released with the descriptor.
        if let Err(e) = self.line.set(false) {
            tracing::debug!("status LED off at exit: {e}");
        }
    }
}

/// A button between a GPIO pin (BCM numbering on the Pi's chip) and ground, with the pin
/// controller's pull-up (on chips without pull resistors the kernel ignores the request).
#[derive(Debug)]
pub struct GpioButton {
    line: Line,
}

impl GpioButton {
    /// Claim line `pin` of the chip labelled `chip` (`None`: the Pi's header) as an input
    /// with pull-up; active low, so "active" is "pressed".
    pub fn open(chip: Option<&str>, pin: u8) -> Result<Self, BoardError> {
        Ok(GpioButton {
            line: Line::request(
                chip,
                pin,
                FLAG_INPUT | FLAG_ACTIVE_LOW | FLAG_BIAS_PULL_UP,
                false,
            )?,
        })
    }
}

impl Button for GpioButton {
    fn is_pressed(&mut self) -> Result<bool, BoardError> {
        self.line.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_the_kernel_uapi() {
        // Sizes from <linux/gpio.h> (the kernel rejects an ioctl whose code encodes
        // another size): 68, 592, 16.
        assert_eq!(size_of::<ChipInfo>(), 68);
        assert_eq!(size_of::<LineRequest>(), 592);
        assert_eq!(size_of::<LineValues>(), 16);
        assert_eq!(size_of::<LineConfig>(), 272);
        // GPIO_GET_CHIPINFO_IOCTL and GPIO_V2_GET_LINE_IOCTL as the C header expands them.
        assert_eq!(GET_CHIPINFO, 0x8044_B401);
        assert_eq!(GET_LINE, 0xC250_B407);
        assert_eq!(LINE_GET_VALUES, 0xC010_B40E);
        assert_eq!(LINE_SET_VALUES, 0xC010_B40F);
    }

    #[test]
    fn opening_a_pin_without_its_chip_fails_with_an_error_not_a_panic() {
        // This machine may have GPIO chips (then none is labelled like this) or none at all.
        let e = GpioLed::open(Some("no-such-chip-label"), 17, false).unwrap_err();
        assert!(
            matches!(e, BoardError::NoGpio { .. } | BoardError::NoGpioChip { .. }),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains("board."), "{text}");
        let e = GpioButton::open(Some("no-such-chip-label"), 27).unwrap_err();
        assert!(
            matches!(e, BoardError::NoGpio { .. } | BoardError::NoGpioChip { .. }),
            "{e}"
        );
    }

    #[test]
    fn c_strings_of_the_uapi_are_read_up_to_the_nul() {
        let mut field = [0u8; GPIO_MAX_NAME_SIZE];
        field[..15].copy_from_slice(b"pinctrl-bcm2835");
        assert_eq!(text(&field), "pinctrl-bcm2835");
        assert_eq!(text(&[b'x'; 4]), "xxxx");
    }
}
