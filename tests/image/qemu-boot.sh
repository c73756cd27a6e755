#!/usr/bin/env bash
# The aarch64 runtime boots in qemu-system-aarch64 and reaches a first inference on the
# built-in default model (run by `./scripts/test image`):
#  1. scripts/qemu-boot on `-M virt -cpu cortex-a53`: a Debian arm64 kernel and an initramfs
#     with the cross-built tinylcm, glibc/libstdc++ from the cross sysroot and the aarch64
#     libLiteRt.so; the runtime's own console lines must show the model on LiteRT, its first
#     good inference, the frame count and a predicted class of the default model.
#  2. The same on `-M raspi3b` with the Raspberry Pi Zero 2 W device tree.
#  3. That it can fail: an initramfs without libLiteRt.so must not pass, and must fail
#     because the runtime found no inference library (not for an unrelated reason).
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

check_init


if ! (ensure_qemu_system) >"$WORK/install.log" 2>&1; then
    cat "$WORK/install.log" >&2
    missing "qemu-system-aarch64 (could not be installed, see above)" \
        "apt-get install qemu-system-arm, version 8 or later (Debian: from backports)"
fi

# The binary of the aarch64 layer's test build: same features (dev-dependencies on), so a
# whole-suite run compiles it once; built here when the check runs alone. Selecting one of
# that layer's integration tests is what makes cargo link the binary at all.
ensure_runtime_build_deps
ensure_aarch64_deps
BIN=$(cd "$ROOT" && binary_of_test_build tinylcm -p tinylcm --target aarch64-unknown-linux-gnu --test default_model)
FRAMES=3

# The default model's classes (runtime/models/default/default_f32.toml), so a predicted class is checked
# against what this model can say, not against any word.
LABELS=$(python3 - "$ROOT/runtime/models/default/default_f32.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(" ".join(tomllib.load(f)["labels"]))
PY
)
[ -n "$LABELS" ] || fail "no labels in runtime/models/default/default_f32.toml"

# boot MACHINE: scripts/qemu-boot must pass, and the console must carry the runtime's lines.
boot() {
    local machine=$1 log=$WORK/$1.log out
    out=$("$ROOT/scripts/qemu-boot" --machine "$machine" --binary "$BIN" --frames "$FRAMES" \
        --timeout 150 --log "$log" 2>"$WORK/$machine.err") || {
        cat "$WORK/$machine.err" >&2
        fail "$machine: scripts/qemu-boot failed"
    }
    grep -q "^TINYLCM-QEMU: init up, kernel .*-arm64" "$log" ||
        fail "$machine: /init never ran on the arm64 kernel"
    if [ "$machine" = raspi3b ]; then
        grep -q "machine Raspberry Pi Zero 2 W" "$log" ||
            fail "raspi3b: the kernel did not run on the Zero 2 W device tree"
    fi
    grep -q "^model builtin:default-f32 on litert (xnnpack)" "$log" ||
        fail "$machine: the runtime did not run the built-in default model on LiteRT"
    grep -q "first good inference: READY=1" "$log" ||
        fail "$machine: the runtime never reported its first good inference"
    grep -Eq "^$FRAMES frames in .* ended: FrameLimit" "$log" ||
        fail "$machine: the runtime did not run $FRAMES frames to the frame limit"
    local classes class
    classes=$(sed -n 's/^│ predicted \([^ ]*\) .*/\1/p' "$log")
    [ -n "$classes" ] || fail "$machine: no predicted class in the runtime's summary"
    for class in $classes; do
        [[ " $LABELS " == *" $class "* ]] ||
            fail "$machine: predicted class '$class' is not one of the default model's ($LABELS)"
    done
    grep -q "^TINYLCM-QEMU: tinylcm exit status 0$" "$log" ||
        fail "$machine: the runtime did not exit 0"
    printf 'ok: %s: %s\n' "$machine" "$(tail -n1 <<<"$out")"
}

boot virt
boot raspi3b

# 3. Without libLiteRt.so the runtime has no inference library on aarch64: no pass.
if "$ROOT/scripts/qemu-boot" --binary "$BIN" --frames 1 --timeout 120 --litert none \
    --log "$WORK/broken.log" >/dev/null 2>"$WORK/broken.err"; then
    fail "an initramfs without libLiteRt.so passed scripts/qemu-boot"
fi
grep -q "^TINYLCM-QEMU: starting tinylcm run" "$WORK/broken.log" ||
    fail "the initramfs without libLiteRt.so failed before the runtime started (see $WORK/broken.err)"
grep -q "no inference backend available: .*litert: cannot load libLiteRt.so" "$WORK/broken.log" ||
    fail "the runtime without libLiteRt.so failed, but not because LiteRT was missing"
grep -q "first good inference" "$WORK/broken.log" &&
    fail "the runtime without libLiteRt.so claimed a first inference"
printf 'ok: without libLiteRt.so the boot fails: %s\n' "$(tail -n1 "$WORK/broken.err")"
