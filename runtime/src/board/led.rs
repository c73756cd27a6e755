//! [`StatusLed`] and [`Button`]: what a person at the device sees and presses, as traits,
//! with the blink pattern of each service state and no-op implementations for boards
//! without them.

use std::time::Duration;

use super::BoardError;

/// The service states the LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedState {
    /// Loading the model, waiting for the first frame.
    Starting,
    /// Frames go through the model.
    Running,
    /// Running, but something needs attention (drift, disk nearly full, no server).
    Degraded,
    /// Installing a model or OS update: do not unplug.
    Updating,
    /// Not running: the service failed.
    Error,
}

/// On/off timing of the LED: lit for `on` in every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlinkPattern {
    /// Length of one cycle.
    pub period: Duration,
    /// Lit time per cycle (`period`: steady on; zero: off).
    pub on: Duration,
}

impl BlinkPattern {
    /// Steady on.
    pub const SOLID: BlinkPattern = BlinkPattern {
        period: Duration::from_secs(1),
        on: Duration::from_secs(1),
    };

    /// Whether the LED is lit all the time.
    pub fn is_solid(&self) -> bool {
        self.on >= self.period
    }

    /// Whether the LED is off all the time.
    pub fn is_off(&self) -> bool {
        self.on.is_zero()
    }
}

impl LedState {
    /// The pattern of each state; chosen to be told apart without a legend: slow even blink
    /// while starting, steady when fine, a short blip every two seconds when degraded, fast
    /// while updating, a fast double-rate flicker on error.
    pub fn pattern(self) -> BlinkPattern {
        let ms = Duration::from_millis;
        match self {
            LedState::Starting => BlinkPattern {
                period: ms(1000),
                on: ms(500),
            },
            LedState::Running => BlinkPattern::SOLID,
            LedState::Degraded => BlinkPattern {
                period: ms(2000),
                on: ms(200),
            },
            LedState::Updating => BlinkPattern {
                period: ms(250),
                on: ms(125),
            },
            LedState::Error => BlinkPattern {
                period: ms(100),
                on: ms(50),
            },
        }
    }
}

/// A status LED.
pub trait StatusLed: Send {
    /// Show `state` (blinking continues by itself until the next call).
    fn set(&mut self, state: LedState) -> Result<(), BoardError>;
}

/// A push button.
pub trait Button: Send {
    /// Whether the button is held down now.
    fn is_pressed(&mut self) -> Result<bool, BoardError>;
}

/// No LED: remembers the state only (boards without one, development machines).
#[derive(Debug, Default)]
pub struct NoLed {
    /// The last state set.
    pub state: Option<LedState>,
}

impl StatusLed for NoLed {
    fn set(&mut self, state: LedState) -> Result<(), BoardError> {
        self.state = Some(state);
        Ok(())
    }
}

/// No button: never pressed.
#[derive(Debug, Default)]
pub struct NoButton;

impl Button for NoButton {
    fn is_pressed(&mut self) -> Result<bool, BoardError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [LedState; 5] = [
        LedState::Starting,
        LedState::Running,
        LedState::Degraded,
        LedState::Updating,
        LedState::Error,
    ];

    #[test]
    fn every_state_has_its_own_visible_pattern() {
        for (i, a) in ALL.iter().enumerate() {
            let p = a.pattern();
            assert!(p.on <= p.period && !p.is_off(), "{a:?}");
            // Human eyes resolve at most ~10 Hz; faster looks steady.
            assert!(p.period >= Duration::from_millis(100), "{a:?}");
            for b in &ALL[i + 1..] {
                assert_ne!(p, b.pattern(), "{a:?} and {b:?} look the same");
            }
        }
        assert!(LedState::Running.pattern().is_solid());
        assert!(!LedState::Starting.pattern().is_solid());
    }

    #[test]
    fn the_no_op_implementations_do_nothing_but_remember() {
        let mut led = NoLed::default();
        led.set(LedState::Updating).unwrap();
        assert_eq!(led.state, Some(LedState::Updating));
        assert!(!NoButton.is_pressed().unwrap());
    }
}
