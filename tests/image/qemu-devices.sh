#!/usr/bin/env bash
# The device's kernel paths for real: camera and GPIO of the aarch64 runtime in
# qemu-system-aarch64 (run by `./scripts/test image`). One boot of `-M raspi3b` with the
# Raspberry Pi Zero 2 W device tree and the pinned Debian kernel, which loads the kernel's
# `vivid` virtual camera (with videodev, videobuf2, v4l2-tpg, ... from the same package),
# then runs `tinylcm run` with `[source] kind = "camera"` four times:
#  1. formats = ["mjpeg"]: vivid offers no MJPEG; the runtime must refuse to start and name
#     what the device offers (YUYV and RGB24 among them).
#  2. formats = ["yuyv"], 200x150 asked (a size vivid lacks): the runtime must report the
#     size it negotiated instead (320x180, the smallest offered that covers it) and reach
#     inferences over mmap streaming. Meanwhile the GPIO path: the status LED (BCM 17) and
#     the button (BCM 27) on the Zero 2 W's own `pinctrl-bcm2835` chip, found by its label
#     and claimed through the kernel's GPIO character device. QEMU emulates the BCM2837
#     GPIO block; the guest reads its level register (GPLEV0) with devmem to see the LED lit
#     while running, and presses the button by writing the pin's level (GPCLR0, released
#     with GPSET0; QEMU does not model the pull-up, so GPSET0 stands in for it first). The
#     runtime must log the press and the long-press action. Then the camera is unplugged
#     (see 3.) and SIGTERM sent while the runtime waits to reopen it: it must stop cleanly
#     at once, not after its reopen back-off.
#  3. formats = ["rgb24"] at 320x180 for 25 frames, and a disconnect in the middle: the
#     vivid device is unbound from its driver (its /dev/video0 disappears, as a USB camera
#     unplugged) until the runtime has failed to reopen it once, then bound again. The
#     runtime must reopen it with back-off and finish its 25 frames.
#  4. That it can fail: the same check with an initramfs without the vivid module, and with
#     `[board] gpio-chip` naming a chip that is not there, must fail for those reasons.
# Usage: tests/image/qemu-devices.sh [--mutant no-vivid|wrong-chip]   (mutants: step 4)
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

mutant=""
case "${1:-}" in
    "") ;;
    --mutant) mutant=${2:?--mutant needs no-vivid or wrong-chip} ;;
    *) printf 'usage: %s [--mutant no-vivid|wrong-chip]\n' "$0" >&2; exit 2 ;;
esac
case "$mutant" in "" | no-vivid | wrong-chip) ;; *) fail "unknown mutant $mutant" ;; esac

check_init

if ! (ensure_qemu_system) >"$WORK/install.log" 2>&1; then
    cat "$WORK/install.log" >&2
    missing "qemu-system-aarch64 (could not be installed, see above)" \
        "apt-get install qemu-system-arm, version 8 or later (Debian: from backports)"
fi

# The aarch64 test layer's binary, as tests/image/qemu-boot.sh builds it.
ensure_runtime_build_deps
ensure_aarch64_deps
BIN=$(cd "$ROOT" && binary_of_test_build tinylcm -p tinylcm --target aarch64-unknown-linux-gnu --test default_model)

modules=vivid
chip_env=""
case "$mutant" in
    no-vivid) modules="" ;;
    wrong-chip) chip_env="TINYLCM_BOARD__GPIO_CHIP=pinctrl-bcm2711" ;;
esac

# The guest's part; every line it prints for the host starts with "DEVICES:".
cat >"$WORK/guest.sh" <<GUEST
set -u
say() { echo "DEVICES: \$*"; }
bad() { echo "DEVICES: FAIL \$*"; exit 1; }
# The BCM2837's GPIO block, where the Zero 2 W's device tree maps it (bcm2837.dtsi).
GPSET0=0x3f20001c
GPCLR0=0x3f200028
GPLEV0=0x3f200034
LED=17
BUTTON=27
level() { echo \$(( (\$(devmem \$GPLEV0 32) >> \$1) & 1 )); }

# run NAME ENV...: tinylcm run on the camera in the background, its output in /tmp/NAME.log.
run() {
    name=\$1
    shift
    env TINYLCM_RAUC__ENABLED=false TINYLCM_SOURCE__KIND=camera "\$@" \\
        /usr/bin/tinylcm run --config /etc/tinylcm/config.toml --state /data/\$name \\
        --frames \${FRAMES:-1000000} >/tmp/\$name.log 2>&1 &
    pid=\$!
}
# alive PID: the process runs (an exited child stays a zombie until waited for).
alive() { [ -r /proc/\$1/status ] && ! grep -q '^State:.*Z' /proc/\$1/status; }
# wait_for NAME PATTERN SECONDS: until the log has PATTERN (grep -E); fails at the timeout
# or when the runtime ended without it.
wait_for() {
    ticks=0
    while ! grep -Eq "\$2" /tmp/\$1.log; do
        alive \$pid || { grep -Eq "\$2" /tmp/\$1.log; return; }
        ticks=\$((ticks + 1))
        [ \$ticks -le \$((\$3 * 10)) ] || return 1
        sleep 0.1
    done
}
# finish NAME: wait for the runtime's exit; show its log with a prefix; fail unless 0.
finish() {
    wait \$pid
    status=\$?
    sed "s/^/\$1> /" /tmp/\$1.log
    [ \$status = 0 ] || bad "\$1: tinylcm exited with status \$status"
}

load_module vivid n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 ||
    bad "the vivid module did not load"
[ -c /dev/video0 ] || bad "vivid created no /dev/video0"
device=\$(basename "\$(readlink /sys/class/video4linux/video0/device)")
say "vivid: /dev/video0 is '\$(cat /sys/class/video4linux/video0/name)' (\$device)"

# 1. MJPEG only: refused, naming what vivid offers.
FRAMES=1 run mjpeg TINYLCM_SOURCE__CAMERA__FORMATS='["mjpeg"]'
wait \$pid && bad "mjpeg: the runtime started on a camera without MJPEG"
offered=\$(grep -o 'none of the preferred formats \[MJPEG\] is offered (convertible formats offered: \[[^]]*\])' /tmp/mjpeg.log) ||
    { cat /tmp/mjpeg.log; bad "mjpeg: the runtime failed without naming the formats vivid offers"; }
say "mjpeg: \$offered"

# 2. YUYV at a size vivid lacks, with the LED and the button.
devmem \$GPSET0 32 \$((1 << BUTTON))
run yuyv TINYLCM_SOURCE__CAMERA__FORMATS='["yuyv"]' TINYLCM_SOURCE__CAMERA__WIDTH=200 \\
    TINYLCM_SOURCE__CAMERA__HEIGHT=150 TINYLCM_SOURCE__CAMERA__FPS=10 \\
    TINYLCM_BOARD__LED_PIN=\$LED TINYLCM_BOARD__BUTTON_PIN=\$BUTTON $chip_env
seen=""
ticks=0
until grep -q 'first good inference' /tmp/yuyv.log; do
    alive \$pid || { finish yuyv; bad "yuyv: the runtime ended before its first inference"; }
    ticks=\$((ticks + 1))
    [ \$ticks -le 900 ] || { kill \$pid; finish yuyv; bad "yuyv: no first inference within 90 s"; }
    # The LED while the model loads (starting: slow blink).
    seen="\$seen\$(level \$LED)"
    sleep 0.1
done
say "yuyv: LED levels while starting (0.1 s apart): \$(echo "\$seen" | tail -c 40)"
if [ "\$(level \$LED)" != 1 ]; then
    kill \$pid
    why=\$(grep -o 'no status LED: .*' /tmp/yuyv.log | head -n1)
    finish yuyv
    bad "yuyv: the status LED (BCM \$LED) is not lit while frames run\${why:+ (\$why)}"
fi
say "yuyv: LED (BCM \$LED) lit while running"
devmem \$GPCLR0 32 \$((1 << BUTTON))
wait_for yuyv 'button pressed' 10 || { kill \$pid; finish yuyv; bad "yuyv: the runtime did not see the button pressed"; }
wait_for yuyv 'button held 2 s' 15 || { kill \$pid; finish yuyv; bad "yuyv: the runtime did not act on the long press"; }
devmem \$GPSET0 32 \$((1 << BUTTON))
# Unplugged, then stopped while the runtime waits to reopen the camera: SIGTERM must not
# wait for the back-off (a minute in all, longer than systemd waits for a stop).
echo -n "\$device" >/sys/bus/platform/drivers/vivid/unbind || bad "cannot unbind \$device"
wait_for yuyv 'camera reopen failed' 20 || { kill \$pid; finish yuyv; bad "yuyv: the runtime did not try to reopen the camera"; }
kill -TERM \$pid
ticks=0
while alive \$pid && [ \$ticks -lt 50 ]; do
    ticks=\$((ticks + 1))
    sleep 0.1
done
if alive \$pid; then
    kill -KILL \$pid
    wait \$pid
    sed "s/^/yuyv> /" /tmp/yuyv.log
    bad "yuyv: SIGTERM while the camera was being reopened did not stop the runtime within 5 s"
fi
say "yuyv: stopped within \$((ticks / 10)).\$((ticks % 10)) s of SIGTERM while reopening the unplugged camera"
finish yuyv
echo -n "\$device" >/sys/bus/platform/drivers/vivid/bind || bad "cannot bind \$device again"

# 3. RGB24, unplugged and plugged back while running.
FRAMES=25 run rgb24 TINYLCM_SOURCE__CAMERA__FORMATS='["rgb24"]' TINYLCM_SOURCE__CAMERA__WIDTH=320 \\
    TINYLCM_SOURCE__CAMERA__HEIGHT=180 TINYLCM_SOURCE__CAMERA__FPS=5
wait_for rgb24 'first good inference' 90 || { finish rgb24; bad "rgb24: no first inference"; }
echo -n "\$device" >/sys/bus/platform/drivers/vivid/unbind || bad "cannot unbind \$device"
[ ! -e /dev/video0 ] || bad "rgb24: /dev/video0 is still there after the unbind"
say "rgb24: \$device unbound from vivid, /dev/video0 gone"
wait_for rgb24 'camera reopen failed' 20 || { kill \$pid; finish rgb24; bad "rgb24: the runtime did not try to reopen the camera"; }
echo -n "\$device" >/sys/bus/platform/drivers/vivid/bind || bad "cannot bind \$device again"
say "rgb24: \$device bound again"
wait_for rgb24 'camera reopened' 30 || { kill \$pid; finish rgb24; bad "rgb24: the runtime did not reopen the camera"; }
finish rgb24
say "all done"
GUEST

log=$WORK/console
args=(--machine raspi3b --binary "$BIN" --timeout 300 --log "$log" --guest-script "$WORK/guest.sh"
    --append iomem=relaxed)
[ -z "$modules" ] || args+=(--modules "$modules")
start=$SECONDS
"$ROOT/scripts/qemu-boot" "${args[@]}" >"$WORK/boot.out" 2>"$WORK/boot.err" || true
elapsed=$((SECONDS - start))

guest_fail=$(sed -n 's/^DEVICES: FAIL //p' "$log" | head -n1)
[ -z "$guest_fail" ] || fail "$guest_fail"
grep -q '^DEVICES: all done' "$log" || {
    cat "$WORK/boot.err" >&2
    fail "the guest script did not finish (see the console above)"
}
grep -q '^TINYLCM-QEMU: init up, .*machine Raspberry Pi Zero 2 W' "$log" ||
    fail "the guest did not run on the Zero 2 W device tree"

# 1. MJPEG.
offered=$(sed -n 's/^DEVICES: mjpeg: //p' "$log")
[[ "$offered" == *YUYV* && "$offered" == *RGB24* && "$offered" != *"offered: ["*MJPEG* ]] ||
    fail "vivid's offered formats are not as expected: $offered"
ok "vivid offers no MJPEG; the runtime refuses it and names what is there: $offered"

# 2. Negotiation, streaming, LED, button.
negotiated=$(grep -Eo 'camera: requested YUYV 200x150 @ 10 fps, granted YUYV [0-9]+x[0-9]+ @ [0-9.]+ fps' "$log" | head -n1)
[ -n "$negotiated" ] || fail "yuyv: the runtime did not report the negotiated format and size"
[[ "$negotiated" == *"granted YUYV 320x180"* ]] ||
    fail "yuyv: asked for 200x150, expected the smallest covering size 320x180: $negotiated"
ok "size negotiation: $negotiated"
grep -q '^yuyv> .*frame source: v4l2 /dev/video0 (.*) 320x180 YUYV' "$log" ||
    fail "yuyv: the frame source is not the V4L2 camera in YUYV 320x180"
yuyv_frames=$(sed -n 's/^yuyv> \([0-9]*\) frames in .*/\1/p' "$log" | tail -n1)
[ "${yuyv_frames:-0}" -ge 1 ] || fail "yuyv: no frames went through the model"
ok "YUYV: $yuyv_frames frames through the model from vivid over mmap streaming"
grep -q '^DEVICES: yuyv: LED (BCM 17) lit while running' "$log" || fail "yuyv: LED not seen lit"
ok "status LED: BCM 17 on pinctrl-bcm2835 lit while running ($(sed -n 's/^DEVICES: yuyv: LED levels while starting/starting/p' "$log"))"
stopped=$(sed -n 's/^DEVICES: yuyv: stopped within \([0-9.]*\) s .*/\1/p' "$log")
{ grep -q '^yuyv> .*camera reopen abandoned: stopping' "$log" && [ -n "$stopped" ] &&
    grep -Eq '^yuyv> [0-9]+ frames in .*ended: Stopped' "$log"; } ||
    fail "yuyv: SIGTERM during the camera's reopen back-off did not end the run as a stop"
ok "unplugged, then SIGTERM during the reopen back-off: stopped cleanly within $stopped s"
held=$(grep -o 'button held 2 s: .*' "$log" | head -n1)
{ grep -q '^yuyv> .*button pressed' "$log" && [ -n "$held" ]; } || fail "yuyv: button press not logged"
ok "button: BCM 27 pressed and held through the emulated GPIO: $held"

# 3. Disconnect and reconnect.
for pattern in 'camera: requested RGB24 320x180' 'capture failed' 'camera reopen failed' 'camera reopened: v4l2 /dev/video0 .* RGB24'; do
    grep -Eq "^rgb24> .*$pattern" "$log" || fail "rgb24: no '$pattern' in the runtime's log"
done
grep -Eq '^rgb24> 25 frames in .*ended: FrameLimit' "$log" ||
    fail "rgb24: the runtime did not finish its 25 frames after the reconnect"
attempts=$(grep -c '^rgb24> .*camera reopen failed' "$log")
ok "RGB24: unplugged (unbind) and plugged back (bind) mid-run; $attempts failed reopen attempt(s), then reopened and 25 frames to the frame limit"
ok "one boot of raspi3b with vivid: ${elapsed}s wall time"

# 4. The check can fail.
if [ -z "$mutant" ]; then
    for m in no-vivid:'the vivid module did not load' wrong-chip:'status LED .* is not lit .*no GPIO chip labelled pinctrl-bcm2711 \(the kernel has: pinctrl-bcm2835'; do
        name=${m%%:*}
        if "$0" --mutant "$name" >"$WORK/mutant.out" 2>&1; then
            cat "$WORK/mutant.out" >&2
            fail "mutant $name: the check passed"
        fi
        grep -Eq "^FAIL: .*${m#*:}" "$WORK/mutant.out" ||
            { cat "$WORK/mutant.out" >&2; fail "mutant $name: the check failed, but not as expected"; }
        ok "mutant $name fails: $(grep '^FAIL' "$WORK/mutant.out")"
    done
fi
