#!/usr/bin/env bash
# The packages' units started by systemd itself, as the guide tells users to: a Debian root
# with systemd booted in a systemd-nspawn container (this machine's architecture; the units are
# the same file on arm64), the packages installed in it with apt, then
#
#   tinylcm: installed disabled and inactive (the postinst's promise, asked of systemd); with the
#   config on the synthetic camera, `systemctl enable --now tinylcm` returns once the
#   Type=notify service sent READY=1 (its first good inference): active (running), its main
#   process the tinylcm user's with the video group, no capabilities, no_new_privs and a seccomp
#   filter (the unit's sandbox applied), writing its database and status.json in
#   /var/lib/tinylcm (StateDirectory= under ProtectSystem=strict), its log in the journal with
#   the packaged LiteRT, STATUS= lines, WATCHDOG=1 pings that systemd receives, `systemctl
#   reload` (SIGHUP) keeping it running, `apt install` of the next revision restarting it
#   (the maintainer scripts' try-restart) to READY again, `systemctl stop` ending it cleanly;
#   sphere-lite: installed disabled; after the guide's operator token, `systemctl enable --now
#   sphere-lite` serves /healthz as the sphere-lite user with its database in
#   /var/lib/sphere-lite; `systemctl stop` ends it cleanly.
#
# What a container cannot show: the unit's device allow-list being enforced (DevicePolicy=
# needs the devices controller or a BPF program, which systemd cannot attach inside a container;
# systemd-analyze verify in install.sh checks the lines parse).
#
# Usage: tests/package/systemd.sh DEB_DIR
#   DEB_DIR holds tinylcm_*-1_ARCH.deb, tinylcm_*-2_ARCH.deb and sphere-lite_*-1_ARCH.deb
#   for this machine's ARCH (scripts/package-deb --revision 1 and --revision 2).
# Needs root and systemd-nspawn (apt-get install systemd-container); the host needs no systemd.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/common.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/check.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/debian-root.sh"

deb_dir=${1:?usage: tests/package/systemd.sh DEB_DIR}
arch=$(dpkg --print-architecture)
[ "$(id -u)" -eq 0 ] || missing "root" "run as root (systemd-nspawn)"
command -v debootstrap >/dev/null || missing "debootstrap" "apt-get install debootstrap"
command -v systemd-nspawn >/dev/null || missing "systemd-nspawn" "apt-get install systemd-container"
command -v nsenter >/dev/null || missing "nsenter" "apt-get install util-linux"
check_init

# deb NAME REVISION: the package file of that revision.
deb() { package_file "$deb_dir" "$1" "$2" "$arch"; }

tinylcm_1=$(deb tinylcm 1)
tinylcm_2=$(deb tinylcm 2)
sphere_lite_1=$(deb sphere-lite 1)

# A root that boots: systemd as init (systemd-sysv), D-Bus and procps (/bin/kill, which the
# unit's ExecReload= runs) as every Raspberry Pi OS has them, and what the maintainer scripts use.
root=$WORK/root
debian_root "$root" "$arch" adduser,init-system-helpers,systemd,systemd-sysv,dbus,procps
# No login prompt on the console (nobody logs in; the console stays the boot's messages).
ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
# Not /tmp: the container gets a fresh tmpfs there.
mkdir -p "$root/srv/debs"
cp -f "$tinylcm_1" "$tinylcm_2" "$sphere_lite_1" "$root/srv/debs/"

# wait_for SECONDS CMD...: retry CMD every 0.5 s until it succeeds, at most SECONDS.
wait_for() {
    local tries=$(($1 * 2))
    shift
    while ! "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.5
    done
}

# Boot it. No systemd on the host: --register=no (no machined) and --keep-unit (no scope
# of its own). The unified cgroup hierarchy, as Debian 12 and Raspberry Pi OS boot with. The
# host's network: apt installs the packages' recommendations from the mirror, as for a user.
# The console (systemd's boot messages) goes to $WORK/console, which `fail` shows.
nspawn=""
check_cleanup_hook() {
    [ -n "$nspawn" ] || return 0
    kill -0 "$nspawn" 2>/dev/null || return 0
    # SIGTERM asks nspawn for a clean shutdown of the container; SIGKILL if that hangs.
    kill -TERM "$nspawn" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$nspawn" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$nspawn" 2>/dev/null || true
}
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --boot --directory="$root" \
    --machine=tinylcm-package --register=no --keep-unit --console=read-only \
    </dev/null >"$WORK/console" 2>&1 &
nspawn=$!

# The container's init, once nspawn has started it.
leader=""
for _ in $(seq 150); do
    leader=$(pgrep -P "$nspawn" -x systemd || true)
    [ -n "$leader" ] && break
    kill -0 "$nspawn" 2>/dev/null || fail "systemd-nspawn exited before systemd started"
    sleep 0.2
done
[ -n "$leader" ] || fail "systemd did not start in the container within 30 s"

# in_container CMD...: CMD inside the booted container (its namespaces and root), with no
# environment leaking in.
in_container() {
    nsenter --target "$leader" --all -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}

# prop UNIT PROPERTY: systemd's value of the unit's PROPERTY.
prop() {
    in_container systemctl show -P "$2" "$1"
}

# why UNIT: systemd's status and the unit's journal, for a failure message.
why() {
    in_container systemctl status --no-pager --lines=0 "$1" 2>&1 || true
    in_container journalctl --no-pager -n 40 -u "$1" 2>&1 || true
}

# systemctl talks to systemd through its private socket, there once systemd is up.
wait_for 30 in_container test -S /run/systemd/private || fail "systemd in the container did not come up"
state=$(in_container timeout 120 systemctl is-system-running --wait || true)
case "$state" in
    running) ;;
    degraded) note "the container booted degraded: $(in_container systemctl --failed --no-legend --plain)" ;;
    *) fail "the container's systemd did not finish booting: '$state'" ;;
esac
ok "systemd booted in the container ($state, $(in_container systemctl --version | head -n1))"

# apt_install FILE: `apt install ./file.deb` as the guide says, inside the running system.
apt_install() {
    in_container apt-get install -y -q "/srv/debs/$(basename "$1")" >"$WORK/apt.log" 2>&1 ||
        { cat "$WORK/apt.log" >&2; fail "apt-get install ./$(basename "$1")"; }
}

# check_installed_only UNIT: installed, neither enabled nor running, as systemd sees it.
check_installed_only() {
    local enabled active
    enabled=$(in_container systemctl is-enabled "$1" || true)
    active=$(in_container systemctl is-active "$1" || true)
    [ "$enabled" = disabled ] || fail "after apt install, $1 is '$enabled', not disabled"
    [ "$active" = inactive ] || fail "after apt install, $1 is '$active', not inactive"
}

# unit_state UNIT: e.g. "active (running), restarts 0".
unit_state() {
    printf '%s (%s), restarts %s\n' "$(prop "$1" ActiveState)" "$(prop "$1" SubState)" \
        "$(prop "$1" NRestarts)"
}

# check_running UNIT: active (running) with no restart so far, within 60 s (a reload passes
# through "reloading" until the new generation's READY=1).
check_running() {
    running() { [ "$(unit_state "$1")" = "active (running), restarts 0" ]; }
    wait_for 60 running "$1" || { why "$1" >&2; fail "$1 is $(unit_state "$1")"; }
}

# check_sandboxed UNIT USER: the unit's main process runs as USER, with no capabilities
# (CapabilityBoundingSet=), no_new_privs (NoNewPrivileges=) and a seccomp filter
# (SystemCallArchitectures=, RestrictNamespaces=, ...), as the kernel reports it; in its mount
# namespace / is read-only (ProtectSystem=strict) and /var/lib/USER writable (StateDirectory=).
check_sandboxed() {
    local pid status mounts
    pid=$(prop "$1" MainPID)
    [ "$pid" -gt 0 ] || fail "$1 has no main process"
    status=$(in_container cat "/proc/$pid/status")
    [ "$(in_container stat -c %U "/proc/$pid")" = "$2" ] ||
        fail "$1's main process does not run as $2: $(grep -E '^(Uid|Gid)' <<<"$status")"
    grep -Eq '^CapEff:[[:space:]]+0+$' <<<"$status" || fail "$1 has capabilities: $(grep ^Cap <<<"$status")"
    grep -Eq '^CapBnd:[[:space:]]+0+$' <<<"$status" || fail "$1's bounding set is not empty"
    grep -Eq '^NoNewPrivs:[[:space:]]+1$' <<<"$status" || fail "$1 runs without no_new_privs"
    grep -Eq '^Seccomp:[[:space:]]+2$' <<<"$status" || fail "$1 runs without a seccomp filter"
    # mountinfo: field 5 the mount point, 6 its options; the last mount on a point is in force.
    mounts=$(in_container cat "/proc/$pid/mountinfo")
    [[ "$(awk '$5 == "/" { o = $6 } END { print o }' <<<"$mounts")" == ro* ]] ||
        fail "/ is writable for $1 (ProtectSystem=strict not in force)"
    [[ "$(awk -v d="/var/lib/$2" '$5 == d { o = $6 } END { print o }' <<<"$mounts")" == rw* ]] ||
        fail "/var/lib/$2 is not writable for $1"
    printf '%s\n' "$status"
}

# check_owned FILE USER: FILE exists, is not empty and is USER's.
check_owned() {
    in_container test -s "$1" || fail "no $1"
    [ "$(in_container stat -c %U "$1")" = "$2" ] || fail "$1 is not $2's"
}

# ---------------------------------------------------------------- tinylcm
apt_install "$tinylcm_1"
check_installed_only tinylcm.service
ok "apt install ./tinylcm_…-1: systemd has tinylcm.service disabled and inactive"

# The guide's second step, without a camera: the built-in synthetic camera.
sed -i 's/^kind = "camera"/kind = "synthetic"/' "$root/etc/tinylcm/config.toml"
grep -q '^kind = "synthetic"' "$root/etc/tinylcm/config.toml" || fail "could not edit the config"

# Type=notify: `systemctl start` returns once the service sent READY=1, and fails if the
# service exits, or does not get there within TimeoutStartSec=.
in_container systemctl enable --now tinylcm >"$WORK/enable.log" 2>&1 ||
    { cat "$WORK/enable.log" >&2; why tinylcm >&2; fail "systemctl enable --now tinylcm"; }
[ "$(prop tinylcm Type)" = notify ] || fail "tinylcm.service is not Type=notify"
[ "$(in_container systemctl is-enabled tinylcm || true)" = enabled ] || fail "tinylcm is not enabled"
check_running tinylcm
status=$(check_sandboxed tinylcm tinylcm)
video=$(in_container getent group video | cut -d: -f3)
grep -Eq "^Groups:.*\\b$video\\b" <<<"$status" ||
    fail "tinylcm runs without the video group ($video): $(grep ^Groups <<<"$status")"
ok "systemctl enable --now tinylcm: enabled, active (running) after READY=1, as tinylcm with video, no capabilities, no_new_privs, seccomp, / read-only but its state folder"

check_owned /var/lib/tinylcm/state.redb tinylcm
# status.json is written every 5 s.
wait_for 30 in_container test -s /var/lib/tinylcm/status.json ||
    { why tinylcm >&2; fail "the service wrote no /var/lib/tinylcm/status.json"; }
check_owned /var/lib/tinylcm/status.json tinylcm
in_container tinylcm status --config /etc/tinylcm/config.toml >"$WORK/status.txt" 2>&1 ||
    { cat "$WORK/status.txt" >&2; fail "tinylcm status --config /etc/tinylcm/config.toml"; }
in_container journalctl --no-pager -u tinylcm >"$WORK/journal" 2>&1
grep -q /usr/lib/tinylcm/libLiteRt.so "$WORK/journal" ||
    fail "the journal does not show the packaged LiteRT loaded: $(tail -n 20 "$WORK/journal")"
[ -n "$(prop tinylcm StatusText)" ] || fail "tinylcm sent no STATUS= line"
ok "the service writes its state and status.json in /var/lib/tinylcm, logs to the journal (packaged LiteRT), reports STATUS: $(prop tinylcm StatusText)"

# `systemctl reload tinylcm`: ExecReload='s SIGHUP starts a new generation in the same process.
pid=$(prop tinylcm MainPID)
in_container systemctl reload tinylcm >"$WORK/reload.log" 2>&1 ||
    { cat "$WORK/reload.log" >&2; why tinylcm >&2; fail "systemctl reload tinylcm"; }
check_running tinylcm
[ "$(prop tinylcm MainPID)" = "$pid" ] || fail "systemctl reload tinylcm replaced the process"
# The service loop logs "reloading: SIGHUP" when the generation it ends was asked to reload.
reloaded() { in_container journalctl --no-pager -u tinylcm | grep -q 'reloading: SIGHUP'; }
wait_for 60 reloaded || { why tinylcm >&2; fail "the journal shows no reload after systemctl reload tinylcm"; }
check_running tinylcm
ok "systemctl reload tinylcm: the service reloaded in the same process, still active (running)"

# An upgrade while it runs: the maintainer scripts' try-restart, a new process back to READY.
apt_install "$tinylcm_2"
new_pid=$(prop tinylcm MainPID)
[ "$new_pid" != "$pid" ] || fail "apt install of revision 2 did not restart the running service"
check_running tinylcm
check_sandboxed tinylcm tinylcm >/dev/null
ok "apt install ./tinylcm_…-2 while running: restarted (pid $pid -> $new_pid), active (running) again"
# systemd stamps WatchdogTimestamp at each WATCHDOG=1 it receives (every WatchdogSec/2);
# compared after sphere-lite's steps, below.
watchdog_stamp=$(prop tinylcm WatchdogTimestampMonotonic)

# ---------------------------------------------------------------- sphere-lite
apt_install "$sphere_lite_1"
check_installed_only sphere-lite.service
ok "apt install ./sphere-lite_…-1: systemd has sphere-lite.service disabled and inactive"
# A free port on loopback (the container shares the host's network), set in the conffile as an
# operator would.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
listen=127.0.0.1:$port
sed -i "s/^listen = .*/listen = \"$listen\"/" "$root/etc/sphere-lite/config.toml"
grep -qx "listen = \"$listen\"" "$root/etc/sphere-lite/config.toml" || fail "could not set listen"
# The guide's steps: the operator token as the service's user (runuser: no sudo in minbase),
# then the service.
in_container runuser -u sphere-lite -- sphere-lite token create --name admin \
    --config /etc/sphere-lite/config.toml >"$WORK/token" 2>&1 ||
    { cat "$WORK/token" >&2; fail "sphere-lite token create as sphere-lite"; }
in_container systemctl enable --now sphere-lite >"$WORK/enable.log" 2>&1 ||
    { cat "$WORK/enable.log" >&2; why sphere-lite >&2; fail "systemctl enable --now sphere-lite"; }
# healthz: GET /healthz from inside the container (bash's /dev/tcp: minbase has no HTTP
# client), at most 5 s a try.
healthz() {
    # shellcheck disable=SC2016 # bash's script, its variables are its own
    in_container timeout 5 bash -c '
        exec 3<>"/dev/tcp/${1%:*}/${1##*:}"
        printf "GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$1" >&3
        head -n1 <&3' bash "$listen" | grep -q '^HTTP/1.1 200'
}
wait_for 30 healthz || { why sphere-lite >&2; fail "sphere-lite.service never answered /healthz on $listen"; }
check_running sphere-lite
check_sandboxed sphere-lite sphere-lite >/dev/null
check_owned /var/lib/sphere-lite/sphere.redb sphere-lite
ok "systemctl enable --now sphere-lite: /healthz answers 200 on $listen, as sphere-lite, no capabilities, no_new_privs, seccomp, / read-only but /var/lib/sphere-lite with its data"
in_container systemctl stop sphere-lite >"$WORK/stop.log" 2>&1 ||
    { cat "$WORK/stop.log" >&2; fail "systemctl stop sphere-lite"; }
[ "$(prop sphere-lite Result)" = success ] || { why sphere-lite >&2; fail "sphere-lite stopped with result $(prop sphere-lite Result)"; }
ok "systemctl stop sphere-lite: stopped, result success"

# ---------------------------------------------------------------- tinylcm's watchdog and stop
# Still the same process, half a minute later: it is pinged, and the synthetic camera of the
# packaged configuration keeps delivering frames as a camera does (the built-in default ends
# after a few thousand frames, and the service with it).
watchdog_pinged() { [ "$(prop tinylcm WatchdogTimestampMonotonic)" != "$watchdog_stamp" ]; }
# A ping is due every 15 s; a service that sends none is killed at 30 s (then NRestarts > 0).
wait_for 40 watchdog_pinged || { why tinylcm >&2; fail "systemd received no WATCHDOG=1 from tinylcm"; }
check_running tinylcm
[ "$(prop tinylcm MainPID)" = "$new_pid" ] || fail "tinylcm's process changed without a restart"
ok "systemd receives tinylcm's WATCHDOG=1 pings (WatchdogSec=$(prop tinylcm WatchdogUSec))"
in_container systemctl stop tinylcm >"$WORK/stop.log" 2>&1 ||
    { cat "$WORK/stop.log" >&2; fail "systemctl stop tinylcm"; }
# success: it exited on SIGTERM by itself, within TimeoutStopSec= (else: timeout, signal).
[ "$(prop tinylcm Result)" = success ] || { why tinylcm >&2; fail "tinylcm stopped with result $(prop tinylcm Result)"; }
[ "$(prop tinylcm ActiveState)" = inactive ] || fail "tinylcm is $(prop tinylcm ActiveState) after stop"
ok "systemctl stop tinylcm: stopped, result success"

# Power the container off; the clean-up ends nspawn if that takes longer than 30 s.
in_container systemctl poweroff >/dev/null 2>&1 || true
nspawn_gone() { ! kill -0 "$nspawn" 2>/dev/null; }
wait_for 30 nspawn_gone || note "the container did not power off within 30 s"
