#!/usr/bin/env bash
# scripts/flash against a loop device (run by `./scripts/test image`): a small .wic.bz2 with
# its bmap, made like the build's (MBR, vfat boot + ext4, no mounting), is refused on a disk
# that is not removable, on a mounted disk and on the disk holding / (both even with
# --force), without a typed confirmation, and is written with --force --yes, once with the
# bmap and once without (readback), and reads back identical. A missing image and a regular
# file as device give clear errors. Where no loop device can be attached the parts without
# one run, then the rest is skipped with a message when run by hand, a failure under
# ./scripts/test (check.sh's missing). The refusal of this machine's own system disk is tried
# only where / is on a block device (not in an overlay-rooted container): not a dependency
# anyone can install, so that one step says so and the check goes on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
# shellcheck source=scripts/lib/check.sh
. "$ROOT/scripts/lib/check.sh"
ensure_image_tools
FLASH="$ROOT/scripts/flash"

LOOP=""
check_cleanup_hook() {
    [ -z "$LOOP" ] || losetup -d "$LOOP" 2>/dev/null || true
}
check_init


# Run scripts/flash expecting a refusal whose message matches PATTERN.
expect_refusal() {
    local what=$1 pattern=$2
    shift 2
    if "$@" >"$WORK/out" 2>&1; then
        fail "scripts/flash accepted $what: $(cat "$WORK/out")"
    fi
    grep -Eq "$pattern" "$WORK/out" ||
        fail "scripts/flash refused $what, but not with '$pattern': $(cat "$WORK/out")"
    printf 'ok: refused %s: %s\n' "$what" "$(tr -d '\r' <"$WORK/out" | grep -m1 -o 'error:.*' | cut -c1-110)"
}

# The test image: 20 MiB, MBR with a vfat boot partition (1-9 MiB) and an ext4 one (9-20 MiB)
# built from folders, placed with dd; 4 MiB at the end stay unmapped so the bmap matters.
make_image() {
    local img="$WORK/test.wic"
    truncate -s 24M "$img"
    printf 'label: dos\nstart=2048, size=16384, type=c\nstart=18432, size=22528, type=83\n' |
        sfdisk -q "$img"
    mkdir -p "$WORK/bootfs" "$WORK/rootfs/etc"
    printf 'enable_uart=1\n' >"$WORK/bootfs/config.txt"
    head -c 3145728 /dev/urandom >"$WORK/rootfs/etc/payload"
    printf 'flash test\n' >"$WORK/rootfs/etc/tinylcm-release"
    mkfs.vfat -C -n BOOT "$WORK/boot.vfat" 8192 >/dev/null
    mcopy -i "$WORK/boot.vfat" "$WORK/bootfs/config.txt" ::config.txt
    mke2fs -q -t ext4 -d "$WORK/rootfs" "$WORK/root.ext4" 11M >/dev/null
    dd if="$WORK/boot.vfat" of="$img" bs=512 seek=2048 conv=notrunc status=none
    dd if="$WORK/root.ext4" of="$img" bs=512 seek=18432 conv=notrunc status=none
    bmaptool -q create -o "$WORK/test.wic.bmap" "$img"
    bzip2 -k "$img"
    printf 'ok: test image test.wic.bz2 with bmap (%s)\n' "$(python3 -c '
import sys, xml.etree.ElementTree as ET
b = ET.parse(sys.argv[1]).getroot()
print(b.findtext("MappedBlocksCount").strip(), "of", b.findtext("BlocksCount").strip(), "blocks mapped")
' "$WORK/test.wic.bmap")"
}

# Fill the target with a pattern that is not the image, so a readback proves the write.
reset_target() {
    head -c $((32 << 20)) /dev/zero | tr '\0' '\252' | dd of="$LOOP" bs=1M status=none conv=fsync
}

# The device reads back as the image: every byte of it, or with BMAP only the mapped ranges
# (what bmaptool writes; the rest of a card keeps whatever it held).
reads_back_identical() {
    blockdev --flushbufs "$LOOP"
    python3 - "$WORK/test.wic" "$LOOP" "${1:-}" <<'PY'
import sys, xml.etree.ElementTree as ET
image, device, bmap = sys.argv[1:]
with open(image, "rb") as img, open(device, "rb") as dev:
    if bmap:
        root = ET.parse(bmap).getroot()
        block = int(root.findtext("BlockSize"))
        ranges = []
        for r in root.find("BlockMap"):
            first, _, last = r.text.strip().partition("-")
            ranges.append((int(first), int(last or first)))
    else:
        block, size = 1, img.seek(0, 2)
        ranges = [(0, size - 1)]
    for first, last in ranges:
        img.seek(first * block)
        dev.seek(first * block)
        if img.read((last - first + 1) * block) != dev.read((last - first + 1) * block):
            sys.exit(f"blocks {first}-{last} differ")
PY
}

target_untouched() {
    blockdev --flushbufs "$LOOP"
    [ "$(head -c 1048576 "$LOOP" | tr -d '\252' | wc -c)" = 0 ] || fail "$1 wrote to the device"
}

make_image

# --- without a loop device ---
expect_refusal "a missing image" "image .*missing\.wic\.bz2 does not exist" \
    "$FLASH" "$WORK/missing.wic.bz2" /dev/null --yes
printf 'not a disk\n' >"$WORK/regular-file"
expect_refusal "a regular file as device" "is not a block device" \
    "$FLASH" "$WORK/test.wic.bz2" "$WORK/regular-file" --force --yes
expect_refusal "a file that is not a .wic image" "is not a \.wic image" \
    "$FLASH" "$WORK/test.wic.bmap" "$WORK/regular-file" --force --yes

# This machine's own system disk, where there is one (not in an overlay-rooted container).
# Safe to try: without --yes on a non-interactive input the script stops before writing
# even if the system-disk check were broken.
root_src=$(findmnt -no SOURCE / 2>/dev/null || true)
if [ -b "$root_src" ]; then
    root_disk=$(lsblk -ndo PKNAME "$root_src" 2>/dev/null || true)
    root_disk=/dev/${root_disk:-$(basename "$(readlink -f "$root_src")")}
    expect_refusal "this machine's system disk $root_disk, even with --force" "holds this machine's / or /boot" \
        "$FLASH" "$WORK/test.wic.bz2" "$root_disk" --force </dev/null
else
    printf 'skip: / is not on a block device here (%s): the real system-disk refusal is not tried\n' "${root_src:-?}"
fi

truncate -s 32M "$WORK/target.img"
if ! LOOP=$(losetup -f --show "$WORK/target.img" 2>"$WORK/losetup.err"); then
    LOOP=""
    printf 'flash: checks without a loop device passed\n'
    missing "a loop device ($(tr '\n' ' ' <"$WORK/losetup.err"))" \
        "run as root where /dev/loop-control exists (a container needs --privileged or the loop devices)"
fi
name=$(basename "$LOOP")
reset_target

# --- refusals on the loop device ---
# A loop device is not removable, like an internal disk.
expect_refusal "a non-removable disk without --force" "Not a removable disk" \
    "$FLASH" "$WORK/test.wic.bz2" "$LOOP" --yes
target_untouched "the non-removable refusal"

# Mounted: in a private mount namespace, so nothing outlives the check.
mkfs.ext4 -q "$LOOP"
mkdir "$WORK/mnt"
# shellcheck disable=SC2016 # expanded by the inner sh
expect_refusal "a mounted disk, even with --force" "is in use: $LOOP on $WORK/mnt" \
    unshare -m sh -c 'mount "$1" "$2" && exec "$3" "$4" "$1" --force --yes' sh \
    "$LOOP" "$WORK/mnt" "$FLASH" "$WORK/test.wic.bz2"
reset_target

# The disk holding / (or /boot): a mount table in which the loop device holds them. The real
# system disk is never offered to the script.
devno=$(cat "/sys/class/block/$name/dev")
for mp in / /boot; do
    printf '21 1 %s / %s rw,relatime shared:1 - ext4 %s rw\n' "$devno" "$mp" "$LOOP" >"$WORK/mountinfo"
    # The mounted check would refuse it too, but the system-disk check comes first and must
    # be the one that fires.
    expect_refusal "the disk holding $mp, even with --force" "holds this machine's / or /boot" \
        env FLASH_MOUNTINFO="$WORK/mountinfo" "$FLASH" "$WORK/test.wic.bz2" "$LOOP" --force --yes
done
target_untouched "the system-disk refusal"

# No typed confirmation: on a pipe it refuses to ask; on a terminal the wrong name refuses.
expect_refusal "a write without --yes on a non-interactive input" "pass --yes" \
    "$FLASH" "$WORK/test.wic.bz2" "$LOOP" --force </dev/null
expect_refusal "a wrongly typed confirmation" "not confirmed" \
    script -qec "$FLASH $WORK/test.wic.bz2 $LOOP --force" /dev/null <<<"sdz"
target_untouched "the confirmation refusals"

# --- writing ---
"$FLASH" "$WORK/test.wic.bz2" "$LOOP" --force --yes >"$WORK/out" 2>&1 ||
    fail "scripts/flash --force --yes failed: $(cat "$WORK/out")"
grep -q "bmap $WORK/test.wic.bmap" "$WORK/out" || fail "the bmap next to the image was not used: $(cat "$WORK/out")"
reads_back_identical "$WORK/test.wic.bmap" ||
    fail "after writing with the bmap the device does not read back as the image's mapped blocks"
printf 'ok: --force --yes with the bmap: the mapped blocks of %s read back identical to test.wic\n' "$LOOP"

# The readback comparison can fail: one changed byte inside the root file system's payload.
printf 'X' | dd of="$LOOP" bs=1 seek=$((12 << 20)) conv=notrunc,fsync status=none
! reads_back_identical "$WORK/test.wic.bmap" 2>/dev/null || fail "the readback comparison missed a changed byte"
printf 'ok: the readback comparison catches one changed byte\n'

reset_target
mkdir "$WORK/nobmap"
cp "$WORK/test.wic.bz2" "$WORK/nobmap/"
"$FLASH" "$WORK/nobmap/test.wic.bz2" "$LOOP" --force --yes >"$WORK/out" 2>&1 ||
    fail "scripts/flash without a bmap failed: $(cat "$WORK/out")"
grep -q "no .bmap next to" "$WORK/out" || fail "no warning about the missing bmap: $(cat "$WORK/out")"
grep -q "verified: $(stat -c %s "$WORK/test.wic") bytes read back identical" "$WORK/out" ||
    fail "without a bmap the script did not verify by readback: $(cat "$WORK/out")"
reads_back_identical || fail "after writing without a bmap the device does not read back as the image"
printf 'ok: without a bmap: warned, --nobmap, its own readback, reads back identical\n'

# A disk the kernel flags removable (an SD card reader) needs no --force: the same loop
# device seen through a sysfs copy that says so.
mkdir -p "$WORK/sysfs/class/block/$name"
cp "/sys/class/block/$name/dev" "/sys/class/block/$name/size" "$WORK/sysfs/class/block/$name/"
echo 1 >"$WORK/sysfs/class/block/$name/removable"
reset_target
FLASH_SYSFS="$WORK/sysfs" "$FLASH" "$WORK/test.wic.bz2" "$LOOP" --yes >"$WORK/out" 2>&1 ||
    fail "a removable disk was refused without --force: $(cat "$WORK/out")"
reads_back_identical "$WORK/test.wic.bmap" || fail "the removable disk does not read back as the image"
printf 'ok: a removable disk is written without --force\n'

# A terminal user typing the device's name gets the write.
reset_target
script -qec "$FLASH $WORK/test.wic.bz2 $LOOP --force" /dev/null <<<"$name" >"$WORK/out" 2>&1 ||
    fail "typing '$name' did not confirm: $(cat "$WORK/out")"
reads_back_identical "$WORK/test.wic.bmap" || fail "after a typed confirmation the device does not read back as the image"
printf 'ok: typing %s at the prompt confirms the write\n' "$name"
printf 'flash: all checks passed\n'
