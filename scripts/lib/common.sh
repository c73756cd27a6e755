# shellcheck shell=bash
# Small helpers shared by the scripts in scripts/. Source this file, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Keep it generic: anything specific to one script belongs in that script.

# Where TinyLCM keeps downloaded artefacts (libraries, tools) outside git.
# The runtime reads the same variable (engine library lookup).
cache_dir() {
    printf '%s\n' "${TINYLCM_CACHE:-$HOME/.cache/tinylcm}"
}

# Print a message to stderr and exit non-zero.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Print a message to stderr (stdout stays for results).
note() {
    printf '%s\n' "$*" >&2
}

# SHA-256 of a file, lower-case hex.
sha256_of() {
    sha256sum -- "$1" | cut -d' ' -f1
}

# Succeed if FILE exists and its SHA-256 is EXPECTED.
sha256_matches() {
    [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]
}

# Fail loudly unless FILE's SHA-256 is EXPECTED.
verify_sha256() {
    local file=$1 expected=$2 actual
    [ -f "$file" ] || die "$file: missing"
    actual=$(sha256_of "$file")
    [ "$actual" = "$expected" ] ||
        die "$file: SHA-256 mismatch: expected $expected, got $actual (refusing to use it)"
}

# Make sure each named command exists.
require_cmds() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"
    done
}

# Cargo's target directory for this workspace (CARGO_TARGET_DIR, a `target-dir` setting, or
# ./target), as cargo itself resolves it.
cargo_target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Build the tests of the packages selected by ARGS (cargo test --no-run ARGS) and print the
# path of the binary NAME that this build made. Layers and checks that need a binary use the
# same package selection as the layer that tests it, so a whole-suite run builds it once (a
# plain `cargo build` would select other features: no dev-dependencies).
binary_of_test_build() {
    local name=$1
    shift
    cargo test "$@" --locked --no-run --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
name = sys.argv[1]
paths = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name
         and "bin" in m["target"]["kind"] and not m["profile"]["test"]]
if not paths:
    sys.exit(f"no binary {name} in this build")
print(paths[-1])' "$name"
}
