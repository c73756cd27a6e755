//! [`GpioLed`] and [`GpioButton`]: the LED and button on the Pi's GPIO header, over rppal.
//!
//! rppal builds on any Linux and finds out at run time whether it runs on a Pi, so this
//! module is compiled everywhere Linux is and fails clearly where there is no GPIO. Blinking
//! uses rppal's software PWM thread, so the service never toggles the pin itself.

use std::path::Path;

use rppal::gpio::{Gpio, InputPin, OutputPin};

use super::BoardError;
use super::led::{Button, LedState, StatusLed};

/// The GPIO character device of the Pi's header.
pub const GPIO_CHIP: &str = "/dev/gpiochip0";

/// Fail with [`BoardError::NoGpio`] unless the GPIO device `chip` exists (rppal's own error
/// off the Pi, "unknown model", does not say what to do).
pub fn require_gpio_device(chip: &Path) -> Result<(), BoardError> {
    if chip.exists() {
        Ok(())
    } else {
        Err(BoardError::NoGpio {
            path: chip.to_path_buf(),
        })
    }
}

fn pin(bcm: u8) -> Result<rppal::gpio::Pin, BoardError> {
    require_gpio_device(Path::new(GPIO_CHIP))?;
    let gpio_error = |e: rppal::gpio::Error| BoardError::Gpio {
        pin: bcm,
        reason: e.to_string(),
    };
    Gpio::new()
        .map_err(gpio_error)?
        .get(bcm)
        .map_err(gpio_error)
}

/// An LED on a GPIO pin (BCM numbering), lit high unless `active_low`.
#[derive(Debug)]
pub struct GpioLed {
    pin: OutputPin,
    bcm: u8,
    active_low: bool,
}

impl GpioLed {
    /// Claim BCM pin `bcm` as an output, LED off.
    pub fn open(bcm: u8, active_low: bool) -> Result<Self, BoardError> {
        let pin = pin(bcm)?;
        let pin = if active_low {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        Ok(GpioLed {
            pin,
            bcm,
            active_low,
        })
    }

    fn gpio_error(&self, e: rppal::gpio::Error) -> BoardError {
        BoardError::Gpio {
            pin: self.bcm,
            reason: e.to_string(),
        }
    }
}

impl StatusLed for GpioLed {
    fn set(&mut self, state: LedState) -> Result<(), BoardError> {
        let pattern = state.pattern();
        if pattern.is_solid() || pattern.is_off() {
            self.pin.clear_pwm().map_err(|e| self.gpio_error(e))?;
            let lit = pattern.is_solid();
            if lit != self.active_low {
                self.pin.set_high();
            } else {
                self.pin.set_low();
            }
            return Ok(());
        }
        // PWM drives the pin high for the pulse; an active-low LED is lit the rest.
        let pulse = if self.active_low {
            pattern.period - pattern.on
        } else {
            pattern.on
        };
        self.pin
            .set_pwm(pattern.period, pulse)
            .map_err(|e| self.gpio_error(e))
    }
}

/// A button between a GPIO pin (BCM numbering) and ground, with the internal pull-up.
#[derive(Debug)]
pub struct GpioButton {
    pin: InputPin,
}

impl GpioButton {
    /// Claim BCM pin `bcm` as an input with pull-up.
    pub fn open(bcm: u8) -> Result<Self, BoardError> {
        Ok(GpioButton {
            pin: pin(bcm)?.into_input_pullup(),
        })
    }
}

impl Button for GpioButton {
    fn is_pressed(&mut self) -> Result<bool, BoardError> {
        Ok(self.pin.is_low())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_gpio_device_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = require_gpio_device(&dir.path().join("gpiochip0")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("gpiochip0") && text.contains("board.led-pin"),
            "{text}"
        );
        require_gpio_device(dir.path()).unwrap();
    }

    #[test]
    fn opening_a_pin_off_the_pi_fails_with_an_error_not_a_panic() {
        if Path::new(GPIO_CHIP).exists() {
            eprintln!("skipped: this machine has {GPIO_CHIP}");
            return;
        }
        let e = GpioLed::open(17, false).unwrap_err();
        assert!(matches!(e, BoardError::NoGpio { .. }), "{e}");
        let e = GpioButton::open(27).unwrap_err();
        assert!(matches!(e, BoardError::NoGpio { .. }), "{e}");
    }
}
