//! For the workspace's tests only (hidden from the docs): what a test does when something it
//! needs is missing here (a program, root, a service's address, a browser).
//!
//! Why here: this is the lowest crate every test crate depends on (the runtime, sphere-lite,
//! the protocol's own tests and tinylcm-e2e), so the rule lives in one place rather than in a
//! copy per crate. Run by hand, such a test says it was SKIPPED and why; under `./scripts/test`
//! (and so CI), which sets [`REQUIRE_ALL_ENV`], it FAILS with what to install, so a suite that
//! passes has run every test.

/// Set to `1` by `./scripts/test`: a missing dependency fails the test instead of skipping it.
pub const REQUIRE_ALL_ENV: &str = "TINYLCM_TEST_REQUIRE_ALL";

/// Whether [`REQUIRE_ALL_ENV`] is set (to anything but empty or `0`).
pub fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports that `what` is missing, so the calling test cannot run; `how_to_get_it` says how
/// to provide it. Panics with that advice when [`REQUIRE_ALL_ENV`] is set; otherwise prints
/// `SKIPPED: ...` on stderr and returns, and the caller returns (skips the test or its part).
pub fn missing(what: &str, how_to_get_it: &str) {
    if require_all() {
        panic!(
            "{what} is missing, and {REQUIRE_ALL_ENV} is set (./scripts/test sets it: a \
             missing dependency fails the suite). To get it: {how_to_get_it}"
        );
    }
    eprintln!("SKIPPED: {what} is missing ({how_to_get_it}; with {REQUIRE_ALL_ENV}=1 this fails)");
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Set in the child process this test starts: it only calls [`super::missing`].
    const CHILD: &str = "TINYLCM_TEST_SUPPORT_CHILD";

    /// The rule itself, in a child process (the flag is process-wide): with the flag a missing
    /// dependency fails the test with the advice, without it the test says SKIPPED and passes.
    /// Fails before this module existed: every site returned with a note whatever the flag.
    #[test]
    fn a_missing_dependency_fails_under_the_flag_and_skips_without_it() {
        if std::env::var_os(CHILD).is_some() {
            super::missing("the frobnicator", "apt install frobnicator");
            return;
        }
        let run = |flag: Option<&str>| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args([
                    "--exact",
                    "test_support::tests::a_missing_dependency_fails_under_the_flag_and_skips_without_it",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .env_remove(super::REQUIRE_ALL_ENV);
            if let Some(flag) = flag {
                command.env(super::REQUIRE_ALL_ENV, flag);
            }
            command.output().unwrap()
        };
        let required = run(Some("1"));
        let text = String::from_utf8_lossy(&required.stdout).to_string()
            + &String::from_utf8_lossy(&required.stderr);
        assert!(!required.status.success(), "{text}");
        assert!(text.contains("apt install frobnicator"), "{text}");
        for flag in [None, Some("0")] {
            let skipped = run(flag);
            let text = String::from_utf8_lossy(&skipped.stderr);
            assert!(skipped.status.success(), "{flag:?}: {text}");
            assert!(
                text.contains("SKIPPED: the frobnicator is missing"),
                "{text}"
            );
        }
    }
}
