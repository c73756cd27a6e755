#!/bin/sh
# Offline checks of the A/B boot chain's files in board/ (run by `./scripts/test image`):
#  1. board/common/boot.cmd's try counters, run under sh by scripts/lib/uboot-sim.sh, through
#     the life of a device: first boot, an update RAUC made primary, a new slot that never
#     gets marked good (rollback), one that does, both slots exhausted (the primary boots
#     without a try and nothing is written: no endless A/B cycle), a slot whose kernel
#     cannot be loaded. Every boot checks the chosen slot and that `root=` and
#     `rauc.slot=` on the kernel command line name it.
#  2. That the boards' system.conf, layout.toml and boot.cmd agree on which partition is
#     which slot.
#  3. That the checks can fail: each of a few broken copies of boot.cmd must fail step 1.
# Usage: tests/image/boot-counters.sh [BOOT_CMD]   (default board/common/boot.cmd; with an
# explicit script only step 1 runs, which is how step 3 calls itself)
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UBOOT_SIM_LIB="$ROOT/scripts/lib/uboot-sim.sh"
# shellcheck source=scripts/lib/uboot-sim.sh
. "$UBOOT_SIM_LIB"

BOOT_CMD=${1:-$ROOT/board/common/boot.cmd}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ENV="$WORK/uboot.env"
# A firmware command line like the image's cmdline.txt (tests/image/boot-files.sh checks the
# real one); boot.cmd only passes it on.
FIRMWARE_ARGS="dwc_otg.lpm_enable=0 console=serial0,115200 ro rootfstype=ext4 rootwait net.ifnames=0"
UBOOT_SIM_BOOTARGS=$FIRMWARE_ARGS
export UBOOT_SIM_BOOTARGS

fail() {
    if [ -s "$WORK/console" ]; then
        printf 'U-Boot console of the last power-on:\n' >&2
        cat "$WORK/console" >&2
    fi
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# Partition of slot A or B per board/common/layout.toml.
layout_part() {
    python3 - "$ROOT/board/common/layout.toml" "$1" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    parts = [p for p in tomllib.load(f)["partition"] if p.get("slot") == sys.argv[2]]
if len(parts) != 1:
    sys.exit(f"layout.toml: expected one partition for slot {sys.argv[2]}, got {len(parts)}")
print(parts[0]["number"])
PY
}

# One power-on. Sets BOOTED to `booti <args>` or `reset`; the U-Boot console goes to a file
# that fail() shows.
power_on() {
    BOOTED=$(uboot_sim_boot "$BOOT_CMD" "$ENV" 2>"$WORK/console") ||
        fail "$1: the boot script failed"
}

# One power-on that must boot SLOT with TRIES left for it afterwards.
expect_boot() {
    what=$1 slot=$2 tries=$3
    power_on "$what"
    part=$(layout_part "$slot")
    want="booti $FIRMWARE_ARGS root=/dev/mmcblk0p$part rauc.slot=$slot"
    [ "$BOOTED" = "$want" ] || fail "$what: expected '$want', got '$BOOTED'"
    left=$(uboot_sim_getenv "$ENV" "BOOT_${slot}_LEFT")
    [ "$left" = "$tries" ] || fail "$what: expected BOOT_${slot}_LEFT=$tries saved, got '$left'"
    printf 'ok: %s -> slot %s (%s tries left)\n' "$what" "$slot" "$tries"
}

expect_env() {
    got=$(uboot_sim_getenv "$ENV" "$2")
    [ "$got" = "$3" ] || fail "$1: expected $2='$3', got '$got'"
}

# What RAUC's uboot backend writes through fw_setenv.
rauc_set_primary() { # slot: first in order, 3 tries
    other=A
    [ "$1" = B ] || other=B
    uboot_sim_setenv "$ENV" BOOT_ORDER "$1 $other"
    uboot_sim_setenv "$ENV" "BOOT_$1_LEFT" 3
}
rauc_mark_good() { uboot_sim_setenv "$ENV" "BOOT_$1_LEFT" 3; }

counter_cases() {
    rm -f "$ENV"
    expect_boot "fresh environment" A 2
    expect_env "fresh environment" BOOT_ORDER "A B"
    expect_env "fresh environment" BOOT_B_LEFT 3
    rauc_mark_good A
    expect_boot "booted slot marked good" A 2

    # An update: RAUC installs into B and makes it primary; the new OS never gets healthy.
    rauc_set_primary B
    expect_boot "update made B primary" B 2
    expect_boot "B failed once" B 1
    expect_boot "B failed twice" B 0
    expect_boot "B failed three times: rollback" A 1
    expect_boot "after rollback" A 0
    rauc_mark_good A
    expect_boot "A marked good after rollback" A 2

    # The same update, and this time the health gate passes each boot.
    rauc_set_primary B
    for n in 1 2 3 4 5; do
        expect_boot "B marked good, boot $n" B 2
        rauc_mark_good B
    done

    # Both slots fail their health gates (confirmed slots are not marked bad, so their
    # tries run out): the primary boots on every power-on without a try, the environment
    # stays as it is (no write per boot), and neither the counters nor the slot cycle.
    uboot_sim_setenv "$ENV" BOOT_A_LEFT 0
    uboot_sim_setenv "$ENV" BOOT_B_LEFT 0
    cp "$ENV" "$WORK/exhausted.env"
    for n in 1 2 3 4 5 6 7; do
        expect_boot "both exhausted, power-on $n" B 0
        cmp -s "$ENV" "$WORK/exhausted.env" || fail "both exhausted, power-on $n: the environment was written"
    done
    expect_env "both exhausted" BOOT_A_LEFT 0
    printf 'ok: both exhausted -> B (first in BOOT_ORDER) on every power-on, environment untouched\n'
    # The runtime recovers on B and the gate marks it good: normal counting again.
    rauc_mark_good B
    expect_boot "B marked good after both were exhausted" B 2
    # Both exhausted and A marked bad (out of BOOT_ORDER), B too: A, the fallback of last resort.
    uboot_sim_setenv "$ENV" BOOT_ORDER ""
    uboot_sim_setenv "$ENV" BOOT_B_LEFT 0
    expect_boot "both marked bad, BOOT_ORDER empty" A 0

    # A slot whose kernel is missing spends its tries through resets, then falls back.
    rm -f "$ENV"
    rauc_set_primary B
    for left in 2 1 0; do
        UBOOT_SIM_LOAD_FAILS=3 power_on "B without kernel"
        [ "$BOOTED" = reset ] || fail "B without kernel: expected a reset, got '$BOOTED'"
        expect_env "B without kernel" BOOT_B_LEFT "$left"
    done
    printf 'ok: B without a kernel -> 3 resets\n'
    UBOOT_SIM_LOAD_FAILS=3 expect_boot "B without kernel, 4th power-on" A 2

    # Values the script must tolerate: a missing counter, an unknown name in the order.
    rm -f "$ENV"
    uboot_sim_setenv "$ENV" BOOT_ORDER "X B A"
    uboot_sim_setenv "$ENV" BOOT_A_LEFT 1
    expect_boot "unknown slot X, BOOT_B_LEFT unset" B 2
}

# system.conf slots -> the partitions layout.toml and boot.cmd give A and B.
consistency_checks() {
    for conf in "$ROOT"/board/*/system.conf; do
        for slot in A B; do
            dev=$(awk -v slot="$slot" '
                /^\[/ { sect = $0; dev = ""; name = "" }
                sect ~ /^\[slot\.rootfs\.[01]\]$/ && /^device=/ { dev = substr($0, 8) }
                sect ~ /^\[slot\.rootfs\.[01]\]$/ && /^bootname=/ { name = substr($0, 10) }
                dev != "" && name == slot { print dev; exit }' "$conf")
            want="/dev/mmcblk0p$(layout_part "$slot")"
            [ "$dev" = "$want" ] || fail "$conf: slot $slot is '$dev', layout.toml says $want"
        done
        for key in 'bootloader=uboot' 'check-purpose=codesign' 'data-directory=/data/'; do
            grep -qx "$key" "$conf" || fail "$conf: missing $key"
        done
        printf 'ok: %s agrees with layout.toml\n' "${conf#"$ROOT"/}"
    done
    compatibles=$(sed -n 's/^compatible=//p' "$ROOT"/board/*/system.conf | sort | uniq -d)
    [ -z "$compatibles" ] || fail "two boards share the RAUC compatible '$compatibles'"
}

# Broken copies of boot.cmd, one per property the cases guard; each must fail them.
mutant_checks() {
    i=0
    while IFS='|' read -r why expr; do
        i=$((i + 1))
        sed "$expr" "$BOOT_CMD" >"$WORK/mutant$i.cmd"
        ! cmp -s "$BOOT_CMD" "$WORK/mutant$i.cmd" || fail "mutant '$why' changes nothing"
        if "$0" "$WORK/mutant$i.cmd" >/dev/null 2>&1; then
            fail "the checks pass on a boot.cmd that $why"
        fi
        printf 'ok: caught a boot.cmd that %s\n' "$why"
    done <<'MUTANTS'
never decrements|/setexpr/d
never saves the environment|/^ *saveenv$/d
forgets rauc.slot|s/ rauc.slot=${tinylcm_slot}//
boots partition 2 for B|s/tinylcm_part 3/tinylcm_part 2/
ignores BOOT_ORDER|s/for slot in ${BOOT_ORDER}/for slot in A B/
cycles A and B when all are spent|s/^    for slot in \${BOOT_ORDER} A; do$/    setenv BOOT_A_LEFT 3; setenv BOOT_B_LEFT 3; saveenv; reset; for slot in A; do/
MUTANTS
}

counter_cases
if [ $# -eq 0 ]; then
    consistency_checks
    mutant_checks
fi
printf 'boot-counters: all checks passed\n'
