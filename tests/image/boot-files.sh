#!/usr/bin/env bash
# What the image puts on the boot partition and around the boot chain, checked offline
# against the pinned meta-raspberrypi (run by `./scripts/test image`; the QEMU checks boot
# the boot script, this one checks the files that feed it):
#  1. cmdline.txt, as rpi-cmdline composes it from its CMDLINE_* knobs with our values
#     (scripts/lib/rpi-bootfiles.py): `ro`, no `root=` (boot.cmd adds the slot's), nothing
#     left unexpanded;
#  2. per board, the file the firmware starts (config.txt's kernel=, else kernel8.img for
#     arm_64bit=1) is the name RPI_EXTRA_IMAGE_BOOT_FILES gives U-Boot; no vc4 display
#     overlay in config.txt and DISABLE_VC4GRAPHICS = "1" in the distro (headless; the Zero
#     2 W otherwise got vc4-fkms-v3d from meta-raspberrypi and vc4-kms-v3d from us);
#  3. the systemd watchdog drop-in asks for no more than bcm2835-wdt's ~15 s, reboot included;
#  4. the OS bundle recipe, run with a stand-in `d`, reads its compatible from the board's
#     system.conf AND marks that file as a parse dependency (else BitBake's parse cache
#     keeps a stale compatible);
#  5. U-Boot's environment is redundant: the config fragment turns it on with the second
#     file's name, board/common/fw_env.config names both files, and libubootenv (what RAUC
#     writes through) alternates between copies made by U-Boot's mkenvimage and falls back
#     to the older copy when the newer one is torn by a power cut;
#  6. the slot is marked good by one thing only: the image leaves out rauc-mark-good;
#  7. every camera sensor the docs or config.txt say is detected has its overlay on the
#     boot partition (meta-raspberrypi's RPI_KERNEL_DEVICETREE_OVERLAYS).
# Last, each step can fail: a broken copy of the file it guards (the old one, mostly) must
# fail it.
#
# Usage: tests/image/boot-files.sh [NAME=FILE ...]   (replaces an input; self-check only)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
# shellcheck source=scripts/lib/check.sh
. "$ROOT/scripts/lib/check.sh"
# shellcheck source=scripts/lib/bitbake.sh
. "$ROOT/scripts/lib/bitbake.sh"
# shellcheck source=scripts/lib/rpi-boot.sh
. "$ROOT/scripts/lib/rpi-boot.sh"

L=$ROOT/yocto/meta-tinylcm
declare -A IN=(
    [distro]=$L/conf/distro/tinylcm.conf
    [cmdline-append]=$L/dynamic-layers/raspberrypi/recipes-bsp/bootfiles/rpi-cmdline.bbappend
    [image-append]=$L/dynamic-layers/raspberrypi/recipes-core/images/tinylcm-image.bbappend
    [config-raspberrypi0-2w-64]=$ROOT/board/raspberrypi0-2w-64/config.txt
    [config-raspberrypi4-64]=$ROOT/board/raspberrypi4-64/config.txt
    [watchdog]=$L/recipes-core/systemd/files/tinylcm-watchdog.conf
    [bundle]=$L/recipes-core/bundles/tinylcm-os-bundle_1.0.bb
    [uboot-cfg]=$L/dynamic-layers/raspberrypi/recipes-bsp/u-boot/files/tinylcm-env-redund.cfg
    [fw-env]=$ROOT/board/common/fw_env.config
    [image]=$L/recipes-core/images/tinylcm-image.bb
    [guide-image]=$ROOT/docs/guide/src/image.md
    [guide-updates]=$ROOT/docs/guide/src/image-updates.md
)
for arg in "$@"; do
    [ -n "${IN[${arg%%=*}]:-}" ] || die "unknown input ${arg%%=*} (one of: ${!IN[*]})"
    IN[${arg%%=*}]=${arg#*=}
done
BOARDS=(raspberrypi0-2w-64 raspberrypi4-64)

ensure_apt u-boot-tools libubootenv-tool
require_cmds python3 mkenvimage fw_printenv fw_setenv
check_init
LAYER_TARBALL=$(rpi_layer)

# --- 1. cmdline.txt -------------------------------------------------------------------------------
cmdline=$(firmware_cmdline "${IN[distro]}" "${IN[cmdline-append]}") || fail "cannot evaluate rpi-cmdline's CMDLINE"
case " $cmdline " in *" ro "*) ;; *) fail "cmdline.txt lacks ro (the slot is mounted read-write at boot): $cmdline" ;; esac
case " $cmdline " in *" root="*) fail "cmdline.txt has a fixed root= (boot.cmd adds the slot's): $cmdline" ;; esac
# shellcheck disable=SC2016 # the literal `${` of a variable BitBake did not expand
case $cmdline in *'${'*) fail "cmdline.txt keeps an unexpanded variable: $cmdline" ;; esac
ok "cmdline.txt (rpi-cmdline's knobs): $cmdline"

# --- 2. config.txt: the firmware's kernel is U-Boot; headless --------------------------------------
for board in "${BOARDS[@]}"; do
    config=${IN[config-$board]}
    name=$(uboot_boot_files "$board" "${IN[distro]}" "${IN[image-append]}" | uboot_name_on_partition)
    [ -n "$name" ] || fail "$board: RPI_EXTRA_IMAGE_BOOT_FILES puts no u-boot.bin on the boot partition"
    kernel=$(firmware_kernel "$config")
    [ "$kernel" = "$name" ] ||
        fail "$board: config.txt has the firmware start $kernel, but U-Boot is $name on the boot partition"
    if grep -Eq '^[[:space:]]*dtoverlay=vc4-' "$config"; then
        fail "$board: config.txt loads a vc4 display overlay: $(grep -E '^[[:space:]]*dtoverlay=vc4-' "$config")"
    fi
    ok "$board: the firmware starts $kernel, where meta-raspberrypi puts U-Boot; no vc4 overlay"
done
grep -Eq '^DISABLE_VC4GRAPHICS[[:space:]]*=[[:space:]]*"1"' "${IN[distro]}" ||
    fail "the distro does not set DISABLE_VC4GRAPHICS = \"1\" (meta-raspberrypi adds its VC4DTBO to config.txt)"
ok "the distro sets DISABLE_VC4GRAPHICS = \"1\""

# --- 3. the hardware watchdog ---------------------------------------------------------------------
python3 - "${IN[watchdog]}" "${IN[distro]}" <<'PY' || fail "the watchdog drop-in: see above"
import re, sys
conf, distro = (open(p).read() for p in sys.argv[1:])
m = re.search(r'^TINYLCM_RUNTIME_WATCHDOG_SEC \?= "([^"]*)"', distro, re.M)
value = conf.replace("@WATCHDOG_SEC@", m.group(1) if m else "@WATCHDOG_SEC@")

def seconds(span):
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "": 1}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        if unit not in units:
            sys.exit(f"unknown unit in {span!r}")
        total += float(number) * units[unit]
    return total

found = dict(re.findall(r"^(RuntimeWatchdogSec|RebootWatchdogSec)=(.*)$", value, re.M))
for key in ("RuntimeWatchdogSec", "RebootWatchdogSec"):
    if key not in found:
        sys.exit(f"FAIL: no {key}= in the drop-in")
    if not 0 < seconds(found[key]) <= 15:
        sys.exit(f"FAIL: {key}={found[key]} exceeds bcm2835-wdt's maximum of about 15 s")
print(f"ok: watchdog drop-in: RuntimeWatchdogSec={found['RuntimeWatchdogSec']} "
      f"RebootWatchdogSec={found['RebootWatchdogSec']} (bcm2835-wdt: at most ~15 s)")
PY

# --- 4. the bundle's compatible is a parse dependency ---------------------------------------------
python3 - "${IN[bundle]}" "$ROOT/board" "${BOARDS[@]}" <<'PY' || fail "the bundle recipe: see above"
import re, sys, types
recipe, board_dir, *boards = sys.argv[1:]
text = open(recipe).read()
m = re.search(r"^def tinylcm_compatible\(d\):\n(?:[ \t].*\n|\n)*", text, re.M)
if not m:
    sys.exit("FAIL: the bundle recipe has no tinylcm_compatible(d)")
if not re.search(r'^RAUC_BUNDLE_COMPATIBLE = "\$\{@tinylcm_compatible\(d\)\}"', text, re.M):
    sys.exit("FAIL: RAUC_BUNDLE_COMPATIBLE does not come from tinylcm_compatible(d)")
for board in boards:
    marked = []
    bb = types.SimpleNamespace(
        parse=types.SimpleNamespace(mark_dependency=lambda d, f: marked.append(f)),
        fatal=lambda msg: sys.exit(f"FAIL: bb.fatal: {msg}"))
    values = {"TINYLCM_BOARD_DIR": board_dir, "MACHINE": board}
    d = types.SimpleNamespace(getVar=lambda name, expand=True: values.get(name))
    scope = {"bb": bb}
    exec(m.group(0), scope)
    compatible = scope["tinylcm_compatible"](d)
    conf = f"{board_dir}/{board}/system.conf"
    want = re.search(r"^compatible=(.*)$", open(conf).read(), re.M).group(1)
    if compatible != want:
        sys.exit(f"FAIL: {board}: the recipe reads compatible {compatible!r}, system.conf has {want!r}")
    if conf not in marked:
        sys.exit(f"FAIL: {board}: the recipe reads {conf} at parse time without "
                 f"bb.parse.mark_dependency (marked: {marked}): BitBake's cache keeps a stale compatible")
print("ok: the OS bundle reads its compatible from board/<machine>/system.conf and marks it as a parse dependency")
PY

# --- 5. U-Boot's redundant environment, as U-Boot and libubootenv see it ---------------------------
cfg=${IN[uboot-cfg]}
[ -f "$cfg" ] || fail "no U-Boot config fragment at $cfg"
# ENV_REDUNDANT: U-Boot 2026.01's name (oe-core's u-boot_2026.01.bb); SYS_REDUNDAND_ENVIRONMENT
# no longer exists there and would be dropped from the configuration with a mere warning.
grep -qx 'CONFIG_ENV_REDUNDANT=y' "$cfg" || fail "$(basename "$cfg"): no CONFIG_ENV_REDUNDANT=y (U-Boot 2026.01's name for a redundant environment)"
redund=$(sed -n 's/^CONFIG_ENV_FAT_FILE_REDUND="\(.*\)"$/\1/p' "$cfg")
[ -n "$redund" ] || fail "$(basename "$cfg"): no CONFIG_ENV_FAT_FILE_REDUND"
append=$(dirname "$(dirname "$cfg")")/u-boot_%.bbappend
grep -q "file://$(basename "$cfg")" "$append" 2>/dev/null || fail "no u-boot bbappend beside $(dirname "$cfg") fetches $(basename "$cfg")"
mapfile -t envs < <(grep -v '^[[:space:]]*#' "${IN[fw-env]}" | awk 'NF >= 3')
[ ${#envs[@]} -eq 2 ] ||
    fail "fw_env.config names ${#envs[@]} environment copies; U-Boot keeps 2 (uboot.env and $redund): fw_setenv would write a format U-Boot does not read"
read -r first _ first_size <<<"${envs[0]}"
read -r second _ second_size <<<"${envs[1]}"
[[ $first = /boot/uboot.env && $second = "/boot/$redund" ]] ||
    fail "fw_env.config names $first and $second; U-Boot writes /boot/uboot.env and /boot/$redund"
[ "$first_size" = "$second_size" ] || fail "fw_env.config: the two copies differ in size ($first_size, $second_size)"
# Two copies as U-Boot's own tool makes them, then fw_setenv through fw_env.config with only
# the device paths pointed here (what RAUC's backend does on the device).
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n' >"$WORK/env.txt"
mkenvimage -r -s "$first_size" -o "$WORK/uboot.env" "$WORK/env.txt"
cp "$WORK/uboot.env" "$WORK/$redund"
sed -e "s|^/boot/uboot.env|$WORK/uboot.env|" -e "s|^/boot/$redund|$WORK/$redund|" "${IN[fw-env]}" >"$WORK/fw_env.config"
getenv() { fw_printenv -c "$WORK/fw_env.config" -n "$1" 2>/dev/null; }
for n in 2 1 0; do
    fw_setenv -c "$WORK/fw_env.config" BOOT_A_LEFT "$n"
    [ "$(getenv BOOT_A_LEFT)" = "$n" ] || fail "fw_setenv BOOT_A_LEFT $n, fw_printenv reads '$(getenv BOOT_A_LEFT)'"
done
cmp -s "$WORK/uboot.env" "$WORK/$redund" && fail "fw_setenv wrote both copies alike: not a redundant environment"
# A power cut tears the copy being written: the reader takes the other, one write older.
for f in "$WORK/uboot.env" "$WORK/$redund"; do
    cp "$f" "$WORK/saved"
    printf 'torn' | dd of="$f" bs=1 seek=100 conv=notrunc status=none
    got=$(getenv BOOT_A_LEFT || true)
    cp "$WORK/saved" "$f"
    case $got in 0 | 1) ;; *) fail "with $(basename "$f") torn, fw_printenv reads BOOT_A_LEFT='$got' (expected the other copy's 0 or 1)" ;; esac
done
ok "U-Boot's environment is redundant ($(basename "$first") and $redund, $first_size each): fw_setenv alternates, a torn copy falls back to the other"

# --- 6. one mark-good per boot ----------------------------------------------------------------------
python3 - "${IN[image]}" <<'PY' || fail "the image recipe: see above"
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
installs = " ".join(re.findall(r'^IMAGE_INSTALL[^=]*=\s*"([^"]*)"', text, re.M)).split()
bad = " ".join(re.findall(r'^BAD_RECOMMENDATIONS[^=]*=\s*"([^"]*)"', text, re.M)).split()
if "rauc-mark-good" in installs:
    sys.exit("FAIL: the image installs rauc-mark-good: the slot is marked good twice per boot "
             "(it and tinylcm-healthcheck each write U-Boot's environment)")
if "rauc-mark-good" not in bad:
    sys.exit("FAIL: rauc recommends rauc-mark-good and the image does not refuse it (BAD_RECOMMENDATIONS)")
print("ok: the health gate is the image's only mark-good (rauc-mark-good left out)")
PY

# --- 7. the camera sensors the docs promise have their overlays ------------------------------------
python3 - "$LAYER_TARBALL" "${IN[guide-image]}" "${IN[guide-updates]}" "${IN[config-raspberrypi0-2w-64]}" "${IN[config-raspberrypi4-64]}" <<'PY' || fail "camera overlays: see above"
import re, sys, tarfile
tarball, *docs = sys.argv[1:]
with tarfile.open(tarball) as tar:
    inc = next(tar.extractfile(m).read().decode() for m in tar.getmembers()
               if m.name.endswith("conf/machine/include/rpi-base.inc"))
shipped = set(re.findall(r"overlays/((?:imx|ov)\d+)\.dtbo", inc))
sensor = re.compile(r"\b((?:imx|ov)\d{3,4})\b")
for doc in docs:
    for n, line in enumerate(open(doc), 1):
        # A sentence about what the image detects or ships (not a how-to elsewhere).
        if not re.search(r"auto-detect|detected|camera_auto_detect", line):
            continue
        for name in sensor.findall(line):
            if name not in shipped:
                sys.exit(f"FAIL: {doc}:{n} names {name} as detected, but meta-raspberrypi ships "
                         f"overlays only for {', '.join(sorted(shipped))}")
print(f"ok: the camera sensors named as detected have overlays on the boot partition ({', '.join(sorted(shipped))})")
PY

[ $# -eq 0 ] || exit 0

# --- the checks can fail ----------------------------------------------------------------------------
mutant() { # WHAT INPUT SED PATTERN
    expect_failure_on_copy "$1" "${IN[$2]}" "$3" "$4" "$2="
}
mutant "cmdline without ro" cmdline-append 's/"ro /"/' "lacks ro"
mutant "cmdline with CMDLINE_CMA undefined" cmdline-append '/^CMDLINE_CMA/d' "unexpanded variable"
mutant "config.txt with kernel=u-boot.bin" config-raspberrypi0-2w-64 's/^arm_64bit=1$/arm_64bit=1\nkernel=u-boot.bin/' "firmware start u-boot.bin, but U-Boot is kernel8.img"
mutant "config.txt with the vc4 overlay" config-raspberrypi4-64 's/^gpu_mem=64$/dtoverlay=vc4-kms-v3d\ngpu_mem=64/' "vc4 display overlay"
mutant "a distro without DISABLE_VC4GRAPHICS" distro '/^DISABLE_VC4GRAPHICS/d' "DISABLE_VC4GRAPHICS"
mutant "RebootWatchdogSec=2min" watchdog 's/^RebootWatchdogSec=.*/RebootWatchdogSec=2min/' "RebootWatchdogSec=2min exceeds"
mutant "a bundle recipe without mark_dependency" bundle '/mark_dependency/d' "without bb.parse.mark_dependency"
mutant "a one-file fw_env.config" fw-env '/uboot-redund.env/d' "names 1 environment copies"
mutant "a U-Boot fragment with the pre-2025 symbol" uboot-cfg 's/^CONFIG_ENV_REDUNDANT=y/CONFIG_SYS_REDUNDAND_ENVIRONMENT=y/' "no CONFIG_ENV_REDUNDANT=y"
mutant "an image with rauc-mark-good" image 's/^                  rauc \\$/                  rauc rauc-mark-good \\/' "installs rauc-mark-good"
mutant "a guide promising ov5647" guide-image 's/auto-detected/auto-detected (ov5647 too)/' "names ov5647"
printf 'boot-files: all checks passed\n'
