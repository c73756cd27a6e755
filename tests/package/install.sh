#!/usr/bin/env bash
# The Debian packages as a user meets them, in a throwaway Debian root (debootstrap of this
# machine's release from its configured mirror, kept as a tarball in the cache): what the
# guide's "Install on Raspberry Pi OS" does, then upgrade, remove and purge.
#
# Usage: tests/package/install.sh DEB_DIR [ARCH]
#   DEB_DIR holds tinylcm_*_ARCH.deb and sphere-lite_*_ARCH.deb at two Debian revisions
#   (scripts/package-deb --revision 1 and --revision 2); the lower one is installed first,
#   the higher one is the upgrade. ARCH is this machine's by default; arm64 here is the
#   Raspberry Pi OS case: an arm64 root whose programs (dpkg, the maintainer scripts, tinylcm
#   itself) run under qemu-aarch64 through binfmt_misc, and only tinylcm is checked (the server
#   runs on a machine of the fleet's owner, amd64 here).
#
# For each package: `apt install ./file.deb` (files, conffile, system user and groups, state folder, unit not
# enabled nor started, its sandbox lines), the unit's ExecStart command line run as the
# package's user (tinylcm: to READY=1, its first good inference, on the built-in synthetic
# camera, read from a NOTIFY_SOCKET as systemd would; sphere-lite: a token, then /healthz),
# an upgrade that keeps the edited config and the state, `apt-get remove` that keeps the
# state and the config, `apt-get purge` that deletes both. Needs root (chroot, mounts).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/common.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/check.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/debian-root.sh"

deb_dir=${1:?usage: tests/package/install.sh DEB_DIR [ARCH]}
arch=${2:-$(dpkg --print-architecture)}
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) fail "ARCH must be amd64 or arm64, not '$arch'" ;;
esac
[ "$(id -u)" -eq 0 ] || missing "root" "run as root (chroot and mounts in a private namespace)"
command -v debootstrap >/dev/null || missing "debootstrap" "apt-get install debootstrap"
command -v unshare >/dev/null || missing "unshare" "apt-get install util-linux"
check_init

# A foreign root's programs run through binfmt_misc: qemu-user-binfmt's registration, loaded
# with its F flag (the kernel opens the interpreter now, so it works inside the chroot too).
if [ "$machine" != "$(uname -m)" ]; then
    binfmt=/proc/sys/fs/binfmt_misc
    conf=/usr/lib/binfmt.d/qemu-$machine.conf
    [ -e "$conf" ] || missing "qemu-user-binfmt" "apt-get install qemu-user qemu-user-binfmt"
    [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" ||
        missing "binfmt_misc" "a kernel with binfmt_misc and the right to mount it (root outside a restricted container)"
    [ -e "$binfmt/qemu-$machine" ] || cat "$conf" >"$binfmt/register" ||
        fail "could not register qemu-$machine with binfmt_misc"
    grep -qx enabled "$binfmt/qemu-$machine" || fail "binfmt_misc: qemu-$machine is disabled"
    ok "$arch programs run through qemu-$machine (binfmt_misc)"
fi

# deb NAME REVISION: the package file of that revision.
deb() { package_file "$deb_dir" "$1" "$2" "$arch"; }

# The root: minbase is dpkg, apt and the essential packages; adduser and init-system-helpers
# (deb-systemd-helper) are what every Raspberry Pi OS has and the maintainer scripts use.
root=$WORK/root
debian_root "$root" "$arch" adduser,init-system-helpers
mkdir -p "$root/tmp/debs"

# in_root CMD...: CMD in the root, with /proc, /sys and /dev as a running system has them
# (mounted in a private mount namespace, so nothing outlives the command), no environment
# leaking in. LiteRT's CPU backend on arm64 reads the processor list from /sys (on x86 it asks
# the CPU): without it the model does not compile.
in_root() {
    # shellcheck disable=SC2016 # the script is sh's, its variables are its own
    unshare --mount --propagation private -- sh -ec '
        r=$1; shift
        mount -t proc proc "$r/proc"
        mount --rbind /sys "$r/sys"
        mount --rbind /dev "$r/dev"
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
    ' sh "$root" "$@"
}

# as_user USER CMD...: CMD in the root as USER with the groups the system gives it
# (setpriv --init-groups, as systemd's User= does).
as_user() {
    local user=$1
    shift
    in_root setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
}

# apt_install NAME REVISION: install or upgrade from the file, as the guide says (`apt install
# ./file.deb`, which runs dpkg -i with the dependencies resolved). Nothing answers (stdin
# closed), so a conffile question fails the test instead of waiting.
apt_install() {
    local f
    f=$(deb "$1" "$2")
    cp -f "$f" "$root/tmp/debs/"
    in_root apt-get install -y -q "/tmp/debs/$(basename "$f")" </dev/null >"$WORK/dpkg.log" 2>&1 ||
        { cat "$WORK/dpkg.log" >&2; fail "apt-get install ./$(basename "$f")"; }
}

# shellcheck disable=SC2016 # dpkg-query's format fields, not shell variables
status_of() { in_root dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$1" 2>/dev/null || true; }

# exec_start UNIT: the ExecStart= command line of the installed unit.
exec_start() {
    sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/$1"
}

# The installed unit file has KEY=VALUE.
unit_has() {
    grep -qx "$2" "$root/usr/lib/systemd/system/$1" || fail "$1 lacks '$2'"
}

# verify_unit UNIT: `systemd-analyze verify` of the installed unit is silent (systemd only
# prints what it ignores, so any output fails). The root gets the host's systemd units to
# resolve the unit's dependencies against, and /bin/kill (procps, on every Raspberry Pi OS;
# ExecReload= needs it) if minbase lacks it.
verify_unit() {
    local out
    command -v systemd-analyze >/dev/null || missing "systemd-analyze" "apt-get install systemd"
    cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
    [ -e "$root/bin/kill" ] || cp /bin/kill "$root/usr/bin/kill"
    out=$(cd "$root" && systemd-analyze verify --root="$root" "$1" 2>&1) ||
        fail "systemd-analyze verify $1: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $1 printed: $out"
}

# check_user NAME GROUP...: a system user (no login, uid below 1000) in each GROUP.
check_user() {
    local name=$1 entry uid shell groups g
    shift
    entry=$(in_root getent passwd "$name") || fail "no user $name after install"
    uid=$(cut -d: -f3 <<<"$entry")
    shell=$(cut -d: -f7 <<<"$entry")
    [ "$uid" -lt 1000 ] || fail "$name is not a system user (uid $uid)"
    [ "$uid" -ne 0 ] || fail "$name is root"
    case "$shell" in */nologin | */false) ;; *) fail "$name can log in (shell $shell)" ;; esac
    groups=$(in_root id -nG "$name")
    for g in "$@"; do
        grep -qw "$g" <<<"$groups" || fail "$name is not in group $g (groups: $groups)"
    done
    ok "$name: system user $uid, no login shell, groups: $groups"
}

# check_state_dir DIR USER: owned by USER, not readable by others (names as the root sees
# them: its uids are not the host's).
check_state_dir() {
    local got
    got=$(in_root stat -c '%U:%G %a' "$1")
    [ "$got" = "$2:$2 750" ] || fail "$1 is $got, expected $2:$2 750"
}

# check_not_enabled UNIT: installed but neither enabled nor started (the postinst's promise).
check_not_enabled() {
    if find "$root/etc/systemd/system" -name "$1" 2>/dev/null | grep -q .; then
        fail "$1 was enabled by the installation"
    fi
    grep -q "installed, not started" "$WORK/dpkg.log" ||
        fail "the postinst did not say how to start $1: $(cat "$WORK/dpkg.log")"
}

# check_conffile PATH PACKAGE
check_conffile() {
    # shellcheck disable=SC2016 # a dpkg-query format field
    in_root dpkg-query -W -f='${Conffiles}\n' "$2" | grep -q "^ $1 " ||
        fail "$1 is not a conffile of $2"
}

# ---------------------------------------------------------------- tinylcm
pin_sha=$(sed -n "s/^ *\[$machine\]=\([0-9a-f]\{64\}\)$/\1/p" "$repo/scripts/fetch-libs" | head -n1)
[ -n "$pin_sha" ] || fail "no LiteRT pin for $machine in scripts/fetch-libs"

apt_install tinylcm 1
[ "$(status_of tinylcm)" = "ii 0.1.0-1" ] || fail "tinylcm status: $(status_of tinylcm)"
[ -x "$root/usr/bin/tinylcm" ] || fail "no /usr/bin/tinylcm"
sha256_matches "$root/usr/lib/tinylcm/libLiteRt.so" "$pin_sha" ||
    fail "/usr/lib/tinylcm/libLiteRt.so is not the pinned LiteRT for $machine"
cmp -s "$root/usr/share/doc/tinylcm/LiteRT-LICENSE" "$(cache_dir)/libs/litert-2.3.0/LICENSE" ||
    fail "LiteRT's licence is not /usr/share/doc/tinylcm/LiteRT-LICENSE"
grep -q "usr/lib/tinylcm/libLiteRt.so" "$root/usr/share/doc/tinylcm/copyright" ||
    fail "the copyright file does not name LiteRT"
check_conffile /etc/tinylcm/config.toml tinylcm
ok "tinylcm 0.1.0-1 installed: binary, LiteRT (pinned SHA-256) and its licence, conffile"
check_user tinylcm tinylcm video
check_state_dir /var/lib/tinylcm tinylcm
check_not_enabled tinylcm.service
for line in "User=tinylcm" "StateDirectory=tinylcm" "DevicePolicy=closed" \
    "DeviceAllow=char-video4linux rw" "DeviceAllow=char-media rw" \
    "DeviceAllow=char-dma_heap rw" "DeviceAllow=char-gpiochip rw"; do
    unit_has tinylcm.service "$line"
done
verify_unit tinylcm.service
ok "tinylcm.service: verified by systemd-analyze, not enabled, not started; runs as tinylcm with the camera devices allowed"

# What a user without a camera does first: the built-in synthetic camera. The edit also
# makes the conffile one that an upgrade must keep.
sed -i 's/^kind = "camera"/kind = "synthetic"/' "$root/etc/tinylcm/config.toml"
grep -q '^kind = "synthetic"' "$root/etc/tinylcm/config.toml" || fail "could not edit the config"

# run_tinylcm LABEL: the unit's command line as tinylcm, its notifications read from a
# datagram socket as systemd does; READY=1 comes after the first good inference. The run is
# bounded (TINYLCM_RUN__MAX_FRAMES) and must end well.
run_tinylcm() {
    local sock=$root/run/notify.sock cmd
    read -r -a cmd <<<"$(exec_start tinylcm.service)"
    rm -f "$sock" "$WORK/notify"
    python3 - "$sock" "$WORK/notify" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.settimeout(300)
with open(sys.argv[2], "a") as out:
    try:
        while True:
            msg = s.recv(4096).decode(errors="replace")
            out.write(msg + "\n")
            out.flush()
            if "READY=1" in msg:
                break
    except socket.timeout:
        pass
PY
    local listener=$!
    for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    [ -S "$sock" ] || fail "the notify listener did not start"
    if ! as_user tinylcm env HOME=/var/lib/tinylcm NOTIFY_SOCKET=/run/notify.sock \
        TINYLCM_LOG=info TINYLCM_RUN__MAX_FRAMES=40 "${cmd[@]}" >"$WORK/run.log" 2>&1; then
        tail -n 30 "$WORK/run.log" >&2
        kill "$listener" 2>/dev/null || true
        fail "$1: '${cmd[*]}' as tinylcm failed"
    fi
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    grep -q "READY=1" "$WORK/notify" 2>/dev/null || {
        tail -n 30 "$WORK/run.log" >&2
        fail "$1: no READY=1 (first good inference) from '${cmd[*]}'"
    }
    ok "$1: '${cmd[*]}' as tinylcm reached its first inference (READY=1) on the synthetic camera"
}
run_tinylcm "after install"
grep -q "/usr/lib/tinylcm/libLiteRt.so" "$WORK/run.log" ||
    fail "the run did not load the packaged LiteRT: $(head -n 20 "$WORK/run.log")"
[ -s "$root/var/lib/tinylcm/state.redb" ] || fail "no state database in /var/lib/tinylcm"
[ "$(in_root stat -c %U /var/lib/tinylcm/state.redb)" = tinylcm ] || fail "state.redb not tinylcm's"
[ -s "$root/var/lib/tinylcm/status.json" ] || fail "no status.json in /var/lib/tinylcm"
# The guide's way to look at the service: `sudo tinylcm status --config ...`.
in_root tinylcm status --config /etc/tinylcm/config.toml >"$WORK/status.txt" 2>&1 ||
    { cat "$WORK/status.txt" >&2; fail "tinylcm status --config /etc/tinylcm/config.toml"; }
ok "tinylcm status --config /etc/tinylcm/config.toml reads the state in /var/lib/tinylcm"
state_sha=$(sha256_of "$root/var/lib/tinylcm/state.redb")
config_sha=$(sha256_of "$root/etc/tinylcm/config.toml")
uid=$(in_root id -u tinylcm)

apt_install tinylcm 2
[ "$(status_of tinylcm)" = "ii 0.1.0-2" ] || fail "after the upgrade: $(status_of tinylcm)"
[ "$(sha256_of "$root/etc/tinylcm/config.toml")" = "$config_sha" ] ||
    fail "the upgrade changed the edited /etc/tinylcm/config.toml"
[ "$(sha256_of "$root/var/lib/tinylcm/state.redb")" = "$state_sha" ] ||
    fail "the upgrade changed the state database"
[ "$(in_root id -u tinylcm)" = "$uid" ] || fail "the upgrade changed the tinylcm user"
check_state_dir /var/lib/tinylcm tinylcm
ok "upgrade 0.1.0-1 -> 0.1.0-2 kept the edited config, the state and the user"
run_tinylcm "after the upgrade"

in_root apt-get remove -y -q tinylcm </dev/null >"$WORK/apt.log" 2>&1 ||
    { cat "$WORK/apt.log" >&2; fail "apt-get remove tinylcm"; }
case "$(status_of tinylcm)" in rc*) ;; *) fail "after remove: $(status_of tinylcm)" ;; esac
[ ! -e "$root/usr/bin/tinylcm" ] || fail "apt-get remove left /usr/bin/tinylcm"
[ ! -e "$root/usr/lib/tinylcm/libLiteRt.so" ] || fail "apt-get remove left LiteRT"
[ "$(sha256_of "$root/var/lib/tinylcm/state.redb")" != "" ] || fail "apt-get remove deleted the state"
[ "$(sha256_of "$root/etc/tinylcm/config.toml")" = "$config_sha" ] ||
    fail "apt-get remove changed the config"
ok "apt-get remove: program gone, state and config kept"

in_root apt-get purge -y -q tinylcm </dev/null >"$WORK/dpkg.log" 2>&1 ||
    { cat "$WORK/dpkg.log" >&2; fail "apt-get purge tinylcm"; }
[ -z "$(status_of tinylcm)" ] || [ "$(status_of tinylcm)" = "un " ] ||
    fail "after purge: $(status_of tinylcm)"
[ ! -e "$root/var/lib/tinylcm" ] || fail "apt-get purge left /var/lib/tinylcm"
[ ! -e "$root/etc/tinylcm" ] || fail "apt-get purge left /etc/tinylcm"
ok "apt-get purge: state and config deleted"

# ---------------------------------------------------------------- sphere-lite
# Checked on this machine's architecture only (see the usage above).
[ "$machine" = "$(uname -m)" ] || exit 0

apt_install sphere-lite 1
[ "$(status_of sphere-lite)" = "ii 0.1.0-1" ] || fail "sphere-lite status: $(status_of sphere-lite)"
[ -x "$root/usr/bin/sphere-lite" ] || fail "no /usr/bin/sphere-lite"
check_conffile /etc/sphere-lite/config.toml sphere-lite
check_user sphere-lite sphere-lite
check_state_dir /var/lib/sphere-lite sphere-lite
check_not_enabled sphere-lite.service
unit_has sphere-lite.service "User=sphere-lite"
unit_has sphere-lite.service "StateDirectory=sphere-lite"
verify_unit sphere-lite.service
ok "sphere-lite 0.1.0-1 installed: binary, conffile, user, data folder, unit not enabled"

# A free port on loopback for this run, set in the conffile as an operator would.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$root/etc/sphere-lite/config.toml"
# The postinst's first step: an operator token, made as the service's user.
as_user sphere-lite sphere-lite token create --name admin --config /etc/sphere-lite/config.toml \
    >"$WORK/token" 2>&1 || { cat "$WORK/token" >&2; fail "sphere-lite token create"; }
read -r -a cmd <<<"$(exec_start sphere-lite.service)"
as_user sphere-lite "${cmd[@]}" >"$WORK/serve.log" 2>&1 &
server=$!
healthy=0
for _ in $(seq 100); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=2)" 2>/dev/null; then
        healthy=1
        break
    fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.2
done
kill -TERM "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
[ "$healthy" = 1 ] || { tail -n 20 "$WORK/serve.log" >&2; fail "'${cmd[*]}' as sphere-lite never answered /healthz"; }
[ -s "$root/var/lib/sphere-lite/sphere.redb" ] || fail "no database in /var/lib/sphere-lite"
[ "$(in_root stat -c %U /var/lib/sphere-lite/sphere.redb)" = sphere-lite ] ||
    fail "sphere.redb is not sphere-lite's"
ok "'${cmd[*]}' as sphere-lite served /healthz with its data in /var/lib/sphere-lite"
config_sha=$(sha256_of "$root/etc/sphere-lite/config.toml")

apt_install sphere-lite 2
[ "$(status_of sphere-lite)" = "ii 0.1.0-2" ] || fail "after the upgrade: $(status_of sphere-lite)"
[ "$(sha256_of "$root/etc/sphere-lite/config.toml")" = "$config_sha" ] ||
    fail "the upgrade changed the edited /etc/sphere-lite/config.toml"
[ -s "$root/var/lib/sphere-lite/sphere.redb" ] || fail "the upgrade lost the database"
ok "sphere-lite upgrade kept the edited config and the data"

in_root apt-get remove -y -q sphere-lite </dev/null >"$WORK/apt.log" 2>&1 ||
    { cat "$WORK/apt.log" >&2; fail "apt-get remove sphere-lite"; }
[ ! -e "$root/usr/bin/sphere-lite" ] || fail "apt-get remove left /usr/bin/sphere-lite"
[ -s "$root/var/lib/sphere-lite/sphere.redb" ] || fail "apt-get remove deleted the data"
in_root apt-get purge -y -q sphere-lite </dev/null >"$WORK/dpkg.log" 2>&1 ||
    { cat "$WORK/dpkg.log" >&2; fail "apt-get purge sphere-lite"; }
[ ! -e "$root/var/lib/sphere-lite" ] || fail "apt-get purge left /var/lib/sphere-lite"
[ ! -e "$root/etc/sphere-lite" ] || fail "apt-get purge left /etc/sphere-lite"
ok "sphere-lite: apt-get remove kept the data, apt-get purge deleted it and the config"
