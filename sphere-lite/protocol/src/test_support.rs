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
