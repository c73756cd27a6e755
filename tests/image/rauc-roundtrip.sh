#!/usr/bin/env bash
# The RAUC A/B round trip of each board, with the board's own system.conf and boot script
# (run by `./scripts/test image`; platform notes §6.2-6.3):
#
#   scripts/dev-pki -> scripts/make-bundle (plain to install; verity checked with rauc info)
#   -> Debian's real `rauc service` on a private D-Bus with file-backed slots, booted from A
#   -> install: B is primary and holds the new rootfs -> "reboot": board/common/boot.cmd
#   under scripts/lib/uboot-sim.sh picks the slot from BOOT_ORDER/BOOT_x_LEFT -> B
#   -> mark-good keeps B -> a second bundle into A -> the health gate fails (mark-bad; and
#   again by never marking good for 3 boots) -> boot.cmd falls back to B.
#   Refused: a bundle for the other board (compatible) and one signed by a foreign CA.
#
# What ties RAUC to the boot script: board/<board>/system.conf is used with ONLY its device
# paths, mountprefix, data-directory and bootloader rewritten (checked), and the bootloader
# is a custom backend that reads and writes the simulated U-Boot environment with the
# semantics of RAUC's `uboot` backend (the one the device uses), so every
# BOOT_ORDER/BOOT_x_LEFT value RAUC writes is what the next simulated power-on reads.
# The keyring path is NOT rewritten: system.conf sits in a folder that stands for the
# image's /usr/lib/rauc, with the keyring beside it under the name rauc-conf.bbappend gives
# it, so a path that does not lead there on the device fails here too.
# The board's bundle rules, with nothing else changed: a verity bundle is accepted, a plain
# one refused (bundle-formats), and with the clock at 2020 (a Pi without RTC or network)
# the certificates still verify (use-bundle-signing-time). The installs themselves use plain
# bundles (no device-mapper here, platform notes §6.5): for them, and only for them,
# bundle-formats is rewritten too.
#
# Finally it proves it can fail: the round trip against a boot.cmd that ignores BOOT_ORDER,
# a system.conf rewrite that changes the compatible, and board system.confs with the old
# keyring path, without bundle-formats or without use-bundle-signing-time must be caught.
#
# Usage: tests/image/rauc-roundtrip.sh [--board BOARD] [--boot-cmd FILE] [--board-conf FILE]
#   (all only for the self-check; without them: every board, then the self-check)
# Needs root (unshare -m, loop devices for the install) like runtime/tests/rauc_dbus.rs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SELF="$ROOT/tests/image/$(basename "${BASH_SOURCE[0]}")"
HARNESS="$ROOT/runtime/tests/support/rauc-harness.sh"
export UBOOT_SIM_LIB="$ROOT/scripts/lib/uboot-sim.sh"

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# scripts/lib/uboot-sim.sh in a child sh: sourcing it here would replace this shell's
# `echo` with U-Boot's.
sim() {
    sh -c '. "$UBOOT_SIM_LIB" && "$@"' uboot-sim "$@"
}

# ---------------------------------------------------------------------------------------
# Inside one "boot": run by the harness in its mount namespace with a private bus and a
# running `rauc service`; T, BOARD and the bundles come from the environment.

rauc_c() {
    rauc --conf="$T/system.conf" "$@"
}

# Saves `rauc status` as JSON for the caller outside the namespace.
save_status() {
    rauc_c status --detailed --output-format=json >"$T/status.json" 2>>"$T/client.log" ||
        fail "rauc status failed (see $T/client.log)"
}

# Expect an install to be refused with a message matching PATTERN.
install_refused() {
    local bundle=$1 pattern=$2 what=$3
    if rauc_c install "$bundle" >"$T/refused.log" 2>&1; then
        fail "$BOARD: rauc installed $what"
    fi
    grep -Eq "$pattern" "$T/refused.log" ||
        fail "$BOARD: $what was refused, but not for the expected reason: $(tr '\n' ' ' <"$T/refused.log")"
}

install_ok() {
    rauc_c install "$1" >"$T/install.log" 2>&1 ||
        fail "$BOARD: rauc install $1 failed: $(tail -n 5 "$T/install.log" | tr '\n' ' ')"
}

in_boot() {
    case $1 in
        factory) # the factory image on A: refused bundles first, then the update
            save_status
            rauc_c status mark-good >>"$T/client.log" 2>&1 || fail "mark-good on A failed"
            install_refused "$T/other-board.raucb" "Compatible mismatch" "a bundle for the other board"
            install_refused "$T/foreign.raucb" "signature|issuer|verif" "a bundle signed by a foreign CA"
            install_ok "$T/v2.raucb"
            ;;
        healthy) # the health gate passes (tinylcm-healthcheck --mark-good)
            rauc_c status mark-good >>"$T/client.log" 2>&1 || fail "mark-good failed"
            ;;
        healthy-update) # healthy, then the next update arrives
            rauc_c status mark-good >>"$T/client.log" 2>&1 || fail "mark-good failed"
            install_ok "$T/v3.raucb"
            ;;
        unhealthy) # the health gate fails (tinylcm-healthcheck --mark-bad-on-failure)
            rauc_c status mark-bad booted >>"$T/client.log" 2>&1 || fail "mark-bad failed"
            ;;
        look) ;; # the service starts and answers; nobody marks anything
        *) fail "unknown step $1" ;;
    esac
    save_status
}

# ---------------------------------------------------------------------------------------
# Outside: the test of one board in its own folder T.

# Where rauc-conf.bbappend puts the keyring: beside system.conf, as keyring.pem.
IMAGE_KEYRING=keyring.pem
RAUC_CONF_APPEND="$ROOT/yocto/meta-tinylcm/recipes-core/rauc/rauc-conf.bbappend"

# The board's system.conf with only the host-specific keys rewritten, into $T/system.conf
# (for the installs: plain bundles allowed too) and $T/strict/system.conf (the board's
# bundle formats); the keyring beside each as the image installs it. REWRITE_MUTANT
# (self-check only) adds one change that is not allowed.
make_system_conf() {
    # shellcheck disable=SC2016 # BitBake's own ${D}${nonarch_libdir}, literally
    grep -q '${D}${nonarch_libdir}/rauc/'"$IMAGE_KEYRING" "$RAUC_CONF_APPEND" ||
        fail "rauc-conf.bbappend does not install the keyring as \${nonarch_libdir}/rauc/$IMAGE_KEYRING (beside system.conf)"
    mkdir -p "$T/strict"
    cp "$T/pki/ca.cert.pem" "$T/$IMAGE_KEYRING"
    cp "$T/pki/ca.cert.pem" "$T/strict/$IMAGE_KEYRING"
    python3 - "$BOARD_CONF" "$T" "${REWRITE_MUTANT:-}" <<'PY'
import configparser, sys

board_conf, t, mutant = sys.argv[1:]

def load(text):
    # RAUC's key-file format: case-sensitive keys, no interpolation, whole-line comments.
    cp = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=True)
    cp.optionxform = str
    cp.read_string(text)
    return cp

original = load(open(board_conf).read())

def rewritten(installs):
    conf = load(open(board_conf).read())
    conf["system"]["bootloader"] = "custom"
    conf["system"]["mountprefix"] = f"{t}/mnt"
    conf["system"]["data-directory"] = f"{t}/data"
    if not conf.has_section("handlers"):
        conf.add_section("handlers")
    conf["handlers"]["bootloader-custom-backend"] = f"{t}/bootloader.sh"
    if installs:
        conf["system"]["bundle-formats"] = "plain verity"
    for name in conf.sections():
        if name.startswith("slot.") and "device" in conf[name]:
            conf[name]["device"] = f"{t}/slots/{name[len('slot.'):]}.img"
    if mutant:
        section, key, value = mutant.split(":")
        conf[section][key] = value

    # What may differ from the board's file, and nothing else: devices, where RAUC keeps
    # its mounts and status, the bootloader and its backend (and for the installs, which
    # bundle formats are allowed).
    allowed = {("system", "bootloader"), ("system", "mountprefix"), ("system", "data-directory"),
               ("handlers", "bootloader-custom-backend")}
    if installs:
        allowed.add(("system", "bundle-formats"))
    allowed |= {(s, "device") for s in original.sections() if s.startswith("slot.")}
    for section in original.sections():
        for key, value in original[section].items():
            if (section, key) not in allowed and conf.get(section, key, fallback=None) != value:
                sys.exit(f"the test's system.conf changes [{section}] {key}: "
                         f"{value!r} -> {conf.get(section, key, fallback=None)!r}")
    for section in conf.sections():
        for key in conf[section]:
            if (section, key) not in allowed and not original.has_option(section, key):
                sys.exit(f"the test's system.conf adds [{section}] {key}")
    return conf

for folder, installs in ((t, True), (f"{t}/strict", False)):
    conf = rewritten(installs)
    with open(f"{folder}/system.conf", "w") as f:
        conf.write(f, space_around_delimiters=False)
for section in conf.sections():
    if section.startswith("slot."):
        print(f"{section}={conf[section]['device']}")
PY
}

# The custom bootloader backend: RAUC's `uboot` backend (src/bootchooser.c, what
# bootloader=uboot does on the device) over the simulated environment instead of
# fw_printenv/fw_setenv:
#   get-primary    first slot in BOOT_ORDER with BOOT_x_LEFT > 0
#   set-primary X  X first in BOOT_ORDER, BOOT_X_LEFT=3
#   get-state X    good if X is in BOOT_ORDER and BOOT_X_LEFT > 0
#   set-state X good|bad   good: BOOT_X_LEFT=3; bad: X leaves BOOT_ORDER, BOOT_X_LEFT=0
make_backend() {
    cat >"$T/bootloader.sh" <<SH
#!/bin/sh
set -eu
UBOOT_SIM_LIB='$UBOOT_SIM_LIB'
ENV='$T/uboot.env'
. "\$UBOOT_SIM_LIB"
get() { uboot_sim_getenv "\$ENV" "\$1"; }
put() { uboot_sim_setenv "\$ENV" "\$1" "\$2"; }
left() { n=\$(get "BOOT_\${1}_LEFT"); printf '%s\n' "\${n:-0}"; }
in_order() { case " \$(get BOOT_ORDER) " in *" \$1 "*) return 0 ;; esac; return 1; }
without() { o=""; for s in \$(get BOOT_ORDER); do [ "\$s" = "\$1" ] || o="\$o \$s"; done; printf '%s\n' "\${o# }"; }
printf '%s\n' "\$*" >>'$T/backend.log'
case \$1 in
get-primary)
    for s in \$(get BOOT_ORDER); do
        if [ "\$(left "\$s")" -gt 0 ]; then printf '%s\n' "\$s"; exit 0; fi
    done
    exit 1 ;;
set-primary)
    rest=\$(without "\$2")
    put "BOOT_\${2}_LEFT" 3
    put BOOT_ORDER "\$2\${rest:+ \$rest}" ;;
get-state)
    if in_order "\$2" && [ "\$(left "\$2")" -gt 0 ]; then printf 'good\n'; else printf 'bad\n'; fi ;;
set-state)
    case \$3 in
    good) put "BOOT_\${2}_LEFT" 3 ;;
    bad) put BOOT_ORDER "\$(without "\$2")"; put "BOOT_\${2}_LEFT" 0 ;;
    *) exit 1 ;;
    esac ;;
*) exit 1 ;;
esac
SH
    chmod +x "$T/bootloader.sh"
}

# An ext4 root file system whose /etc/tinylcm-release says which build it is. The random
# file keeps the squashfs of a verity bundle above RAUC's 4 KiB minimum.
make_rootfs() {
    local version=$1 dir="$T/rootfs-$1"
    mkdir -p "$dir/etc" "$dir/boot"
    printf '%s %s\n' "$BOARD" "$version" >"$dir/etc/tinylcm-release"
    head -c 65536 /dev/urandom >"$dir/boot/Image"
    mke2fs -q -t ext4 -d "$dir" "$T/rootfs-$version.ext4" 8M >/dev/null
}

# /etc/tinylcm-release inside a slot image, read without mounting.
slot_release() {
    debugfs -R 'cat /etc/tinylcm-release' "$T/slots/$1.img" 2>/dev/null
}

expect_release() {
    local slot=$1 want="$BOARD $2" got
    got=$(slot_release "$slot")
    [ "$got" = "$want" ] || fail "$BOARD: $slot holds '$got', expected '$want'"
}

env_of() {
    sim uboot_sim_getenv "$T/uboot.env" "$1"
}

# One power-on through boot.cmd; sets BOOTED to the slot the kernel command line names and
# checks it is EXPECTED.
power_on() {
    local expected=$1 why=$2 line
    line=$(sim uboot_sim_boot "$BOOT_CMD" "$T/uboot.env" 2>"$T/console") ||
        fail "$BOARD: $why: boot.cmd failed: $(cat "$T/console")"
    case $line in
        "booti "*) ;;
        *) fail "$BOARD: $why: expected a kernel boot, got '$line'" ;;
    esac
    BOOTED=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^rauc\.slot=//p')
    [ "$BOOTED" = "$expected" ] ||
        fail "$BOARD: $why: boot.cmd booted slot '$BOOTED', expected $expected ($line; env: $(tr '\n' ' ' <"$T/uboot.env"))"
}

# One boot of Linux on BOOTED: the harness's private bus and rauc service, STEP inside.
boot_linux() {
    if ! unshare -m "$HARNESS" run "$T" "$BOOTED" "$SELF" --in-boot "$1" \
        >"$T/boot.log" 2>&1; then
        cat "$T/boot.log" >&2
        tail -n 20 "$T/service.log" >&2 || true
        fail "$BOARD: the boot of slot $BOOTED ($1) failed"
    fi
}

# A field of the status the last boot saved.
status() {
    python3 - "$T/status.json" "$1" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))
key = sys.argv[2]
if key.startswith("slot:"):  # slot:<name>:<field>[.<field>...]
    _, name, path = key.split(":")
    value = {k: v for s in status["slots"] for k, v in s.items()}[name]
else:
    path, value = key, status
for field in path.split("."):
    value = value.get(field) if isinstance(value, dict) else None
print(value)
PY
}

expect_status() {
    local got
    got=$(status "$1")
    [ "$got" = "$2" ] || fail "$BOARD: rauc status $1 is '$got', expected '$2'"
}

roundtrip() {
    BOARD=$1
    T="$WORK/$BOARD"
    BOARD_CONF=${board_conf:-$ROOT/board/$BOARD/system.conf}
    # The --in-boot child reads both.
    export BOARD T
    mkdir -p "$T/slots" "$T/mnt" "$T/data"
    local other="" b
    for b in "${BOARDS[@]}"; do [ "$b" = "$BOARD" ] || other=$b; done
    [ -n "$other" ] || fail "no second board under board/ to build a foreign-board bundle for"

    "$ROOT/scripts/dev-pki" --out "$T/pki" >/dev/null 2>&1 || fail "scripts/dev-pki failed"
    "$ROOT/scripts/dev-pki" --out "$T/foreign-pki" >/dev/null 2>&1 || fail "scripts/dev-pki (foreign) failed"
    printf 'ok: %s: development PKI and a foreign one from scripts/dev-pki\n' "$BOARD"

    local slots
    slots=$(make_system_conf) || fail "$BOARD: rewriting system.conf"
    make_backend
    local line
    for line in $slots; do
        truncate -s 16M "${line#*=}"
    done
    printf 'ok: %s: board/%s/system.conf with file-backed slots (%s), custom backend on the simulated U-Boot env\n' \
        "$BOARD" "$BOARD" "$(printf '%s\n' "$slots" | sed 's/=.*//' | paste -sd' ')"

    make_rootfs 1.0
    make_rootfs 2.0
    make_rootfs 3.0
    local mb="$ROOT/scripts/make-bundle"
    "$mb" --board "$BOARD" --rootfs "$T/rootfs-2.0.ext4" --version 2.0 --pki "$T/pki" --format plain \
        -o "$T/v2.raucb" >/dev/null 2>"$T/mb.log" || fail "make-bundle v2: $(cat "$T/mb.log")"
    "$mb" --board "$BOARD" --rootfs "$T/rootfs-3.0.ext4" --version 3.0 --pki "$T/pki" --format plain \
        -o "$T/v3.raucb" >/dev/null 2>"$T/mb.log" || fail "make-bundle v3: $(cat "$T/mb.log")"
    "$mb" --board "$BOARD" --rootfs "$T/rootfs-2.0.ext4" --version 2.0 --pki "$T/pki" \
        -o "$T/v2-verity.raucb" >/dev/null 2>"$T/mb.log" || fail "make-bundle verity: $(cat "$T/mb.log")"
    "$mb" --board "$other" --rootfs "$T/rootfs-2.0.ext4" --version 2.0 --pki "$T/pki" --format plain \
        -o "$T/other-board.raucb" >/dev/null 2>"$T/mb.log" || fail "make-bundle other board: $(cat "$T/mb.log")"
    "$mb" --board "$BOARD" --rootfs "$T/rootfs-2.0.ext4" --version 2.0 --pki "$T/foreign-pki" --format plain \
        -o "$T/foreign.raucb" >/dev/null 2>"$T/mb.log" || fail "make-bundle foreign CA: $(cat "$T/mb.log")"
    # The verity bundle cannot be installed here (no device-mapper, platform notes §6.5), but
    # the board's configuration, bundle formats and keyring path as they are, must accept it
    # and refuse a plain one.
    local strict="$T/strict/system.conf"
    rauc info --conf="$strict" "$T/v2-verity.raucb" >"$T/info" 2>"$T/info.log" ||
        fail "$BOARD: rauc info refuses the verity bundle: $(tail -n 1 "$T/info.log")"
    grep -q "^Bundle Format:[[:space:]]*verity" "$T/info" || fail "$BOARD: the verity bundle is $(grep '^Bundle Format' "$T/info")"
    if rauc info --conf="$strict" "$T/v2.raucb" >"$T/info" 2>"$T/info.log"; then
        fail "$BOARD: the board's system.conf accepts a plain bundle (bundle-formats)"
    fi
    grep -q "format 'plain' not allowed" "$T/info.log" ||
        fail "$BOARD: a plain bundle was refused, but not for its format: $(tr '\n' ' ' <"$T/info.log")"
    # No RTC: until NTP answers the clock can be years off; the certificates are still valid
    # at the bundle's signing time.
    faketime '2020-01-01 00:00:00' rauc info --conf="$strict" "$T/v2-verity.raucb" >"$T/info" 2>"$T/info.log" ||
        fail "$BOARD: with the clock at 2020 the verity bundle is refused (use-bundle-signing-time): $(tr '\n' ' ' <"$T/info.log" | grep -o 'signature verification failed.*' || tail -n 1 "$T/info.log")"
    printf 'ok: %s: scripts/make-bundle: plain bundles 2.0 and 3.0 (refused by the board'"'"'s own formats), a verity bundle the board accepts, also with its clock at 2020\n' "$BOARD"

    # The factory image: 1.0 in slot A, B empty, a fresh U-Boot environment.
    dd if="$T/rootfs-1.0.ext4" of="$T/slots/rootfs.0.img" conv=notrunc status=none
    power_on A "first power-on"
    boot_linux factory
    printf 'ok: %s: refused a bundle for %s (compatible) and one signed by a foreign CA\n' "$BOARD" "$other"
    expect_status booted A
    expect_status boot_primary rootfs.1
    expect_status slot:rootfs.1:slot_status.bundle.version 2.0
    expect_release rootfs.1 2.0
    expect_release rootfs.0 1.0
    [ "$(env_of BOOT_ORDER)" = "B A" ] || fail "$BOARD: BOOT_ORDER after install is '$(env_of BOOT_ORDER)'"
    printf 'ok: %s: installed 2.0 from A: rootfs.1 primary, holds 2.0, BOOT_ORDER "B A"\n' "$BOARD"

    power_on B "reboot after the install"
    boot_linux healthy
    expect_status booted B
    expect_status boot_primary rootfs.1
    expect_status slot:rootfs.1:boot_status good
    [ "$(env_of BOOT_B_LEFT)" = 3 ] || fail "$BOARD: mark-good left BOOT_B_LEFT=$(env_of BOOT_B_LEFT)"
    power_on B "second reboot after mark-good"
    printf 'ok: %s: boot.cmd boots B, mark-good restores its tries, B stays\n' "$BOARD"

    boot_linux healthy-update
    expect_status boot_primary rootfs.0
    expect_release rootfs.0 3.0
    power_on A "reboot after the second install"
    boot_linux unhealthy
    expect_status booted A
    expect_status boot_primary rootfs.1
    power_on B "reboot after a failed health gate"
    expect_release rootfs.1 2.0
    boot_linux healthy
    expect_status booted B
    expect_status slot:rootfs.0:boot_status bad
    printf 'ok: %s: 3.0 into A, health gate fails (mark-bad) -> boot.cmd back to B with 2.0\n' "$BOARD"

    # The same update, and this time the new OS never gets as far as its health gate.
    boot_linux healthy-update
    expect_status boot_primary rootfs.0
    local n
    for n in 1 2 3; do
        power_on A "never marked good, boot $n"
    done
    boot_linux look
    expect_status booted A
    power_on B "fourth power-on without mark-good"
    boot_linux look
    expect_status booted B
    expect_status boot_primary rootfs.1
    printf 'ok: %s: 3.0 never marked good: 3 boots of A, the 4th boots B\n' "$BOARD"
}

# ---------------------------------------------------------------------------------------

if [ "${1:-}" = --in-boot ]; then
    in_boot "$2"
    exit 0
fi

only_board="" BOOT_CMD="$ROOT/board/common/boot.cmd" board_conf=""
while [ $# -gt 0 ]; do
    case $1 in
        --board) only_board=$2 && shift 2 ;;
        --boot-cmd) BOOT_CMD=$2 && shift 2 ;;
        --board-conf) board_conf=$2 && shift 2 ;;
        *) fail "unknown argument $1 (usage: $0 [--board BOARD] [--boot-cmd FILE] [--board-conf FILE])" ;;
    esac
done

# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
ensure_image_tools
ensure_apt faketime
[ "$(id -u)" -eq 0 ] || fail "needs root: unshare -m and the loop device RAUC installs through"

WORK=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
BOARDS=()
for conf in "$ROOT"/board/*/system.conf; do
    BOARDS+=("$(basename "$(dirname "$conf")")")
done

if [ -n "$only_board" ]; then
    roundtrip "$only_board"
    exit 0
fi

for board in "${BOARDS[@]}"; do
    roundtrip "$board"
done

# The checks can fail: a boot.cmd that ignores BOOT_ORDER keeps booting A after the install,
# and a rewrite that touches the compatible is refused before anything runs.
first=${BOARDS[0]}
# shellcheck disable=SC2016 # the ${BOOT_ORDER} of boot.cmd, not of this shell
sed 's/for slot in ${BOOT_ORDER}/for slot in A B/' "$ROOT/board/common/boot.cmd" >"$WORK/ignores-order.cmd"
if "$SELF" --board "$first" --boot-cmd "$WORK/ignores-order.cmd" >"$WORK/mutant.log" 2>&1; then
    fail "the round trip passes with a boot.cmd that ignores BOOT_ORDER"
fi
grep -q "booted slot 'A', expected B" "$WORK/mutant.log" ||
    fail "the round trip failed on a boot.cmd that ignores BOOT_ORDER, but not where expected: $(tail -n 3 "$WORK/mutant.log")"
printf 'ok: caught a boot.cmd that ignores BOOT_ORDER\n'
if REWRITE_MUTANT="system:compatible:tinylcm-other" "$SELF" --board "$first" >"$WORK/mutant.log" 2>&1; then
    fail "the round trip accepts a test system.conf with another compatible"
fi
grep -q "changes \[system\] compatible" "$WORK/mutant.log" ||
    fail "a changed compatible failed, but not at the rewrite check: $(tail -n 3 "$WORK/mutant.log")"
printf 'ok: caught a test system.conf whose compatible differs from the board'"'"'s\n'

# The board's own file, broken: each must fail at the check that guards it.
board_mutant() {
    local what=$1 expr=$2 pattern=$3 conf="$WORK/mutant-system.conf"
    sed "$expr" "$ROOT/board/$first/system.conf" >"$conf"
    ! cmp -s "$conf" "$ROOT/board/$first/system.conf" || fail "the mutant '$what' changes nothing"
    if "$SELF" --board "$first" --board-conf "$conf" >"$WORK/mutant.log" 2>&1; then
        fail "the round trip passes with a system.conf $what"
    fi
    grep -Eq "^FAIL: .*$pattern" "$WORK/mutant.log" ||
        fail "a system.conf $what failed, but not where expected: $(tail -n 3 "$WORK/mutant.log")"
    printf 'ok: caught a system.conf %s: %s\n' "$what" "$(grep -m1 '^FAIL' "$WORK/mutant.log" | cut -c7-220)"
}
board_mutant "whose keyring path is /etc/rauc/keyring.pem (where the image puts nothing)" \
    's|^path=.*|path=/etc/rauc/keyring.pem|' "refuses the verity bundle"
board_mutant "without bundle-formats=-plain" '/^bundle-formats=/d' "accepts a plain bundle"
board_mutant "without use-bundle-signing-time" '/^use-bundle-signing-time=/d' "clock at 2020"
printf 'rauc-roundtrip: all checks passed\n'
