//! [`Notifier`]: messages to the service manager over the `NOTIFY_SOCKET` datagram socket.
//!
//! sd-notify's own `notify()` reads the environment, opens a socket and formats a `String`
//! on every call. The watchdog ping runs on the inference loop, which allocates nothing per
//! frame, so the notifier keeps one connected socket and one reused message buffer; the
//! crate supplies the message vocabulary ([`NotifyState`]) and `MONOTONIC_USEC`.
//! Environment variables are process-global (and racy in tests), so the socket path is an
//! argument of [`Notifier::connect`] and [`Notifier::from_env`] is a thin wrapper.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

pub use sd_notify::NotifyState;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Longest message the notifier formats without growing its buffer.
const MESSAGE_CAPACITY: usize = 512;

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The socket named by `NOTIFY_SOCKET` could not be reached.
    #[error(
        "cannot connect to the systemd notification socket {path:?}: {source}; \
         is the service started by systemd with Type=notify (or unset NOTIFY_SOCKET)?"
    )]
    Connect {
        /// The socket's path (`@name` for an abstract socket).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A message could not be sent.
    #[error("cannot send {message:?} to systemd: {source}")]
    Send {
        /// The first line of what was sent.
        message: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `WATCHDOG_USEC` is not a positive number of microseconds.
    #[error("WATCHDOG_USEC={value:?} is not a positive number of microseconds")]
    WatchdogUsec {
        /// The value found.
        value: String,
    },
    /// The monotonic clock could not be read for `MONOTONIC_USEC`.
    #[error("cannot read the monotonic clock for RELOADING: {0}")]
    Clock(#[source] std::io::Error),
}

/// Sends state changes to systemd; does nothing when the service does not run under it.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<UnixDatagram>,
    buffer: String,
}

impl Notifier {
    /// A notifier that sends nothing (no `NOTIFY_SOCKET`: not started by systemd).
    pub fn disabled() -> Self {
        Notifier {
            socket: None,
            buffer: String::new(),
        }
    }

    /// Connect to the socket at `path`; a leading `@` names a Linux abstract socket, as in
    /// systemd's `NOTIFY_SOCKET`.
    pub fn connect(path: &OsStr) -> Result<Self, NotifyError> {
        let fail = |source| NotifyError::Connect {
            path: PathBuf::from(path),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(fail)?;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => connect_abstract(&socket, name).map_err(fail)?,
            None => socket.connect(path).map_err(fail)?,
        }
        // A full socket buffer must never block the inference loop: a lost ping is
        // better than a stalled frame (systemd only needs one ping per interval/2).
        socket.set_nonblocking(true).map_err(fail)?;
        Ok(Notifier {
            socket: Some(socket),
            buffer: String::with_capacity(MESSAGE_CAPACITY),
        })
    }

    /// Connect to `NOTIFY_SOCKET` if it is set, else [`Notifier::disabled`].
    pub fn from_env() -> Result<Self, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(path) if !path.is_empty() => Self::connect(&path),
            _ => Ok(Self::disabled()),
        }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `READY=1`: start-up is finished.
    pub fn ready(&mut self) -> Result<(), NotifyError> {
        self.send_static(b"READY=1\n", "READY=1")
    }

    /// `WATCHDOG=1`: still alive (allocates nothing).
    pub fn watchdog(&mut self) -> Result<(), NotifyError> {
        self.send_static(b"WATCHDOG=1\n", "WATCHDOG=1")
    }

    /// `STOPPING=1`: the service is shutting down on purpose.
    pub fn stopping(&mut self) -> Result<(), NotifyError> {
        self.send_static(b"STOPPING=1\n", "STOPPING=1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd ≥ 253 requires both); send
    /// [`Notifier::ready`] when the reload is done.
    pub fn reloading(&mut self) -> Result<(), NotifyError> {
        if self.socket.is_none() {
            return Ok(());
        }
        let now = NotifyState::monotonic_usec_now().map_err(NotifyError::Clock)?;
        self.send(&[NotifyState::Reloading, now], "RELOADING=1")
    }

    /// `STATUS=<text>`: a one-line status shown by `systemctl status` (newlines become
    /// spaces, so the message stays one line). Allocates nothing for texts up to 500 bytes.
    pub fn status(&mut self, text: &str) -> Result<(), NotifyError> {
        if self.socket.is_none() {
            return Ok(());
        }
        self.buffer.clear();
        self.buffer.push_str("STATUS=");
        for c in text.chars() {
            self.buffer
                .push(if c == '\n' || c == '\r' { ' ' } else { c });
        }
        self.buffer.push('\n');
        self.flush("STATUS=")
    }

    /// Several states in one datagram; `label` names it in errors.
    fn send(&mut self, states: &[NotifyState<'_>], label: &'static str) -> Result<(), NotifyError> {
        if self.socket.is_none() {
            return Ok(());
        }
        self.buffer.clear();
        for state in states {
            // Writing into a String cannot fail.
            let _ = writeln!(self.buffer, "{state}");
        }
        self.flush(label)
    }

    fn send_static(&mut self, message: &[u8], label: &'static str) -> Result<(), NotifyError> {
        match &self.socket {
            Some(socket) => send_all(socket, message, label),
            None => Ok(()),
        }
    }

    fn flush(&mut self, label: &'static str) -> Result<(), NotifyError> {
        match &self.socket {
            Some(socket) => send_all(socket, self.buffer.as_bytes(), label),
            None => Ok(()),
        }
    }
}

fn send_all(socket: &UnixDatagram, message: &[u8], label: &'static str) -> Result<(), NotifyError> {
    let error = |source| NotifyError::Send {
        message: label,
        source,
    };
    let sent = socket.send(message).map_err(error)?;
    if sent != message.len() {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "the datagram was truncated",
        )));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn connect_abstract(socket: &UnixDatagram, name: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.connect_addr(&address)
}

#[cfg(not(target_os = "linux"))]
fn connect_abstract(_socket: &UnixDatagram, _name: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_notifier_accepts_everything_silently() {
        let mut n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.watchdog().unwrap();
        n.status("x").unwrap();
        n.reloading().unwrap();
        n.stopping().unwrap();
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Notifier::connect(dir.path().join("none").as_os_str()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("none") && text.contains("NOTIFY_SOCKET"),
            "{text}"
        );
    }

    #[test]
    fn status_lines_stay_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::connect(path.as_os_str()).unwrap();
        n.status("a\nb").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=a b\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_sockets_are_reached_by_at_names() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tinylcm-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&address).unwrap();
        let mut n = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready().unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\n");
    }
}
