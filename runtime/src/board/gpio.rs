//! [`GpioLed`] and [`GpioButton`]: the LED and button on the Pi's GPIO header, through the
//! kernel's GPIO character device (`/dev/gpiochipN`, uAPI v2), through the `gpiocdev` crate,
//! which holds the uAPI's structs and ioctls (so this module has no unsafe code).
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;

use gpiocdev::line::{Bias, Direction, Value};

use super::BoardError;
use super::led::{BlinkPattern, Button, LedState, StatusLed};

/// Labels of the Raspberry Pi header's GPIO controller, one per SoC family; their line
/// numbers are BCM pin numbers.
pub const PI_CHIP_LABELS: [&str; 3] = ["pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1"];

/// Where the kernel's GPIO character devices are.
const DEV: &str = "/dev";

/// Name the kernel shows as the consumer of our lines (`gpioinfo`, debugfs).
const CONSUMER: &str = "tinylcm";

/// A GPIO chip the kernel offers.
#[derive(Debug)]
struct Chip {
    path: PathBuf,
    label: String,
    lines: u32,
}

/// The GPIO chips the kernel offers, in gpiochipN order.
fn chips() -> Result<Vec<Chip>, BoardError> {
    let no_gpio = || BoardError::NoGpio {
        path: Path::new(DEV).join("gpiochip0"),
    };
    // gpiocdev lists /dev's GPIO character devices only (other devices are left out).
    let paths = gpiocdev::chip::chips().map_err(|_| no_gpio())?;
    if paths.is_empty() {
        return Err(no_gpio());
    }
    paths
        .into_iter()
        .map(|path| {
            let info = gpiocdev::Chip::from_path(&path)
                .and_then(|chip| chip.info())
                .map_err(|e| BoardError::GpioChip {
                    chip: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok(Chip {
                path,
                label: info.label,
                lines: info.num_lines,
            })
        })
        .collect()
}

/// The chip labelled `wanted` (`None`: the Pi's header controller) among `chips`.
fn select(chips: Vec<Chip>, wanted: Option<&str>) -> Result<Chip, BoardError> {
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
    request: gpiocdev::Request,
    pin: u8,
}

impl Line {
    /// Request line `pin` of the chip labelled `chip` as `config` has it (for an output,
    /// with its first value).
    fn request(
        chip: Option<&str>,
        pin: u8,
        config: &gpiocdev::line::Config,
    ) -> Result<Line, BoardError> {
        let chip = select(chips()?, chip)?;
        // Checked here for a message naming the chip; the kernel would only say EINVAL.
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
        // An output's first value comes with the request, so the pin never glitches.
        let request = gpiocdev::Request::builder()
            .on_chip(&chip.path)
            .with_consumer(CONSUMER)
            .with_line(u32::from(pin))
            .from_line_config(config)
            .request()
            .map_err(|e| BoardError::Gpio {
                pin,
                reason: format!("{} ({}): {e}", chip.label, chip.path.display()),
            })?;
        tracing::debug!(pin, chip = %chip.label, "GPIO line requested");
        Ok(Line { request, pin })
    }

    fn set(&self, high: bool) -> Result<(), BoardError> {
        self.request
            .set_lone_value(Value::from(high))
            .map_err(|e| self.error(e))
    }

    fn get(&self) -> Result<bool, BoardError> {
        let value = self.request.lone_value().map_err(|e| self.error(e))?;
        Ok(value == Value::Active)
    }

    fn error(&self, e: gpiocdev::Error) -> BoardError {
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
        let config = gpiocdev::line::Config {
            direction: Some(Direction::Output),
            active_low,
            value: Some(Value::Inactive),
            ..Default::default()
        };
        Ok(GpioLed {
            line: Arc::new(Line::request(chip, pin, &config)?),
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
        let config = gpiocdev::line::Config {
            direction: Some(Direction::Input),
            active_low: true,
            bias: Some(Bias::PullUp),
            ..Default::default()
        };
        Ok(GpioButton {
            line: Line::request(chip, pin, &config)?,
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

    fn chip(label: &str, n: u32) -> Chip {
        Chip {
            path: PathBuf::from(format!("/dev/gpiochip{n}")),
            label: label.to_string(),
            lines: 54,
        }
    }

    #[test]
    fn the_pi_header_chip_is_found_by_label_and_a_missing_one_names_what_is_there() {
        let found = select(
            vec![chip("raspberrypi-exp-gpio", 0), chip("pinctrl-bcm2835", 1)],
            None,
        )
        .unwrap();
        assert_eq!(found.path, Path::new("/dev/gpiochip1"));
        let found = select(vec![chip("gpio-sim", 0)], Some("gpio-sim")).unwrap();
        assert_eq!(found.label, "gpio-sim");
        // The text tests/image/qemu-devices.sh expects of a wrong `board.gpio-chip`.
        let e = select(vec![chip("pinctrl-bcm2835", 0)], Some("pinctrl-bcm2711")).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "no GPIO chip labelled pinctrl-bcm2711 (the kernel has: pinctrl-bcm2835 \
                 (/dev/gpiochip0)); set `board.gpio-chip`"
            ),
            "{e}"
        );
        let e = select(vec![chip("gpio-sim", 0)], None).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "no GPIO chip labelled pinctrl-bcm2835 or pinctrl-bcm2711 or pinctrl-rp1 "
            ),
            "{e}"
        );
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
}
