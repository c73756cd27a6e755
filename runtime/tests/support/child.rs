//! Shared plumbing of the kill tests: a seeded random source, the test binary pinned against
//! concurrent rebuilds, and the command that re-runs it as a child (behind qemu when set).

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

/// xorshift64*: a seeded, dependency-free source of kill delays and choices.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A private link (or copy) of the test binary in `dir` as `name`: a `cargo build` running
/// alongside (in a shared target directory) may replace the original while the test runs.
pub fn pin_binary(dir: &Path, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let pinned = dir.join(name);
    if std::fs::hard_link(&exe, &pinned).is_err() {
        std::fs::copy(&exe, &pinned).expect("copy the test binary");
    }
    pinned
}

/// `exe`, behind `TINYLCM_TEST_RUNNER` (qemu) when set.
pub fn command(exe: &Path) -> Command {
    let runner = std::env::var("TINYLCM_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}
