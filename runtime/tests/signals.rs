//! SIGTERM/SIGINT and SIGHUP raised at a real process: the stop and reload flags, and the
//! second stop signal that ends a hanging stop. The last one exits, so it runs in a child
//! process (this test binary again, in child mode).

use std::process::Command;
use std::sync::atomic::Ordering;

use nix::sys::signal::{Signal, raise};
use tinylcm::signals::Signals;

const CHILD: &str = "TINYLCM_SIGNALS_CHILD";

#[test]
fn sighup_asks_for_a_reload_and_sigterm_for_a_stop() {
    let signals = Signals::install().unwrap();
    let flag = signals.stop_flag();
    assert!(!signals.take_reload());
    raise(Signal::SIGHUP).unwrap();
    assert!(signals.reload_requested(), "SIGHUP sets the reload flag");
    assert!(signals.reload_requested(), "peeking leaves it set");
    assert!(signals.take_reload(), "taking returns it");
    assert!(!signals.reload_requested());
    assert!(!signals.take_reload(), "taking the flag clears it");
    assert!(!flag.load(Ordering::SeqCst), "SIGHUP is no stop");
    raise(Signal::SIGTERM).unwrap();
    assert!(
        flag.load(Ordering::SeqCst),
        "the handed-out flag is the one set"
    );
    assert!(signals.stop_requested());
    // Installing again hands out the same process-wide flag.
    assert!(Signals::install().unwrap().stop_requested());
}

#[test]
fn a_second_stop_signal_ends_the_process_at_once() {
    if std::env::var_os(CHILD).is_some() {
        let signals = Signals::install().unwrap();
        raise(Signal::SIGINT).unwrap();
        println!("stop requested: {}", signals.stop_requested());
        raise(Signal::SIGTERM).unwrap();
        println!("still alive after the second signal");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("TINYLCM_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .args([
            "--exact",
            "a_second_stop_signal_ends_the_process_at_once",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stop requested: true"), "{stdout}");
    assert!(!stdout.contains("still alive"), "{stdout}");
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
}
