#!/usr/bin/env bash
# BitBake parses our layer together with the real upstream layers, without network (run by
# `./scripts/test image`), for both boards:
#  1. the kas files pin exactly the upstream commits the layer is checked against
#     (MANIFEST.tsv of the layer tarballs), on the branches those commits are on;
#  2. kas checks the project out from those layers (KAS_PREMIRRORS) and writes the build
#     configuration a user's build gets; BitBake, offline (BB_NO_NETWORK), parses every recipe
#     of every layer with no error and no warning that names meta-tinylcm or our recipes;
#  3. what the parse resolved is what the device needs (bitbake -e values): U-Boot lands on the
#     boot partition under the name config.txt tells the firmware to load, the image is our
#     wks and file types, the distro features hold, the kernel command line is read-only and
#     leaves root= to the boot script, the runtime is built from this checkout,
#     and rauc-conf's real do_install puts system.conf and the keyring where system.conf's
#     keyring path points;
#  4. each of those assertions fails on the defect it guards against (a broken input).
# Usage: tests/image/bitbake-parse.sh [--keep] [BOARD...]   (rpi0-2w, cm4; default both)
#   --keep   use and keep the build folders in ~tinylcm-bitbake/keep: a second run parses
#            only what changed (for working on the layer; CI starts afresh). Warnings of
#            recipes taken from the parse cache are not seen again.
# The layers come from ../shared/yocto-layers beside the checkout, or TINYLCM_YOCTO_LAYERS.
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

[ "$(id -u)" -eq 0 ] || die "run as root: the check creates and uses the throwaway user $BITBAKE_USER"
ensure_bitbake_host
ensure_yocto_tools
KAS="$(yocto_venv)/bin/kas"
PY="$(yocto_venv)/bin/python"

keep=false
if [ "${1:-}" = --keep ]; then
    keep=true
    shift
fi
boards=("$@")
[ ${#boards[@]} -gt 0 ] || boards=(rpi0-2w cm4)

# Per-run folder in the throwaway user's home (BitBake's user must own its build folders).
check_init
if $keep; then
    RUN="$(bitbake_home)/keep"
    rm -rf "$RUN/tinylcm"
else
    RUN="$(bitbake_home)/run.$$"
    check_cleanup_hook() {
        rm -rf "$RUN"
    }
fi
mkdir -p "$RUN"

# --- 1. pins ------------------------------------------------------------------------------

REPOS="$WORK/repos"
yocto_layer_repos >"$REPOS"

# The kas files against the layer snapshots: KAS_DIR's base.yml declares each repository from
# the URL and on the branch its snapshot was taken, and base.lock.yml pins that very commit.
check_pins() {
    "$PY" - "$1/base.yml" "$1/base.lock.yml" "$REPOS" <<'PY'
import sys, yaml
base = yaml.safe_load(open(sys.argv[1]))["repos"]
lock = yaml.safe_load(open(sys.argv[2]))["overrides"]["repos"]
for line in open(sys.argv[3]):
    name, url, branch, commit, _repo = line.split()
    spec = base.get(name)
    if not spec:
        sys.exit(f"FAIL: base.yml does not declare {name}")
    if spec.get("url") != url:
        sys.exit(f"FAIL: base.yml: {name} from {spec.get('url')}, the layers were taken from {url}")
    if str(spec.get("branch")) != branch:
        sys.exit(f"FAIL: base.yml: {name} on branch {spec.get('branch')}, its pinned commit is on {branch}")
    got = (lock.get(name) or {}).get("commit")
    if got != commit:
        sys.exit(f"FAIL: base.lock.yml pins {name} at {got}, the checked layers are at {commit}")
    print(f"ok: {name}: {branch} at {commit[:12]}, as base.yml and base.lock.yml say")
PY
}
check_pins "$ROOT/yocto/kas" || exit 1

# --- 2. kas checkout and the parse ----------------------------------------------------------

# Every remote of base.yml is served from the repositories made from the tarballs.
KAS_PREMIRRORS=$(while read -r _name url _branch _commit repo; do
    printf '^%s$ file://%s\n' "$url" "$repo"
done <"$REPOS")
export KAS_PREMIRRORS

# The project as a user has it: this checkout's files (tracked and new, not ignored), in a git
# repository of its own, with a placeholder development PKI (the parse reads only the names).
PROJECT="$RUN/tinylcm"
copy_checkout "$ROOT" "$PROJECT"
mkdir -p "$PROJECT/yocto/pki/dev"
for f in ca.cert.pem dev.cert.pem dev.key.pem; do
    printf 'placeholder %s for the offline parse\n' "$f" >"$PROJECT/yocto/pki/dev/$f"
done
(
    cd "$PROJECT"
    # shellcheck disable=SC2031 # meant for this subshell only, as in bitbake.sh's own
    export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    git init -q -b main && git add -A &&
        git -c user.name=tinylcm -c user.email=tinylcm@localhost commit -q -m "checkout under test"
)

# kas checkout of BOARD into $RUN/kas (layers) and $RUN/build-<machine>, then the offline
# settings only this check adds.
kas_setup() {
    local file=$1 machine=$2 build="$RUN/build-$2"
    (
        cd "$PROJECT"
        # kas (root) and its git refuse repositories of another user: after a parse (of the
        # other board, or a first run with --keep) they are the BitBake user's; parse() hands
        # them back.
        chown -R root: "$PROJECT"
        [ ! -d "$RUN/kas" ] || chown -R root: "$RUN/kas"
        KAS_WORK_DIR="$RUN/kas" KAS_BUILD_DIR="$build" \
            "$KAS" checkout --skip repos_checkout "$file"
    ) >"$WORK/kas-$machine.log" 2>&1 || { cat "$WORK/kas-$machine.log" >&2; fail "kas checkout $file"; }
    cat >>"$build/conf/local.conf" <<EOF

# --- added by tests/image/bitbake-parse.sh: no network, everything in the run folder
BB_NO_NETWORK = "1"
DL_DIR = "$RUN/downloads"
SSTATE_DIR = "$RUN/sstate"
BB_HASHSERVE_DB_DIR = "\${SSTATE_DIR}"
EOF
}

# Parse BOARD's build and answer the queries (bitbake-query.py) into $WORK/<machine>.json.
parse() {
    local machine=$1 build="$RUN/build-$1"
    shift
    cp "$ROOT/tests/image/bitbake-query.py" "$RUN/bitbake-query.py"
    chown -R "$BITBAKE_USER:" "$RUN"
    as_bitbake_user "cd '$RUN/kas' && . openembedded-core/oe-init-build-env '$build' >/dev/null &&
        python3 '$RUN/bitbake-query.py' '$build/answers.json' $*" >"$WORK/parse-$machine.log" 2>&1 ||
        { tail -n 40 "$WORK/parse-$machine.log" >&2; fail "$machine: the parse did not run"; }
    cp "$build/answers.json" "$WORK/$machine.json"
}

# rauc-conf's real do_install for MACHINE: the files its SRC_URI resolves to are put where
# do_unpack would put them, then the function bitbake would run (with the functions and
# variables it uses, from the parse) runs into a fresh ${D}.
run_rauc_install() {
    local machine=$1 build="$RUN/build-$1"
    "$PY" - "$WORK/$machine.json" "$build/rauc-install.sh" <<'PY'
import json, shlex, sys
a = json.load(open(sys.argv[1]))
v = a["vars"]["rauc-conf"]
with open(sys.argv[2], "w") as f:
    f.write("set -e\n")
    f.write(f"rm -rf {shlex.quote(v['D'])} {shlex.quote(v['UNPACKDIR'])}\n")
    f.write(f"mkdir -p {shlex.quote(v['D'])} {shlex.quote(v['UNPACKDIR'])}\n")
    for path in a["fetch"]["rauc-conf"]:
        f.write(f"cp {shlex.quote(path)} {shlex.quote(v['UNPACKDIR'])}/\n")
    f.write(f"cd {shlex.quote(v['S'])}\n")
    f.write(a["runfiles"]["rauc-conf:do_install"])
    f.write("\ndo_install\n")
print(v["D"])
PY
}

# The quick checks (qemu-uboot-rpi.sh, boot-files.sh) evaluate meta-raspberrypi's cmdline.txt
# and boot files without BitBake (scripts/lib/rpi-bootfiles.py): MACHINE's CMDLINE and
# BOOT_FILES from it must be BitBake's.
check_stand_in() {
    "$PY" - "$WORK/$1.json" "$2" "$3" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
real_cmdline = a["vars"]["rpi-cmdline"]["CMDLINE"].split()
real_files = a["vars"]["tinylcm-image"]["RPI_EXTRA_IMAGE_BOOT_FILES"].split()
if sys.argv[2].split() != real_cmdline:
    sys.exit(f"FAIL: rpi-bootfiles.py's cmdline {sys.argv[2].split()} is not BitBake's {real_cmdline}")
if sorted(sys.argv[3].split()) != sorted(real_files):
    sys.exit(f"FAIL: rpi-bootfiles.py's boot files {sys.argv[3].split()} are not BitBake's {real_files}")
PY
}

for board in "${boards[@]}"; do
    entry=$(board_kas "$board") || exit 1
    read -r machine file <<<"$entry"
    kas_setup "$file" "$machine"
    start=$SECONDS
    parse "$machine" \
        tinylcm-image:IMAGE_BOOT_FILES,RPI_EXTRA_IMAGE_BOOT_FILES,WKS_FILE,WKS_TEMPLATE_PATH,IMAGE_FSTYPES,DISTRO_FEATURES,IMAGE_INSTALL,KERNEL_IMAGETYPE \
        tinylcm-runtime:SRC_URI,S,EXTERNALSRC,PV \
        rauc-conf:SRC_URI,RAUC_KEYRING_FILE,D,S,UNPACKDIR,nonarch_libdir \
        libtensorflow-lite-c:SRCREV_flatbuffers,FILESPATH flatbuffers:SRCREV,PV rpi-cmdline:CMDLINE \
        --runfile rauc-conf:do_install \
        --fetch rauc-conf \
        --wic tinylcm-image \
        --network tinylcm-image:meta-tensorflow-lite,meta-tinylcm libedgetpu-std:meta-tensorflow-lite \
        --provider rauc-conf base-files systemd-conf libtensorflow-lite-c libtensorflow-lite \
        rpi-config rpi-cmdline rpi-u-boot-scr libubootenv linux-raspberrypi rauc \
        libcamera v4l-utils wpa-supplicant parted libubootenv-bin packagegroup-core-boot \
        flatbuffers
    ok "$machine: parsed in $((SECONDS - start)) s"
    D=$(run_rauc_install "$machine")
    as_bitbake_user "sh '$RUN/build-$machine/rauc-install.sh'" >"$WORK/rauc-install-$machine.log" 2>&1 ||
        { cat "$WORK/rauc-install-$machine.log" >&2; fail "$machine: rauc-conf's do_install fails"; }
    if grep -q WARNING "$WORK/rauc-install-$machine.log"; then
        fail "$machine: rauc-conf's do_install warns: $(grep WARNING "$WORK/rauc-install-$machine.log")"
    fi
    KERNEL=$(firmware_kernel "$PROJECT/board/$machine/config.txt")
    "$PY" "$ROOT/tests/image/bitbake-verdict.py" --answers "$WORK/$machine.json" --machine "$machine" \
        --project "$PROJECT" --firmware-kernel "$KERNEL" --rauc-image "$D" \
        --keyring "$PROJECT/yocto/pki/dev/ca.cert.pem" || fail "$machine: see above"
    # shellcheck disable=SC2119 # no arguments: the image's own distro conf and bbappend
    check_stand_in "$machine" "$(firmware_cmdline)" "$(uboot_boot_files "$machine")" ||
        fail "$machine: the quick checks' stand-in for meta-raspberrypi disagrees with BitBake"
    ok "$machine: scripts/lib/rpi-bootfiles.py gives BitBake's cmdline.txt and U-Boot boot files"
done

# The wks as BitBake expands it for the image follows board/common/layout.toml.
"$PY" - "$WORK/$machine.json" "$WORK/expanded.wks" <<'PY'
import json, sys
open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["wic"]["tinylcm-image"]["wks"])
PY
"$PY" "$ROOT/tests/image/wks-layout.py" "$PROJECT/board/common/layout.toml" "$WORK/expanded.wks" ||
    fail "$machine: the wks BitBake expands does not follow layout.toml"
ok "$machine: the wks as BitBake expands it for tinylcm-image follows board/common/layout.toml"

# --- 4. each assertion fails on the defect it guards against --------------------------------

# Run the verdict on the last board's answers after EDIT (Python on `a`, the answers) with
# extra verdict ARGS, and require a FAIL line matching PATTERN.
expect_refused() {
    local what=$1 pattern=$2 edit=$3
    shift 3
    "$PY" - "$WORK/$machine.json" "$WORK/mutant.json" "$edit" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(a, open(sys.argv[2], "w"))
PY
    if "$PY" "$ROOT/tests/image/bitbake-verdict.py" --answers "$WORK/mutant.json" \
        --machine "$machine" --project "$PROJECT" --firmware-kernel "$KERNEL" --rauc-image "$D" \
        --keyring "$PROJECT/yocto/pki/dev/ca.cert.pem" "$@" >"$WORK/mutant.out"; then
        fail "$what: the verdict passed"
    fi
    grep -Eq "^FAIL: .*$pattern" "$WORK/mutant.out" ||
        { cat "$WORK/mutant.out" >&2; fail "$what: refused, but not as expected ($pattern)"; }
    ok "refused: $what ($(grep '^FAIL' "$WORK/mutant.out" | cut -c7-130))"
}
sed 's/^kernel=.*//; $a kernel=u-boot.bin' "$PROJECT/board/$machine/config.txt" >"$WORK/u-boot-bin.txt"
expect_refused "config.txt loading u-boot.bin (meta-raspberrypi names it kernel8.img)" \
    "firmware load u-boot.bin" "" --firmware-kernel "$(firmware_kernel "$WORK/u-boot-bin.txt")"
sed 's|^path=.*|path=/etc/rauc/keyring.pem|' "$PROJECT/board/$machine/system.conf" >"$WORK/etc-keyring.conf"
expect_refused "system.conf looking for the keyring in /etc/rauc (rauc-conf installs to /usr/lib/rauc)" \
    "keyring /etc/rauc/keyring.pem" "" --system-conf "$WORK/etc-keyring.conf"
echo "some other CA" >"$WORK/other-ca.pem"
expect_refused "an image trusting another CA than TINYLCM_RAUC_KEYRING" "is not .*TINYLCM_RAUC_KEYRING" \
    "" --keyring "$WORK/other-ca.pem"
expect_refused "the runtime fetched from a placeholder URL" "fetches git://example.invalid" \
    'a["vars"]["tinylcm-runtime"]["SRC_URI"] = "git://example.invalid/tinylcm.git;protocol=https " + a["vars"]["tinylcm-runtime"]["SRC_URI"]'
expect_refused "the runtime built from an unpacked source instead of the checkout" "not this checkout" \
    'a["vars"]["tinylcm-runtime"]["S"] = "/tmp/tinylcm-runtime-0.1.0+git"; a["vars"]["tinylcm-runtime"]["EXTERNALSRC"] = ""'
expect_refused "TFLite C configuring with network access" "keeps network access in do_configure" \
    'spec = next(iter(a["network"])); fn = next(f for f in a["network"][spec] if "libtensorflow-lite-c" in f); a["network"][spec][fn] = ["do_configure"]'
expect_refused "the image building TensorFlow twice (libedgetpu on by default)" "built twice" \
    'spec = next(iter(a["network"])); a["network"][spec]["/x/meta-tensorflow-lite/recipes-framework/tensorflow-lite/libtensorflow-lite_2.21.0.bb"] = []'
expect_refused "a flatbuffers pin other than meta-oe's" "SRCREV_flatbuffers" \
    'a["vars"]["libtensorflow-lite-c"]["SRCREV_flatbuffers"] = "0" * 40'
expect_refused "LAYERDEPENDS without meta-poky's collection" "lacks 'yocto'" \
    'l = next(l for l in a["layers"] if "tinylcm" in l["collections"]); l["depends"].remove("yocto")'
expect_refused "a parse warning about our layer" "warned about our layer" \
    'a["messages"].append(["WARNING", "/x/meta-tinylcm/recipes-core/rauc/rauc-conf.bbappend: example"])'
# shellcheck disable=SC2016 # Python code; ${CMDLINE_CMA} is BitBake's, left unexpanded on purpose
expect_refused "cmdline.txt without ro, with upstream's root= and its undefined CMDLINE_CMA" \
    "lacks ro|unexpanded" \
    'v = a["vars"]["rpi-cmdline"]; v["CMDLINE"] = v["CMDLINE"].replace("ro ", "root=/dev/mmcblk0p2 ") + " ${CMDLINE_CMA}"'
expect_refused "U-Boot missing from the boot partition" "which is .*, not U-Boot" \
    'v = a["vars"]["tinylcm-image"]; v["IMAGE_BOOT_FILES"] = v["IMAGE_BOOT_FILES"].replace("u-boot.bin;kernel8.img", "Image;kernel8.img")'
# shellcheck disable=SC2119 # no arguments: the image's own distro conf and bbappend
if out=$(check_stand_in "$machine" "$(firmware_cmdline) quiet" "$(uboot_boot_files "$machine")" 2>&1); then
    fail "a stand-in cmdline other than BitBake's passed"
fi
grep -q "^FAIL: rpi-bootfiles.py's cmdline" <<<"$out" || fail "stand-in: unexpected refusal: $out"
ok "refused: a stand-in cmdline.txt other than BitBake's"
cp -r "$ROOT/yocto/kas" "$WORK/kas-old-lock"
sed -i 's/"38da0e5866a953e664001ba90b5edad68d68cd5d"/"27424e2000000000000000000000000000000000"/' "$WORK/kas-old-lock/base.lock.yml"
if out=$(check_pins "$WORK/kas-old-lock" 2>&1); then
    fail "a lock file pinning meta-rauc elsewhere passed"
fi
grep -q "^FAIL: base.lock.yml pins meta-rauc" <<<"$out" || fail "pins: unexpected refusal: $out"
ok "refused: a lock file pinning meta-rauc at another commit than the parsed snapshot"
