//! Support for the cross-component tests: a real `sphere-lite` process ([`sphere`]), a
//! fault-injecting proxy in front of it ([`proxy`]), an in-process [`host::TestHost`] for the
//! sync client, and a device's state folder with drift events as the autonomy layer writes
//! them ([`device`]); and for the device-level tests a `tinylcm run` process ([`field`]), the
//! same laid out as the shipped systemd unit runs it on a `/data` of its own ([`shipped`]), the
//! child process both of them stop, kill and wait on ([`process`]), and signed model releases
//! ([`release`]).
//!
//! Why a crate of its own: these tests need both the runtime (as a library) and the server (as
//! the binary users run), and a child binary (`sync-child`) the kill -9 test can kill.

pub mod device;
pub mod field;
pub mod host;
pub mod process;
pub mod proxy;
pub mod release;
pub mod shipped;
pub mod sphere;

/// Polls `f` every 50 ms until it returns `Some`, at most `seconds`; panics with `what`.
pub fn wait_for<T>(seconds: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > until {
            panic!("timed out after {seconds} s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
