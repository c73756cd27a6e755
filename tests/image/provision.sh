#!/usr/bin/env bash
# Offline checks of board/common/tinylcm-provision, the device's provisioning at boot (run by
# `./scripts/test image`). The script runs in a fake root (its paths are environment
# variables) against a disk image file partitioned per board/common/layout.toml (p4 made
# small) and an ext4 image standing for p4 (no loop devices: sfdisk works on the file, and
# resize2fs on the file system image):
#  1. a first boot with provision.conf (CRLF line ends, as from a Windows editor), enroll.key
#     and ca.pem: p4 grown to the end of the disk with p1-p3 untouched, the file system grown
#     to the partition with its content intact, /data/tinylcm, the host name from the Pi's
#     serial, provision.env for the runtime, key 0600 on /data, Wi-Fi configuration, and no
#     key or passphrase left on the boot partition;
#  2. a second boot changes nothing (every file, mode, the disk and the file system);
#  3. identity without a serial (machine-id), hostname from provision.conf, no files at all;
#  4. bad or missing files: a clear error each, nothing changed on /data or /boot, the error
#     written to /boot/tinylcm/provision-error.txt;
#  5. the defaults name layout.toml's data partition;
#  6. the checks can fail: copies of the script that keep the key on /boot, skip the file
#     system, leave the passphrase, or give wpa_supplicant's control socket to a group the
#     image lacks, must fail step 1's checks.
# The first boot also runs under busybox sh (the image's /bin/sh may be busybox).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
# shellcheck source=scripts/lib/check.sh
. "$ROOT/scripts/lib/check.sh"
ensure_apt fdisk e2fsprogs busybox-static coreutils
SCRIPT="$ROOT/board/common/tinylcm-provision"
LAYOUT="$ROOT/board/common/layout.toml"

check_init


SERVER="https://sphere.example:8470"
KEY="enr_5f2c9a7d41b8e3"
PSK="correct horse battery"
SERIAL="10000000a1b2c3d4"
P4_MIB=16     # p4 in the image (layout.toml's 512 MiB, made small to keep the test quick)
TAIL_MIB=112  # free space after p4 that the first boot must claim

# Partition table: layout.toml's partitions in order, p4 shrunk; the disk is the sum plus the
# 4 MiB before p1 and TAIL_MIB after p4. Prints an sfdisk script, then the disk size in MiB.
python3 - "$LAYOUT" "$P4_MIB" "$TAIL_MIB" >"$WORK/layout" <<'PY'
import sys, tomllib
layout_file, p4_mib, tail_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(layout_file, "rb") as f:
    layout = tomllib.load(f)
assert layout["table"] == "msdos", layout["table"]
parts = sorted(layout["partition"], key=lambda p: p["number"])
assert [p["number"] for p in parts] == [1, 2, 3, 4]
assert parts[3].get("grow") and parts[3]["fstype"] == "ext4" and parts[3]["mountpoint"] == "/data"
print("label: dos")
total = 4
for p in parts:
    mib = p4_mib if p["number"] == 4 else p["size-mib"]
    kind = "c" if p["fstype"] == "vfat" else "83"
    start = f"start={total * 2048}, " if p["number"] == 1 else ""
    print(f"{p['number']} : {start}size={mib * 2048}, type={kind}")
    total += mib
print(f"# disk-mib {total + tail_mib}")
PY
DISK_MIB=$(sed -n 's/^# disk-mib //p' "$WORK/layout")

# A fresh device in DIR: disk image, p4's file system with a file on it, and a fake root.
make_device() {
    local dir=$1
    mkdir -p "$dir/root/boot/tinylcm" "$dir/root/data" "$dir/root/proc/sys/kernel" "$dir/root/etc" \
        "$dir/content"
    truncate -s "${DISK_MIB}M" "$dir/disk.img"
    grep -v '^#' "$WORK/layout" | sfdisk --quiet "$dir/disk.img"
    echo "state kept across the resize" >"$dir/content/keep.txt"
    mke2fs -q -t ext4 -L data -d "$dir/content" "$dir/data.ext4" "${P4_MIB}M" >/dev/null
    printf 'processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: %s\nModel\t\t: Raspberry Pi Zero 2 W Rev 1.0\n' \
        "$SERIAL" >"$dir/root/proc/cpuinfo"
    : >"$dir/root/proc/mounts"
    echo localhost >"$dir/root/proc/sys/kernel/hostname"
    echo 3f1e0c9b7a5d4e2f8c6b1a0d9e8f7c6b >"$dir/root/etc/machine-id"
}

# The provisioning files of a complete first boot.
put_inputs() {
    local boot=$1/root/boot/tinylcm
    printf '# TinyLCM device settings\r\nserver = %s\r\nwifi-ssid = "Field Lab"\r\nwifi-psk = "%s"\r\nwifi-country = de\r\n' \
        "$SERVER" "$PSK" >"$boot/provision.conf"
    printf '%s\r\n' "$KEY" >"$boot/enroll.key"
    printf -- '-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n' >"$boot/ca.pem"
}

# Run SCRIPT (default the real one) with SHELL_CMD on the device in DIR; output in DIR/out.
# shellcheck disable=SC2086 # $shell is a command with arguments ("busybox sh")
provision() {
    local dir=$1 script=${2:-$SCRIPT} shell=${SHELL_CMD:-sh}
    env TINYLCM_PROVISION_BOOT="$dir/root/boot" TINYLCM_PROVISION_DATA="$dir/root/data" \
        TINYLCM_PROVISION_DISK="$dir/disk.img" TINYLCM_PROVISION_PART="$dir/data.ext4" \
        TINYLCM_PROVISION_PROC="$dir/root/proc" TINYLCM_PROVISION_MACHINE_ID="$dir/root/etc/machine-id" \
        TINYLCM_PROVISION_WIFI_CONF="$dir/root/data/etc/wpa_supplicant/wpa_supplicant-wlan0.conf" \
        ${GROW:+TINYLCM_PROVISION_GROW=$GROW} \
        $shell "$script" >"$dir/out" 2>&1
}

# Everything a run could change: file paths, modes, contents, the partition table (the disk
# image is gigabytes of holes: its table and first MiB stand for it) and the file system.
fingerprint() {
    (cd "$1" && find root -printf '%p %m %s\n' | sort && find root -type f -print0 | sort -z |
        xargs -0 sha256sum && sfdisk --dump disk.img && head -c 1M disk.img | sha256sum &&
        sha256sum data.ext4)
}

# Start and size (sectors) of partition N of DISK.
geometry() {
    sfdisk --dump "$1" | awk -v p="$1$2" '$1 == p { gsub(",", ""); print $4, $6 }'
}

mode() { stat -c %a "$1"; }

# Step 1's checks of a provisioned device; returns non-zero with a message (used on broken
# copies too, so no exit here).
check_first_boot() {
    local dir=$1 r=$1/root bad=""
    local tail_free fs_bytes part_bytes start size
    check() { "$@" || { bad="$bad"$'\n'"  failed: ${*: -1}"; }; }
    expect() { [ "$1" = "$2" ] || bad="$bad"$'\n'"  $3: expected '$2', got '$1'"; }

    # Partitions: p1-p3 as before, p4 from the same start to the end of the disk.
    for n in 1 2 3; do
        expect "$(geometry "$dir/disk.img" "$n")" "$(geometry "$WORK/pristine.img" "$n")" "p$n unchanged"
    done
    read -r start size <<<"$(geometry "$dir/disk.img" 4)"
    expect "$start" "$(geometry "$WORK/pristine.img" 4 | cut -d' ' -f1)" "p4 start"
    tail_free=$((DISK_MIB * 2048 - start - size))
    [ "$tail_free" -lt 2048 ] || bad="$bad"$'\n'"  p4 ends $tail_free sectors before the end of the disk"
    # The file system: as large as the partition, clean, its file still there.
    fs_bytes=$(dumpe2fs -h "$dir/data.ext4" 2>/dev/null | awk -F: '/^Block count/ {c=$2} /^Block size/ {b=$2} END {print c*b}')
    part_bytes=$((size * 512))
    expect "$fs_bytes" "$part_bytes" "file system size (bytes) = p4 size"
    e2fsck -fn "$dir/data.ext4" >/dev/null 2>&1 || bad="$bad"$'\n'"  e2fsck -fn finds errors after the resize"
    expect "$(debugfs -R 'cat /keep.txt' "$dir/data.ext4" 2>/dev/null)" "state kept across the resize" "file on /data after the resize"

    # /data/tinylcm, identity, the runtime's settings.
    expect "$(mode "$r/data/tinylcm")" 750 "mode of /data/tinylcm"
    expect "$(cat "$r/data/tinylcm/hostname")" "tinylcm-a1b2c3d4" "identity from the serial"
    expect "$(cat "$r/proc/sys/kernel/hostname")" "tinylcm-a1b2c3d4" "kernel host name"
    expect "$(cat "$r/data/tinylcm/enroll.key" 2>/dev/null)" "$KEY" "enroll.key on /data (CR removed)"
    expect "$(mode "$r/data/tinylcm/enroll.key" 2>/dev/null)" 600 "mode of enroll.key on /data"
    expect "$(grep -v '^#' "$r/data/tinylcm/provision.env")" "TINYLCM_SYNC__SERVER=$SERVER
TINYLCM_SYNC__ENROLLMENT_KEY_FILE=$r/data/tinylcm/enroll.key
TINYLCM_SYNC__CA_FILE=$r/data/tinylcm/ca.pem" "provision.env"
    expect "$(mode "$r/data/tinylcm/provision.env")" 600 "mode of provision.env"
    check grep -q 'BEGIN CERTIFICATE' "$r/data/tinylcm/ca.pem"
    local wifi=$r/data/etc/wpa_supplicant/wpa_supplicant-wlan0.conf
    check grep -qx 'country=DE' "$wifi"
    check grep -qx '    ssid="Field Lab"' "$wifi"
    check grep -qx "    psk=\"$PSK\"" "$wifi"
    expect "$(mode "$wifi")" 600 "mode of the Wi-Fi configuration"
    # wpa_supplicant refuses to start on a GROUP= the image does not have (netdev is in no
    # layer we build with): the control socket is root's.
    check grep -qx 'ctrl_interface=/run/wpa_supplicant' "$wifi"
    if grep -q 'GROUP=' "$wifi"; then
        bad="$bad"$'\n'"  the Wi-Fi configuration names a control group: $(grep 'GROUP=' "$wifi")"
    fi

    # Nothing secret left on the boot partition; what was applied is kept without the PSK.
    [ ! -e "$r/boot/tinylcm/enroll.key" ] || bad="$bad"$'\n'"  enroll.key is still on the boot partition"
    [ ! -e "$r/boot/tinylcm/provision.conf" ] || bad="$bad"$'\n'"  provision.conf (with the Wi-Fi passphrase) is still on the boot partition"
    if grep -rqF -e "$KEY" -e "$PSK" "$r/boot"; then
        bad="$bad"$'\n'"  the key or the passphrase is still readable on the boot partition"
    fi
    check grep -q "^server = $SERVER" "$r/boot/tinylcm/provision.done"
    [ ! -e "$r/boot/tinylcm/provision-error.txt" ] || bad="$bad"$'\n'"  provision-error.txt after a good run"
    if [ -n "$bad" ]; then
        printf 'first boot of %s:%s\noutput:\n%s\n' "$dir" "$bad" "$(cat "$dir/out")" >&2
        return 1
    fi
}

# --- 1 and 2: a first boot, then a second one -----------------------------------------------------

make_device "$WORK/dev"
cp "$WORK/dev/disk.img" "$WORK/pristine.img"
put_inputs "$WORK/dev"
provision "$WORK/dev" || fail "first boot failed: $(cat "$WORK/dev/out")"
check_first_boot "$WORK/dev" || fail "first boot"
ok "first boot: p4 grown by $TAIL_MIB MiB to the end of the disk (p1-p3 unchanged), ext4 grown to it and clean, content kept"
ok "first boot: /data/tinylcm 0750, host name tinylcm-a1b2c3d4 from the serial, provision.env (server, key file, CA), key 0600"
ok "first boot: Wi-Fi configuration 0600; enroll.key and the passphrase gone from /boot, provision.done kept"

before=$(fingerprint "$WORK/dev")
provision "$WORK/dev" || fail "second boot failed: $(cat "$WORK/dev/out")"
[ "$before" = "$(fingerprint "$WORK/dev")" ] ||
    fail "the second boot changed something: $(diff <(echo "$before") <(fingerprint "$WORK/dev") || true)"
grep -q "already filling the medium" "$WORK/dev/out" || fail "second boot: $(cat "$WORK/dev/out")"
ok "second boot: nothing changed (files, modes, partition table, file system)"

# A server given on an earlier boot still serves a key put on the boot partition later.
printf '%s\n' "enr_second" >"$WORK/dev/root/boot/tinylcm/enroll.key"
provision "$WORK/dev" || fail "a later key failed: $(cat "$WORK/dev/out")"
[ "$(cat "$WORK/dev/root/data/tinylcm/enroll.key")" = enr_second ] || fail "a later key was not taken"
grep -q "^TINYLCM_SYNC__SERVER=$SERVER\$" "$WORK/dev/root/data/tinylcm/provision.env" || fail "a later key lost the server"
[ ! -e "$WORK/dev/root/boot/tinylcm/enroll.key" ] || fail "a later key stayed on /boot"
ok "a later boot: a new enroll.key is taken with the server kept from the first boot"

if command -v busybox >/dev/null; then
    make_device "$WORK/bb"
    put_inputs "$WORK/bb"
    SHELL_CMD="busybox sh" provision "$WORK/bb" || fail "first boot under busybox sh failed: $(cat "$WORK/bb/out")"
    check_first_boot "$WORK/bb" || fail "first boot under busybox sh"
    ok "first boot under busybox sh: the same result"
fi

# --- 3. identity variants and an unprovisioned device ---------------------------------------------

make_device "$WORK/plain"
sed -i '/^Serial/d' "$WORK/plain/root/proc/cpuinfo"
GROW=no provision "$WORK/plain" || fail "boot without files failed: $(cat "$WORK/plain/out")"
[ "$(cat "$WORK/plain/root/data/tinylcm/hostname")" = tinylcm-3f1e0c9b ] ||
    fail "no serial: expected tinylcm-3f1e0c9b from machine-id, got $(cat "$WORK/plain/root/data/tinylcm/hostname")"
[ ! -e "$WORK/plain/root/data/tinylcm/provision.env" ] || fail "provision.env without a server"
ok "no provisioning files, no serial: host name tinylcm-3f1e0c9b from machine-id, no provision.env"

rm "$WORK/plain/root/etc/machine-id" "$WORK/plain/root/data/tinylcm/hostname"
if GROW=no provision "$WORK/plain"; then fail "no serial and no machine-id: expected an error"; fi
grep -q "no identity.*hostname = " "$WORK/plain/out" || fail "no identity: unclear error: $(cat "$WORK/plain/out")"
printf 'hostname = Gate-7\n' >"$WORK/plain/root/boot/tinylcm/provision.conf"
GROW=no provision "$WORK/plain" || fail "hostname from provision.conf failed: $(cat "$WORK/plain/out")"
[ "$(cat "$WORK/plain/root/proc/sys/kernel/hostname")" = gate-7 ] || fail "hostname = Gate-7 not applied"
ok "no serial and no machine-id: a clear error; 'hostname = Gate-7' in provision.conf gives gate-7"

# --- 4. bad files: a clear error, nothing changed -------------------------------------------------

make_device "$WORK/bad"
GROW=no provision "$WORK/bad" || fail "$(cat "$WORK/bad/out")"
# name | provision.conf | enroll.key | ca.pem | expected message (grep -E)
while IFS='|' read -r name conf key ca message; do
    dir="$WORK/bad"
    rm -rf "$dir/root/boot/tinylcm" && mkdir -p "$dir/root/boot/tinylcm"
    [ "$conf" = - ] || printf '%b' "$conf" >"$dir/root/boot/tinylcm/provision.conf"
    [ "$key" = - ] || printf '%b' "$key" >"$dir/root/boot/tinylcm/enroll.key"
    [ "$ca" = - ] || printf '%b' "$ca" >"$dir/root/boot/tinylcm/ca.pem"
    before=$(fingerprint "$dir")
    if GROW=no provision "$dir"; then fail "$name: accepted"; fi
    grep -Eq "error: .*$message" "$dir/out" || fail "$name: expected an error matching '$message', got: $(cat "$dir/out")"
    grep -Eq "$message" "$dir/root/boot/tinylcm/provision-error.txt" ||
        fail "$name: the error is not in /boot/tinylcm/provision-error.txt"
    rm "$dir/root/boot/tinylcm/provision-error.txt"
    [ "$before" = "$(fingerprint "$dir")" ] || fail "$name: files changed: $(diff <(echo "$before") <(fingerprint "$dir") || true)"
    ok "refused with nothing changed: $name ($(grep -o 'error: .*' "$dir/out" | cut -c8-90))"
done <<EOF
a server that is not http(s)|server = ftp://sphere.example\n|$KEY\n|-|server 'ftp://sphere.example' is not an http\\(s\\) URL
plain http to another machine|server = http://sphere.example:8470\n|$KEY\n|-|is plain http to another machine.*allow-insecure-http = yes
a bad allow-insecure-http|server = $SERVER\nallow-insecure-http = maybe\n|-|-|allow-insecure-http must be yes or no
a misspelt key|sever = $SERVER\n|-|-|line 1: unknown key 'sever'
a line without '='|server $SERVER\n|-|-|line 1: expected 'key = value'
an empty enroll.key|server = $SERVER\n|\r\n|-|enroll.key is empty
a key with spaces|server = $SERVER\n|two words\n|-|one line without spaces
a key without a server|-|$KEY\n|-|enroll.key needs the server
a short Wi-Fi passphrase|wifi-ssid = lab\nwifi-psk = short\n|-|-|wifi-psk must be 8 to 63
Wi-Fi without a passphrase|wifi-ssid = lab\n|-|-|wifi-ssid without wifi-psk
a bad country code|wifi-ssid = lab\nwifi-psk = longenough\nwifi-country = Germany\n|-|-|two-letter country code
a bad host name|hostname = -bad-\n|-|-|is not a host name
a ca.pem that is no certificate|server = $SERVER\n|-|hello\n|ca.pem holds no PEM certificate
EOF
# A good set after a bad one works, and clears the error note.
put_inputs "$WORK/bad"
echo "stale" >"$WORK/bad/root/boot/tinylcm/provision-error.txt"
GROW=no provision "$WORK/bad" || fail "good files after bad ones: $(cat "$WORK/bad/out")"
[ ! -e "$WORK/bad/root/boot/tinylcm/provision-error.txt" ] || fail "provision-error.txt kept after a good run"
ok "good files after bad ones are applied and the error note removed"

# Plain http: to this machine as it is; to another only with allow-insecure-http = yes, which
# then reaches the runtime ([sync] allow-insecure-http) and stays on later boots.
make_device "$WORK/lab"
printf 'server = http://127.0.0.1:8470\r\n' >"$WORK/lab/root/boot/tinylcm/provision.conf"
GROW=no provision "$WORK/lab" || fail "http to loopback refused: $(cat "$WORK/lab/out")"
! grep -q ALLOW_INSECURE "$WORK/lab/root/data/tinylcm/provision.env" || fail "loopback needs no insecure flag"
printf 'server = http://10.0.0.5:8470\r\nallow-insecure-http = yes\r\n' >"$WORK/lab/root/boot/tinylcm/provision.conf"
GROW=no provision "$WORK/lab" || fail "allow-insecure-http = yes refused: $(cat "$WORK/lab/out")"
grep -qx "TINYLCM_SYNC__ALLOW_INSECURE_HTTP=true" "$WORK/lab/root/data/tinylcm/provision.env" ||
    fail "allow-insecure-http not passed on: $(cat "$WORK/lab/root/data/tinylcm/provision.env")"
GROW=no provision "$WORK/lab" || fail "second boot: $(cat "$WORK/lab/out")"
grep -qx "TINYLCM_SYNC__ALLOW_INSECURE_HTTP=true" "$WORK/lab/root/data/tinylcm/provision.env" ||
    fail "allow-insecure-http lost on a later boot"
ok "plain http to this machine is accepted; to another one only with allow-insecure-http = yes"

# A missing data partition or disk is an error, not a silent skip.
make_device "$WORK/nodisk"
rm "$WORK/nodisk/data.ext4"
if provision "$WORK/nodisk"; then fail "a missing data partition was accepted"; fi
grep -q "data partition .* not found" "$WORK/nodisk/out" || fail "missing data partition: $(cat "$WORK/nodisk/out")"
ok "a missing data partition is an error: $(grep -o 'error: .*' "$WORK/nodisk/out" | sed "s|$WORK/||" | cut -c8-90)"

# --- 5. the defaults are layout.toml's data partition ---------------------------------------------

dev=$(python3 -c 'import sys, tomllib; p = [p for p in tomllib.load(open(sys.argv[1], "rb"))["partition"] if p.get("grow")]; print(p[0]["device"], p[0]["number"])' "$LAYOUT")
read -r part num <<<"$dev"
grep -q "^PART=\${TINYLCM_PROVISION_PART:-$part}\$" "$SCRIPT" || fail "the script's default partition is not $part"
grep -q "^PARTNUM=\${TINYLCM_PROVISION_PARTNUM:-$num}\$" "$SCRIPT" || fail "the script's default partition number is not $num"
grep -q "^DISK=\${TINYLCM_PROVISION_DISK:-${part%p"$num"}}\$" "$SCRIPT" || fail "the script's default disk is not ${part%p"$num"}"
ok "defaults: disk ${part%p"$num"}, partition $part (number $num), as in layout.toml"

# --- 6. broken copies fail step 1's checks --------------------------------------------------------

expect_broken() {
    local what=$1 pattern=$2 replacement=$3 dir="$WORK/broken-$4"
    python3 - "$SCRIPT" "$dir.sh" "$pattern" "$replacement" <<'PY' || fail "the test's edit does not apply: $pattern"
import sys
src, dst, old, new = sys.argv[1:]
text = open(src).read()
if old not in text:
    sys.exit(1)
open(dst, "w").write(text.replace(old, new))
PY
    make_device "$dir"
    put_inputs "$dir"
    provision "$dir" "$dir.sh" || true
    if check_first_boot "$dir" 2>"$dir.err"; then
        fail "a copy that $what passed the checks"
    fi
    ok "a copy that $what fails: $(grep -m1 '^  ' "$dir.err" | sed 's/^ *//' | cut -c1-80)"
}
# shellcheck disable=SC2016 # the script's own text, not expanded here
expect_broken "keeps the key on /boot" 'scrub "$IN/enroll.key"' ': keep' key
# shellcheck disable=SC2016
expect_broken "does not grow the file system" 'resize2fs "$PART" "${size}s" >/dev/null 2>&1 || fail "resize2fs could not grow $PART"' ': no resize' fs
# shellcheck disable=SC2016
expect_broken "leaves the passphrase in provision.conf" 'scrub "$IN/provision.conf"' ': keep' psk
# shellcheck disable=SC2016
expect_broken "gives wpa_supplicant's socket to a group the image lacks" \
    'echo "ctrl_interface=/run/wpa_supplicant"' 'echo "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev"' group
