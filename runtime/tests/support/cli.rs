//! Helpers shared by the integration tests that start the `tinylcm` binary.

use std::process::Command;

/// The binary under test, logging warnings only.
///
/// Cross-built test runs have no binfmt_misc to start a foreign binary, so
/// `TINYLCM_TEST_RUNNER` (e.g. `qemu-aarch64-static -L /usr/aarch64-linux-gnu`,
/// set by `./scripts/test aarch64`) is put in front of it.
pub fn tinylcm() -> Command {
    let binary = env!("CARGO_BIN_EXE_tinylcm");
    let runner = std::env::var("TINYLCM_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    cmd.env("TINYLCM_LOG", "warn");
    cmd
}
