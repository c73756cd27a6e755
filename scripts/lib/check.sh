# shellcheck shell=bash
# What every tests/image/*.sh check shares: a scratch folder, clean-up at exit, and how a
# check reports. Source after common.sh, then call check_init.

# Make a scratch folder in WORK, removed at exit. A check that starts something else that
# must not outlive it (a loop device, QEMU) defines check_cleanup_hook; it runs first.
check_init() {
    WORK=$(mktemp -d)
    trap check_cleanup EXIT
}

# The EXIT trap of check_init.
check_cleanup() {
    if declare -F check_cleanup_hook >/dev/null; then
        check_cleanup_hook || true
    fi
    rm -rf "$WORK"
}

# One verified fact, on stdout.
ok() {
    printf 'ok: %s\n' "$*"
}

# Fail the check with MESSAGE. A check that boots something keeps its serial console in
# $WORK/console: the end of it comes first, since that is where the reason usually is.
fail() {
    if [ -s "${WORK:-}/console" ]; then
        printf -- '--- last 30 lines of the console of the last power-on:\n' >&2
        tail -n 30 "$WORK/console" >&2
    fi
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# WHAT, which the rest of this check needs, is missing here; HOW says how to get it. Under
# ./scripts/test (and so CI), which sets TINYLCM_TEST_REQUIRE_ALL=1, that fails the check: a
# passing suite has run every check. Run by hand, the rest of the check is skipped with a
# SKIP line (exit 0). The Rust tests' twin is tinylcm_protocol::test_support::missing.
missing() {
    local what=$1 how=$2
    case ${TINYLCM_TEST_REQUIRE_ALL:-} in
        "" | 0) ;;
        *) fail "$what is missing, and TINYLCM_TEST_REQUIRE_ALL is set (./scripts/test sets" \
            "it: a missing dependency fails the suite). To get it: $how" ;;
    esac
    printf 'SKIP: %s is missing (%s; with TINYLCM_TEST_REQUIRE_ALL=1 this fails): %s\n' \
        "$what" "$how" "the rest of this check did not run"
    exit 0
}

# Show that the check can fail: make a copy of FILE edited by SED_SCRIPT (which must change
# it), run this check again on the copy ("$0" PREFIX COPY: a check that takes several inputs
# names the one it replaces with PREFIX, e.g. "key="), and require it to fail with a FAIL line
# matching PATTERN (grep -E). WHAT names the defect in the messages.
expect_failure_on_copy() {
    local what=$1 file=$2 sed_script=$3 pattern=$4 prefix=${5:-} copy
    copy="$WORK/broken-${prefix%=}-$(basename "$file")"
    sed "$sed_script" "$file" >"$copy"
    cmp -s "$file" "$copy" && fail "nothing to change in $(basename "$file") for: $what"
    if "$0" "$prefix$copy" >"$WORK/broken.out" 2>&1; then
        cat "$WORK/broken.out" >&2
        fail "$what: the check passed"
    fi
    grep -Eq "^FAIL: .*$pattern" "$WORK/broken.out" ||
        { cat "$WORK/broken.out" >&2; fail "$what: the check failed, but not as expected ($pattern)"; }
    ok "$what fails: $(grep -m1 '^FAIL' "$WORK/broken.out" | cut -c7-160)"
}
