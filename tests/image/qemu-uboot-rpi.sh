#!/usr/bin/env bash
# The Pi's own U-Boot runs board/common/boot.cmd (run by `./scripts/test image`).
# qemu-uboot.sh uses U-Boot for QEMU's virt board; this check uses the U-Boot the image builds:
# release v2026.01 (oe-core wrynose's recipe), rpi_arm64_defconfig (meta-raspberrypi's
# UBOOT_MACHINE for both boards) plus meta-tinylcm's config fragments, built once into the
# cache by scripts/lib/rpi-boot.sh from a clone of U-Boot (TINYLCM_UBOOT_GIT, else
# source.denx.de); a fragment line U-Boot's Kconfig drops fails that build. Where the source
# cannot be had it says so and falls back to Debian's rpi_arm64 build (2023.01, without our
# fragments). It runs on qemu-system-aarch64 -M raspi3b with the Raspberry Pi Zero 2 W device
# tree, so the Pi-specific parts are real:
#  * an SD card with the partitions of board/common/layout.toml, seen by U-Boot as `mmc 0`
#    (boot.scr is found on partition 1, with devtype/devnum set);
#  * the boot partition holds what the image's does: U-Boot under the name
#    RPI_EXTRA_IMAGE_BOOT_FILES gives it (kernel8.img), boot.scr and the board's config.txt,
#    and U-Boot is started the way the firmware would find it: the file config.txt's kernel=
#    names (default kernel8.img with arm_64bit=1), taken from that partition; a config.txt
#    that names a file the image does not put there fails before QEMU starts
#    (scripts/lib/rpi-boot.sh reads both from the pinned meta-raspberrypi);
#  * the environment on the FAT partition, read and written between power-ons with
#    fw_printenv/fw_setenv through board/common/fw_env.config (only the device paths point at
#    copies of the files: offsets and sizes are the board file's), as RAUC does: with the
#    image's U-Boot both files of its redundant environment (uboot.env and uboot-redund.env,
#    written in turn; both must end up valid); Debian's build keeps one copy in the
#    non-redundant format, so then only the first line is used;
#  * QEMU plays the rest of the firmware: it hands over the device tree, with the image's
#    cmdline.txt (rpi-cmdline's knobs, scripts/lib/rpi-boot.sh) as /chosen/bootargs, at the
#    address boot.cmd reads as ${fdt_addr}.
# Loading the 33 MB Debian kernel over the emulated SD controller takes ~30 s, so each slot
# holds a 4 KiB stand-in arm64 Image (a valid header, code that only spins). What the kernel
# would get is read from the guest's memory once U-Boot has jumped to it: the device tree
# U-Boot handed over (QMP pmemsave), whose /chosen/bootargs must be the firmware's command
# line plus root=/dev/mmcblk0pN rauc.slot=X of the chosen slot.
# Four power-ons: a fresh card boots A (3 -> 2); after an update made B primary, B; after B
# was marked bad, A again; with no tries left anywhere, B (first in BOOT_ORDER) without a
# try and without writing the environment. Every boot checks U-Boot's message, the
# handed-over bootargs and the saved counters. Last, that it can fail: a copy of boot.cmd
# that drops rauc.slot= from the command line must fail the first power-on, and a config.txt
# with kernel=u-boot.bin (a name the image does not use) must fail before it (the check runs
# itself with each copy: `qemu-uboot-rpi.sh FILE` uses another boot.cmd, or config.txt when
# FILE is named *config.txt, and skips this step).
# Where qemu-system-aarch64 cannot be installed: skipped with a message when run by hand, a
# failure under ./scripts/test (check.sh's missing).
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

# The Zero 2 W: its device tree is the one QEMU's raspi3b gets.
MACHINE=raspberrypi0-2w-64
BOOT_CMD=$ROOT/board/common/boot.cmd
CONFIG_TXT=$ROOT/board/$MACHINE/config.txt
case ${1:-} in
    "") ;;
    *config.txt) CONFIG_TXT=$1 ;;
    *) BOOT_CMD=$1 ;;
esac
QEMU_PID=""
check_cleanup_hook() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
}
check_init

if ! ensure_qemu_system >"$WORK/install.log" 2>&1; then
    cat "$WORK/install.log" >&2
    missing "qemu-system-aarch64 (could not be installed, see above)" \
        "apt-get install qemu-system-arm, version 8 or later (Debian: from backports)"
fi
ensure_image_tools
ensure_apt libubootenv-tool device-tree-compiler
require_cmds qemu-system-aarch64 mkimage mcopy fw_printenv fw_setenv fdtget python3

# ------------------------------------------------------------------ U-Boot, kernel stand-in, SD

# The image's U-Boot (scripts/lib/rpi-boot.sh: the release and configuration the image
# builds, with meta-tinylcm's fragments, so a redundant environment) when its source can be
# had; else Debian's rpi_arm64 build of an older release, without our fragments, with a
# note saying what is then not covered.
# (A build that goes wrong, such as a fragment line Kconfig dropped, stops the check there.)
if image_uboot "$WORK/u-boot.bin"; then
    UBOOT="U-Boot $IMAGE_UBOOT_TAG (the image's: rpi_arm64 + meta-tinylcm's fragments)"
    REDUNDANT=yes
else
    printf 'note: the image'"'"'s U-Boot cannot be built here (no source); Debian'"'"'s rpi_arm64 build runs instead, and the redundant environment is not exercised\n'
    guest_uboot_rpi "$WORK/u-boot.bin"
    UBOOT="U-Boot 2023.01 (Debian's rpi_arm64)"
    REDUNDANT=no
fi
DTB=$(guest_kernel)/zero2w.dtb
mkimage -A arm64 -O linux -T script -C none -n "tinylcm boot.cmd" \
    -d "$BOOT_CMD" "$WORK/boot.scr" >/dev/null

# The stand-in kernel: an arm64 Image header (Documentation/arch/arm64/booting.rst) that
# U-Boot's booti accepts, whose first instruction branches to itself.
python3 - "$WORK/Image" <<'PY'
import struct, sys
header = struct.pack(
    "<IIQQQQQQII",
    0x14000000,  # code0: "b ." (spin)
    0,           # code1
    0,           # text_offset
    4096,        # image_size
    0xA,         # flags: little-endian, 4 KiB pages, may sit anywhere in RAM (as Linux's do)
    0, 0, 0,     # reserved
    0x644D5241,  # magic "ARM\x64"
    0,           # reserved (no PE header)
)
with open(sys.argv[1], "wb") as f:
    f.write(header.ljust(4096, b"\0"))
PY

LAYOUT=$ROOT/board/common/layout.toml
layout_partitions "$LAYOUT" >"$WORK/layout"
slot_part() {
    awk -v s="$1" '$5 == s { print $1 }' "$WORK/layout"
}
SD=$WORK/sd.img
guest_disk "$LAYOUT" "$SD" "$WORK/boot.scr" "$WORK/Image"
# QEMU's SD card must be a power of two in size; the space after the last partition is unused.
size=$(stat -c %s "$SD")
pow=$((1024 * 1024))
while [ "$pow" -lt "$size" ]; do pow=$((pow * 2)); done
truncate -s "$pow" "$SD"
BOOT_PART_OFFSET=$((1024 * 1024)) # partition 1 starts at 1 MiB (guest_disk)
[ "$(awk 'NR == 1 { print $3 }' "$WORK/layout")" = vfat ] || fail "layout.toml: partition 1 is not the vfat boot partition"
BOOT_FAT="$SD@@$BOOT_PART_OFFSET"

# The image's boot files, named as RPI_EXTRA_IMAGE_BOOT_FILES names them (`source;name`):
# U-Boot and boot.scr (guest_disk put boot.scr there already), and the board's config.txt.
uboot_boot_files "$MACHINE" >"$WORK/boot-files" || fail "cannot read RPI_EXTRA_IMAGE_BOOT_FILES for $MACHINE"
while IFS=';' read -r source name; do
    case $source in
        u-boot.bin) mcopy -o -i "$BOOT_FAT" "$WORK/u-boot.bin" "::${name:-$source}" ;;
        boot.scr) [ "${name:-boot.scr}" = boot.scr ] || fail "IMAGE_BOOT_FILES renames boot.scr to $name; U-Boot looks for boot.scr" ;;
        *) fail "RPI_EXTRA_IMAGE_BOOT_FILES has $source, which this check does not know" ;;
    esac
done <"$WORK/boot-files"
mcopy -o -i "$BOOT_FAT" "$CONFIG_TXT" ::config.txt
# What the firmware does: read config.txt from the partition and start the file it names.
mcopy -n -i "$BOOT_FAT" ::config.txt "$WORK/firmware-config.txt"
KERNEL_FILE=$(firmware_kernel "$WORK/firmware-config.txt")
mcopy -n -i "$BOOT_FAT" "::$KERNEL_FILE" "$WORK/firmware-kernel" 2>/dev/null ||
    fail "the firmware finds no $KERNEL_FILE on the boot partition (config.txt names it; the partition holds: $(mdir -b -i "$BOOT_FAT" :: | tr '\n' ' '))"
ok "boot partition: $(paste -sd' ' "$WORK/boot-files") config.txt; the firmware starts $KERNEL_FILE (U-Boot)"

# ------------------------------------------------------------------ the environment, as RAUC sees it

# board/common/fw_env.config with its device paths pointing at copies of the environment
# files taken out of the card's FAT partition (on the device the partition is mounted at
# /boot): both files with the image's U-Boot; with Debian's, which keeps one copy in the
# non-redundant format, only the first line (see above).
ENVFILE=$WORK/uboot.env
grep -q '^/boot/uboot.env[[:space:]]' "$ROOT/board/common/fw_env.config" ||
    fail "board/common/fw_env.config does not name /boot/uboot.env"
if [ "$REDUNDANT" = yes ]; then
    grep -v '^[[:space:]]*#' "$ROOT/board/common/fw_env.config" | awk 'NF >= 3' |
        sed "s|^/boot/|$WORK/|" >"$WORK/fw_env.config"
else
    grep '^/boot/uboot.env[[:space:]]' "$ROOT/board/common/fw_env.config" |
        sed "s|^/boot/uboot.env|$ENVFILE|" >"$WORK/fw_env.config"
fi
# The files fw_env.config names, as paths here and names on the FAT partition.
mapfile -t ENVFILES < <(awk '{ print $1 }' "$WORK/fw_env.config")
ENV_SIZE=$(awk 'NR == 1 { print $3 }' "$WORK/fw_env.config")
env_pull() {
    local f found=""
    for f in "${ENVFILES[@]}"; do
        rm -f "$f"
        if mcopy -n -i "$BOOT_FAT" "::$(basename "$f")" "$f" 2>/dev/null; then
            found=1
        else
            # A redundant U-Boot writes one file at its first save and the other at the next;
            # until then the missing one reads as an invalid copy.
            head -c $((ENV_SIZE)) /dev/zero >"$f"
        fi
    done
    [ -n "$found" ] || fail "no environment on the boot partition ($(printf '%s ' "${ENVFILES[@]##*/}")): U-Boot never saved it"
}
envget() {
    fw_printenv -c "$WORK/fw_env.config" -n "$1" 2>/dev/null
}
envset() {
    local f
    env_pull
    fw_setenv -c "$WORK/fw_env.config" "$@"
    for f in "${ENVFILES[@]}"; do
        mcopy -o -i "$BOOT_FAT" "$f" "::$(basename "$f")"
    done
}
# The environment files' bytes on the card, to tell whether a power-on wrote any of them.
env_fingerprint() {
    env_pull
    cat "${ENVFILES[@]}" | sha256sum
}

# ------------------------------------------------------------------ power-ons

# shellcheck disable=SC2119 # no arguments: the image's own distro conf and bbappend
FIRMWARE_CMDLINE=$(firmware_cmdline) || fail "cannot evaluate rpi-cmdline's CMDLINE"


# Ask QEMU (QMP on a Unix socket) to save guest memory to a file, then to quit.
qmp_save_and_quit() { # SOCKET ADDRESS SIZE FILE
    python3 - "$@" <<'PY'
import json, socket, sys
sock, addr, size, path = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sock)
f = s.makefile("rw")
json.loads(f.readline())  # greeting
def call(cmd, **args):
    f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
    f.flush()
    while True:
        reply = json.loads(f.readline())
        if "error" in reply:
            sys.exit(f"QMP {cmd}: {reply['error']}")
        if "return" in reply:
            return reply["return"]
call("qmp_capabilities")
call("pmemsave", val=addr, size=size, filename=path)
try:
    call("quit")
except (OSError, ValueError):
    pass  # QEMU closes the socket as it quits
PY
}

# One power-on until U-Boot has jumped to the kernel; saves the device tree it handed over
# to $WORK/handed.dtb.
power_on() {
    local what=$1 waited=0 fdt
    : >"$WORK/console"
    rm -f "$WORK/qmp.sock" "$WORK/handed.dtb"
    # raspi3b: the first serial port is the PL011, the second the mini UART that the Zero 2 W's
    # device tree makes the console (stdout-path = serial1 on these boards).
    qemu-system-aarch64 -M raspi3b -kernel "$WORK/firmware-kernel" -dtb "$DTB" \
        -append "$FIRMWARE_CMDLINE" -drive if=sd,format=raw,file="$SD" \
        -display none -serial null -serial stdio -no-reboot \
        -qmp unix:"$WORK/qmp.sock",server=on,wait=off </dev/null >"$WORK/console" 2>&1 &
    QEMU_PID=$!
    while kill -0 "$QEMU_PID" 2>/dev/null && [ "$waited" -lt 90 ]; do
        grep -aq 'Starting kernel \.\.\.' "$WORK/console" && break
        grep -aq 'resetting \.\.\.' "$WORK/console" && break
        sleep 1
        waited=$((waited + 1))
    done
    sed -i 's/\r$//' "$WORK/console"
    if grep -aq 'Starting kernel \.\.\.' "$WORK/console"; then
        # Where the kernel gets its device tree: U-Boot may copy the firmware's blob elsewhere
        # before booting ("Loading Device Tree to ..."; bootargs are set in that copy).
        fdt=$(sed -n 's/.*Loading Device Tree to \([0-9a-fA-F]*\),.*/0x\1/p' "$WORK/console" | tail -n1)
        [ -n "$fdt" ] ||
            fdt=$(sed -n 's/.*Booting using the fdt blob at \(0x[0-9a-fA-F]*\).*/\1/p' "$WORK/console" | tail -n1)
        [ -n "$fdt" ] || fail "$what: U-Boot started the kernel without saying where the device tree is"
        # The stand-in spins at once; a second lets U-Boot's last writes land.
        sleep 1
        qmp_save_and_quit "$WORK/qmp.sock" "$fdt" 131072 "$WORK/handed.dtb" ||
            fail "$what: could not read the device tree from the guest"
    fi
    kill "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
    [ "$waited" -lt 90 ] || fail "$what: U-Boot did not start a kernel within 90 s"
}

# expect_boot WHAT SLOT A_LEFT B_LEFT: one power-on must boot SLOT with the firmware's
# command line plus the slot's root=/rauc.slot= and save the counters in uboot.env.
expect_boot() {
    local what=$1 slot=$2 a=$3 b=$4 want got
    power_on "$what"
    grep -aq "^tinylcm: booting slot $slot (tries left: A=$a B=$b)$" "$WORK/console" ||
        fail "$what: U-Boot did not report booting slot $slot with A=$a B=$b left"
    [ -s "$WORK/handed.dtb" ] || fail "$what: U-Boot never started the kernel"
    want="$FIRMWARE_CMDLINE root=/dev/mmcblk0p$(slot_part "$slot") rauc.slot=$slot"
    got=$(fdtget "$WORK/handed.dtb" /chosen bootargs) ||
        fail "$what: no /chosen/bootargs in the device tree U-Boot handed over"
    [ "$got" = "$want" ] || fail "$what: bootargs handed to the kernel are '$got', expected '$want'"
    env_pull
    if [ "$(envget BOOT_A_LEFT)" != "$a" ] || [ "$(envget BOOT_B_LEFT)" != "$b" ]; then
        fail "$what: uboot.env holds A=$(envget BOOT_A_LEFT) B=$(envget BOOT_B_LEFT), expected A=$a B=$b"
    fi
    printf 'ok: %s: %s booted slot %s, environment A=%s B=%s; bootargs: %s\n' \
        "$what" "$UBOOT" "$slot" "$a" "$b" "$got"
}

# 1. A fresh card: no uboot.env yet; U-Boot starts from its built-in environment.
expect_boot "first boot" A 2 3
[ "$(envget BOOT_ORDER)" = "A B" ] || fail "first boot: BOOT_ORDER saved as '$(envget BOOT_ORDER)'"

# 2. RAUC installed into B and made it primary (what its uboot backend writes).
envset BOOT_ORDER "B A"
envset BOOT_B_LEFT 3
expect_boot "update to B" B 2 2

# 3. B failed its health gate: RAUC marked it bad.
envset BOOT_B_LEFT 0
expect_boot "B marked bad" A 1 0

# 4. A's tries ran out too (its gate failed without marking it: a confirmed slot): the first
# slot of BOOT_ORDER boots without a try, and nothing is written (no A/B cycle).
envset BOOT_A_LEFT 0
spent=$(env_fingerprint)
power_on "both spent"
grep -aq "^tinylcm: no slot has tries left; booting slot B without a try" "$WORK/console" ||
    fail "both spent: U-Boot did not boot B without a try"
got=$(fdtget "$WORK/handed.dtb" /chosen bootargs 2>/dev/null) || fail "both spent: U-Boot never started the kernel"
[ "$got" = "$FIRMWARE_CMDLINE root=/dev/mmcblk0p$(slot_part B) rauc.slot=B" ] || fail "both spent: bootargs '$got'"
[ "$(env_fingerprint)" = "$spent" ] || fail "both spent: U-Boot wrote its environment (A=$(envget BOOT_A_LEFT) B=$(envget BOOT_B_LEFT))"
ok "both spent: $UBOOT booted slot B (first in BOOT_ORDER) without a try; environment unchanged"

# The image's U-Boot saved into both files in turn (each power-on that spent a try saved once):
# both are valid environments, written by U-Boot and fw_setenv alike.
if [ "$REDUNDANT" = yes ]; then
    for f in "${ENVFILES[@]}"; do
        mcopy -n -i "$BOOT_FAT" "::$(basename "$f")" "$WORK/check.env" 2>/dev/null ||
            fail "U-Boot never wrote $(basename "$f"): its environment is not redundant"
        # One copy read alone, in the redundant layout (CRC, flag byte, data).
        python3 - "$WORK/check.env" <<'PY' || fail "$(basename "$f") is not a valid redundant environment copy"
import binascii, struct, sys
data = open(sys.argv[1], "rb").read()
crc, = struct.unpack("<I", data[:4])
sys.exit(0 if binascii.crc32(data[5:]) & 0xffffffff == crc else 1)
PY
    done
    ok "the image's U-Boot keeps its environment in $(printf '%s ' "${ENVFILES[@]##*/}")(redundant, both valid)"
fi

[ $# -eq 0 ] || exit 0

# RAUC cannot tell which slot booted without rauc.slot= (root= alone is ambiguous to it).
# shellcheck disable=SC2016 # the ${...} is boot.cmd's text, not bash's
expect_failure_on_copy "a boot.cmd without rauc.slot=" "$ROOT/board/common/boot.cmd" \
    's/ rauc\.slot=\${tinylcm_slot}//' \
    "first boot: bootargs handed to the kernel are '.* root=/dev/mmcblk0p2'"
# The firmware would look for a file meta-raspberrypi does not put on the partition.
expect_failure_on_copy "a config.txt with kernel=u-boot.bin" "$CONFIG_TXT" \
    's/^arm_64bit=1$/arm_64bit=1\nkernel=u-boot.bin/' "the firmware finds no u-boot.bin on the boot partition"
