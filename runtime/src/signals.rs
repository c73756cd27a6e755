//! [`Signals`]: SIGTERM/SIGINT ask for a graceful stop, SIGHUP for a configuration reload.
//!
//! systemd stops a service with SIGTERM and `ExecReload=/bin/kill -HUP $MAINPID` reloads it;
//! a user presses Ctrl-C. The handlers do only what is safe inside a signal handler — store
//! to atomics — and the loop polls the flags between frames. A second SIGTERM/SIGINT while a
//! stop is already pending ends the process at once (exit 128 + signal), so a stop that
//! hangs can still be cut short from the keyboard; systemd escalates to SIGKILL anyway.
//! Handlers are installed with `SA_RESTART`, so other threads' blocking calls are resumed
//! rather than failing with `EINTR`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// The process-wide stop flag the handler sets; signal handlers can only reach statics.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Set by SIGHUP, cleared by [`Signals::take_reload`].
static RELOAD: AtomicBool = AtomicBool::new(false);

/// A signal handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the handler for {signal}: {source}")]
pub struct SignalError {
    /// The signal.
    pub signal: &'static str,
    /// The OS error.
    #[source]
    pub source: nix::Error,
}

/// Handle to the installed handlers (process-wide; installing again returns the same flags).
#[derive(Debug, Clone)]
pub struct Signals {
    stop: Arc<AtomicBool>,
}

extern "C" fn on_stop(signal: nix::libc::c_int) {
    if let Some(stop) = STOP.get() {
        if stop.swap(true, Ordering::SeqCst) {
            // A second request while stopping: the user insists. `_exit` is
            // async-signal-safe; nothing else is done here.
            // SAFETY: `_exit` has no preconditions and does not return.
            unsafe { nix::libc::_exit(128 + signal) };
        }
    }
}

extern "C" fn on_reload(_signal: nix::libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

impl Signals {
    /// Install the handlers for SIGTERM, SIGINT (stop) and SIGHUP (reload).
    pub fn install() -> Result<Signals, SignalError> {
        // Created before any handler can run, so the handler never initialises it.
        let stop = STOP
            .get_or_init(|| Arc::new(AtomicBool::new(false)))
            .clone();
        let handlers: [(Signal, &'static str, extern "C" fn(nix::libc::c_int)); 3] = [
            (Signal::SIGTERM, "SIGTERM", on_stop),
            (Signal::SIGINT, "SIGINT", on_stop),
            (Signal::SIGHUP, "SIGHUP", on_reload),
        ];
        for (signal, name, handler) in handlers {
            let action = SigAction::new(
                SigHandler::Handler(handler),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            // SAFETY: the handlers only touch atomics (and `_exit`), which is
            // async-signal-safe; the previous action is not needed.
            unsafe { sigaction(signal, &action) }.map_err(|source| SignalError {
                signal: name,
                source,
            })?;
        }
        tracing::debug!("signal handlers installed: SIGTERM/SIGINT stop, SIGHUP reloads");
        Ok(Signals { stop })
    }

    /// The flag a stop signal sets (for [`crate::pipeline::runner::RunOptions::stop`]).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether SIGHUP arrived since the last call (and clear it).
    pub fn take_reload(&self) -> bool {
        RELOAD.swap(false, Ordering::SeqCst)
    }

    /// Whether a reload is pending, without clearing it: cheap enough for a per-frame
    /// observer that ends the current run so the loop can re-read the configuration.
    pub fn reload_requested(&self) -> bool {
        RELOAD.load(Ordering::Relaxed)
    }
}
