#!/usr/bin/env bash
# Real U-Boot runs board/common/boot.cmd (run by `./scripts/test image`). boot-counters.sh
# checks the script's logic under a shell simulator; this check runs it in Debian's U-Boot
# 2023.01 for QEMU (qemu_arm64) under qemu-system-aarch64 -M virt, so hush, setexpr, saveenv,
# fdt and load are U-Boot's own:
#  * a disk with the partitions of board/common/layout.toml: boot (vfat: boot.scr made by
#    mkimage from boot.cmd) | rootfs A | rootfs B (ext4, each with the kernel at boot/Image,
#    where boot.cmd loads it) | data;
#  * U-Boot's environment in the second flash bank (qemu_arm64 keeps it there), read and
#    written between power-ons with fw_printenv/fw_setenv (libubootenv, what RAUC's
#    `bootloader=uboot` backend uses);
#  * three power-ons, each until the kernel shows its command line (there is no root file
#    system to mount; the kernel's "Kernel command line:" is what U-Boot handed over):
#    1. a fresh device (no saved environment): slot A, its counter 3 -> 2 saved;
#    2. after an update made B primary (what RAUC writes: BOOT_ORDER="B A", BOOT_B_LEFT=3),
#       with a firmware command line in the device tree as the Pi firmware puts it there
#       (the image's cmdline.txt): slot B, 3 -> 2, the firmware's arguments kept;
#    3. after B was marked bad (BOOT_B_LEFT=0): back to slot A, 2 -> 1.
# Every boot checks U-Boot's own message, `root=`/`rauc.slot=` on the kernel command line
# against layout.toml, and the counters U-Boot saved.
# Board variables boot.cmd expects from U-Boot (devtype, devnum, fdt_addr, kernel_addr_r)
# come from U-Boot's distro boot and qemu_arm64 environment; the script is not modified.
# Last, that it can fail: a copy of boot.cmd that never saves the spent try must fail the
# first power-on (the check runs itself with that copy: `qemu-uboot.sh BOOT_CMD` runs the
# power-ons with another script and skips this step).
# Where qemu-system-aarch64 or U-Boot for QEMU cannot be installed: skipped with a message
# when run by hand, a failure under ./scripts/test (check.sh's missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
# shellcheck source=scripts/lib/check.sh
. "$ROOT/scripts/lib/check.sh"
# shellcheck source=scripts/lib/qemu-guest.sh
. "$ROOT/scripts/lib/qemu-guest.sh"
# shellcheck source=scripts/lib/bitbake.sh
. "$ROOT/scripts/lib/bitbake.sh"
# shellcheck source=scripts/lib/rpi-boot.sh
. "$ROOT/scripts/lib/rpi-boot.sh"

QEMU_PID=""
check_cleanup_hook() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
}
check_init

BOOT_CMD=${1:-$ROOT/board/common/boot.cmd}
UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin
if ! (ensure_qemu_system && ensure_apt u-boot-qemu libubootenv-tool) >"$WORK/install.log" 2>&1; then
    cat "$WORK/install.log" >&2
    missing "qemu-system-aarch64 or U-Boot for QEMU (could not be installed, see above)" \
        "apt-get install qemu-system-arm (8 or later; Debian: from backports) u-boot-qemu libubootenv-tool"
fi
ensure_image_tools
require_cmds qemu-system-aarch64 mkimage mkfs.fat mcopy mke2fs sfdisk fw_printenv fw_setenv
[ -f "$UBOOT" ] || fail "u-boot-qemu installed but $UBOOT is missing"

# ------------------------------------------------------------------ the disk

KERNEL=$(guest_kernel)/Image
mkimage -A arm64 -O linux -T script -C none -n "tinylcm boot.cmd" \
    -d "$BOOT_CMD" "$WORK/boot.scr" >/dev/null

LAYOUT=$ROOT/board/common/layout.toml
layout_partitions "$LAYOUT" >"$WORK/layout"

# Partition number of SLOT per layout.toml.
slot_part() {
    awk -v s="$1" '$5 == s { print $1 }' "$WORK/layout"
}

DISK=$WORK/disk.img
guest_disk "$LAYOUT" "$DISK" "$WORK/boot.scr" "$KERNEL"
printf 'ok: disk with the layout of layout.toml: %s\n' \
    "$(awk '{ printf "%sp%s %s %s %s MiB", sep, $1, $2, $3, $4; sep = " | " }' "$WORK/layout")"

# ------------------------------------------------------------------ environment and power-ons

# qemu_arm64 keeps its environment at the start of the second flash bank (64 MiB), 256 KiB.
FLASH=$WORK/flash1.img
truncate -s 64M "$FLASH"
printf '%s 0x0 0x40000 0x40000\n' "$FLASH" >"$WORK/fw_env.config"
envget() {
    fw_printenv -c "$WORK/fw_env.config" -n "$1" 2>/dev/null
}
envset() {
    fw_setenv -c "$WORK/fw_env.config" "$@"
}

# One power-on, until the kernel gives up on the root file system (it has no driver or
# no disk for /dev/mmcblk0pN on virt) or U-Boot resets; the console goes to $WORK/console.
power_on() {
    : >"$WORK/console"
    qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 1 -m 1024 -nographic -no-reboot -nic none \
        -bios "$UBOOT" \
        -drive if=pflash,unit=1,format=raw,file="$FLASH" \
        -drive if=virtio,format=raw,file="$DISK" </dev/null >"$WORK/console" 2>&1 &
    QEMU_PID=$!
    local waited=0
    while kill -0 "$QEMU_PID" 2>/dev/null && [ "$waited" -lt 90 ]; do
        grep -Eaq 'Waiting for root device|end Kernel panic|resetting \.\.\.' "$WORK/console" && break
        sleep 1
        waited=$((waited + 1))
    done
    kill "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
    sed -i 's/\r$//' "$WORK/console"
    [ "$waited" -lt 90 ] || fail "$1: no kernel start or reset within 90 s"
}

# expect_boot WHAT SLOT A_LEFT B_LEFT FIRMWARE_ARGS: one power-on must boot SLOT, hand the
# kernel FIRMWARE_ARGS plus the slot's root=/rauc.slot=, and save the counters.
expect_boot() {
    local what=$1 slot=$2 a=$3 b=$4 fwargs=$5 part want got
    power_on "$what"
    grep -aq "^tinylcm: booting slot $slot (tries left: A=$a B=$b)$" "$WORK/console" ||
        fail "$what: U-Boot did not report booting slot $slot with A=$a B=$b left"
    part=$(slot_part "$slot")
    want="${fwargs:+$fwargs }root=/dev/mmcblk0p$part rauc.slot=$slot"
    got=$(sed -n 's/^\[ *[0-9.]*\] Kernel command line: *//p' "$WORK/console")
    [ -n "$got" ] || fail "$what: the kernel never started (no 'Kernel command line' on the console)"
    [ "$got" = "$want" ] || fail "$what: kernel command line is '$got', expected '$want'"
    if [ "$(envget BOOT_A_LEFT)" != "$a" ] || [ "$(envget BOOT_B_LEFT)" != "$b" ]; then
        fail "$what: saved counters A=$(envget BOOT_A_LEFT) B=$(envget BOOT_B_LEFT), expected A=$a B=$b"
    fi
    printf 'ok: %s: U-Boot booted slot %s, saved A=%s B=%s; kernel command line: %s\n' \
        "$what" "$slot" "$a" "$b" "$got"
}

# 1. Fresh device: no environment saved yet, no firmware command line in QEMU's device tree.
expect_boot "first boot" A 2 3 ""
[ "$(envget BOOT_ORDER)" = "A B" ] || fail "first boot: BOOT_ORDER saved as '$(envget BOOT_ORDER)'"

# From here on the test plays the Pi firmware: before U-Boot's boot command, the firmware's
# command line (the image's cmdline.txt, as rpi-cmdline composes it: scripts/lib/rpi-boot.sh;
# serial0 is the Pi's alias, so the QEMU console is added) goes into the device tree's
# /chosen/bootargs, where boot.cmd reads it. Only virtio is scanned and autoboot does not
# wait, to keep power-ons short.
# shellcheck disable=SC2119 # no arguments: the image's own distro conf and bbappend
fw_cmdline="$(firmware_cmdline) console=ttyAMA0"
envset firmware_cmdline "$fw_cmdline"
# shellcheck disable=SC2016 # U-Boot expands these, not bash
envset bootcmd 'fdt addr ${fdt_addr}; fdt resize; fdt set /chosen bootargs "${firmware_cmdline}"; run distro_bootcmd'
envset bootdelay 0
envset boot_targets virtio0

# 2. RAUC installed into B and made it primary.
envset BOOT_ORDER "B A"
envset BOOT_B_LEFT 3
expect_boot "update to B" B 2 2 "$fw_cmdline"

# 3. B failed its health gate: RAUC marked it bad.
envset BOOT_B_LEFT 0
expect_boot "B marked bad" A 1 0 "$fw_cmdline"

[ $# -eq 0 ] || exit 0

# A boot.cmd without its saveenv calls still boots A, but the spent try is never stored: a
# slot that hangs would be retried for ever.
expect_failure_on_copy "a boot.cmd without saveenv" "$ROOT/board/common/boot.cmd" \
    '/^ *saveenv$/d' "saved counters A= B=, expected A=2 B=3"
