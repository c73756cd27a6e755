//! Why the service loop leaves a generation: stop for good, or reload and go on.
//!
//! The inference loop only looks at one flag between frames ([`RunOptions::stop`]); many
//! parties may want it to leave (a signal, a remote configuration, a model update, the health
//! window), for different ends. [`Control`] keeps the flag and what was asked, so the service
//! can tell "systemd wants us gone" from "run again with new settings". A stop always wins
//! over a reload asked at the same time.
//!
//! [`RunOptions::stop`]: crate::pipeline::runner::RunOptions::stop

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What the service does after the current generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Leave the loop and exit.
    Stop,
    /// Build the pipeline again (configuration or model changed); the reasons, for the log.
    Reload(Vec<String>),
}

/// The flag the inference loop watches and what was asked of it.
#[derive(Debug, Default)]
pub struct Control {
    interrupt: Arc<AtomicBool>,
    stop: AtomicBool,
    reload: Mutex<Vec<String>>,
}

impl Control {
    /// A control with nothing asked.
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// The flag to give [`crate::pipeline::runner::RunOptions::stop`]: set by every request.
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    /// Ask the service to stop after the current frame (SIGTERM, Ctrl-C).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.interrupt.store(true, Ordering::SeqCst);
    }

    /// Ask the service to rebuild the pipeline after the current frame, for `reason`.
    pub fn request_reload(&self, reason: impl Into<String>) {
        self.reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reason.into());
        self.interrupt.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// What was asked since the last call, clearing the interrupt for the next generation;
    /// `None` when nothing was (the generation ended by itself).
    pub fn take(&self) -> Option<Request> {
        let reasons =
            std::mem::take(&mut *self.reload.lock().unwrap_or_else(PoisonError::into_inner));
        if self.stopping() {
            return Some(Request::Stop);
        }
        self.interrupt.store(false, Ordering::SeqCst);
        (!reasons.is_empty()).then_some(Request::Reload(reasons))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_interrupts_once_and_names_its_reasons() {
        let control = Control::new();
        let flag = control.interrupt_flag();
        control.request_reload("remote configuration 1a2b");
        control.request_reload("model shapes 2");
        assert!(flag.load(Ordering::SeqCst));
        assert_eq!(
            control.take(),
            Some(Request::Reload(vec![
                "remote configuration 1a2b".into(),
                "model shapes 2".into()
            ]))
        );
        assert!(!flag.load(Ordering::SeqCst), "the next generation runs");
        assert_eq!(control.take(), None);
    }

    #[test]
    fn a_stop_wins_over_a_reload_and_stays() {
        let control = Control::new();
        control.request_reload("config");
        control.request_stop();
        assert_eq!(control.take(), Some(Request::Stop));
        assert_eq!(control.take(), Some(Request::Stop));
        assert!(control.interrupt_flag().load(Ordering::SeqCst));
    }
}
