#!/usr/bin/env bash
# Offline checks of the kas project files in yocto/kas/ (run by `./scripts/test image`):
#  1. every file validates against kas' own schema, and the lock file pins full, quoted commits
#     of repos that base.yml declares;
#  2. `kas dump` and `kas checkout` of each board run against local bare stub repositories (one
#     per remote, built here from what base.yml declares; URLs rewritten with KAS_PREMIRRORS),
#     the lock file's commits are applied, and the generated build/conf/bblayers.conf and
#     local.conf hold our layer, every layer the image needs, DISTRO ??= "tinylcm", the
#     machine and our settings; TINYLCM_REPO's inline Python, evaluated as bitbake would,
#     finds this checkout;
#  3. `scripts/build-image --dry-run` for each board prints the kas command for that board's
#     file and the checks it made;
#  4. the checks can fail: broken copies (an unquoted all-digit commit, a missing machine, a
#     dropped layer, a lost setting) must each be refused.
# The real fetch, `kas lock` and bitbake need the network: scripts/update-kas-lock and
# scripts/build-image run them on a networked machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
# shellcheck source=scripts/lib/check.sh
. "$ROOT/scripts/lib/check.sh"
ensure_yocto_tools
VENV=$(yocto_venv)
KAS="$VENV/bin/kas"
PY="$VENV/bin/python"

check_init


# Boards: kas file and the machine it must select.
BOARDS=("rpi0-2w-64.yml raspberrypi0-2w-64" "cm4-64.yml raspberrypi4-64")
# Layers the image needs (bblayers.conf entries, by directory name).
NEEDED_LAYERS=(meta meta-poky meta-oe meta-python meta-multimedia meta-raspberrypi meta-rauc
    meta-tensorflow-lite meta-tinylcm)

export GIT_AUTHOR_NAME=kas-test GIT_AUTHOR_EMAIL=kas-test@localhost
export GIT_COMMITTER_NAME=kas-test GIT_COMMITTER_EMAIL=kas-test@localhost
# The stubs are built with git: no user or system configuration may change them.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

# --- 1. schema and lock file ------------------------------------------------------------------

# Schema-validate FILEs with kas' own schema (what `kas` checks before anything is cloned; its
# include handler needs a full kas context, so the schema is applied directly).
validate() {
    "$PY" - "$@" <<'PY'
import os, sys, yaml, jsonschema
from kas.configschema import CONFIGSCHEMA
for path in sys.argv[1:]:
    with open(path) as f:
        config = yaml.safe_load(f)
    try:
        jsonschema.validate(config, CONFIGSCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        sys.exit(f"{os.path.basename(path)}: not a valid kas file at {where}: {e.message[:200]}")
    print(f"ok: yocto/kas/{os.path.basename(path)}: valid under kas' schema")
PY
}

# Full quoted commits, of repos base.yml declares. Reads the raw text too: YAML turns an
# unquoted all-digit hash into a number, which kas refuses.
check_lock() {
    "$PY" - "$1" "$2" <<'PY'
import re, sys, yaml
lock_file, base_file = sys.argv[1:]
text = open(lock_file).read()
lock = yaml.safe_load(text)
base = yaml.safe_load(open(base_file))
repos = (lock.get("overrides") or {}).get("repos") or {}
if not repos:
    sys.exit(f"{lock_file}: pins no repo")
for name, spec in repos.items():
    if name not in base["repos"]:
        sys.exit(f"{lock_file}: pins {name}, which base.yml does not declare")
    commit = spec.get("commit")
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        sys.exit(f"{lock_file}: {name}: commit {commit!r} is not a full lower-case hash string")
    if not re.search(r'commit:\s*"%s"' % commit, text):
        sys.exit(f"{lock_file}: {name}: quote the commit (commit: \"{commit}\")")
    print(name)
PY
}

# --- 2. stub remotes, dump and checkout -------------------------------------------------------

STUBS="$WORK/stubs"
# Every https remote is served from $STUBS/<host>/<path>.
export KAS_PREMIRRORS="https://([^/]*)/(.*) file://$STUBS/\\1/\\2"

# One bare repo per remote of base.yml, on the branch base.yml names, with a conf/layer.conf in
# each layer directory it lists (or at the top when it lists none) and, for oe-core, an
# oe-init-build-env that only makes the build folder (kas sources it; bitbake never runs here).
make_stubs() {
    "$PY" - "$1" <<'PY' >"$WORK/remotes"
import sys, yaml
base = yaml.safe_load(open(sys.argv[1]))
for name, spec in base["repos"].items():
    if not spec or not spec.get("url"):
        continue
    layers = [l for l, v in (spec.get("layers") or {".": None}).items() if v != "disabled"]
    print(name, spec["url"], spec.get("branch") or "master", ",".join(layers) or "-")
PY
    local name url branch layers src dest layer
    while read -r name url branch layers; do
        src="$WORK/src/$name"
        dest="$STUBS/${url#https://}"
        mkdir -p "$src"
        git -C "$src" init -q -b "$branch"
        if [ "$layers" != "-" ]; then
            for layer in ${layers//,/ }; do
                mkdir -p "$src/$layer/conf"
                printf 'BBFILE_COLLECTIONS += "%s"\n' "${layer//[^a-z0-9]/}" >"$src/$layer/conf/layer.conf"
            done
        fi
        if [ "$name" = openembedded-core ]; then
            # shellcheck disable=SC2016 # written for kas to source, not expanded here
            printf '%s\n' '# stub: the build folder only' 'mkdir -p "$1/conf" && cd "$1"' \
                >"$src/oe-init-build-env"
            chmod +x "$src/oe-init-build-env"
        fi
        printf 'stub of %s\n' "$url" >"$src/README"
        git -C "$src" add -A
        git -C "$src" commit -q -m stub
        mkdir -p "$(dirname "$dest")"
        git clone -q --bare "$src" "$dest"
    done <"$WORK/remotes"
}

# A project folder: a git checkout holding yocto/kas (from $1) and our layer (the real one when
# this branch has it, else a stub conf/layer.conf: the layer's content is not kas' concern).
make_project() {
    local kasdir=$1 project=$2
    mkdir -p "$project/yocto"
    cp -r "$kasdir" "$project/yocto/kas"
    if [ -f "$ROOT/yocto/meta-tinylcm/conf/layer.conf" ]; then
        cp -r "$ROOT/yocto/meta-tinylcm" "$project/yocto/"
    else
        mkdir -p "$project/yocto/meta-tinylcm/conf"
        echo 'BBFILE_COLLECTIONS += "tinylcm"' >"$project/yocto/meta-tinylcm/conf/layer.conf"
    fi
    git -C "$project" init -q
    git -C "$project" add -A
    git -C "$project" commit -q -m project
}

# kas dump + checkout of BOARD_FILE in PROJECT into WORKDIR; all output in WORKDIR/kas.log.
# --skip repos_checkout: the stubs do not hold the pinned commits.
run_kas() {
    local project=$1 file=$2 workdir=$3
    mkdir -p "$workdir"
    (
        cd "$project"
        export KAS_WORK_DIR=$workdir
        "$KAS" dump --skip repos_checkout "yocto/kas/$file" >"$workdir/dump.yml" &&
            "$KAS" checkout --skip repos_checkout "yocto/kas/$file"
    ) >"$workdir/kas.log" 2>&1
}

# Assertions on one board's dump and generated configuration. Prints one line per check.
check_board() {
    local project=$1 file=$2 machine=$3 workdir=$4 conf="$4/build/conf"
    [ -f "$conf/bblayers.conf" ] || fail "$file: kas wrote no bblayers.conf"
    [ -f "$conf/local.conf" ] || fail "$file: kas wrote no local.conf"
    "$PY" - "$project" "$file" "$machine" "$workdir" "$ROOT/yocto/kas/base.lock.yml" \
        "${NEEDED_LAYERS[@]}" <<'PY'
import os, re, sys, yaml
project, file, machine, workdir, lock_file, *needed = sys.argv[1:]
conf = os.path.join(workdir, "build", "conf")
topdir = os.path.join(workdir, "build")

def fail(msg):
    sys.exit(f"{file}: {msg}")

dump = yaml.safe_load(open(os.path.join(workdir, "dump.yml")))
if dump.get("machine") != machine:
    fail(f"kas dump: machine {dump.get('machine')!r}, expected {machine!r}")
if dump.get("distro") != "tinylcm":
    fail(f"kas dump: distro {dump.get('distro')!r}, expected 'tinylcm'")
lock = yaml.safe_load(open(lock_file))["overrides"]["repos"]
for name, spec in lock.items():
    # kas dump keeps the lock file as an `overrides` section (merged when kas checks out).
    got = (((dump.get("overrides") or {}).get("repos") or {}).get(name) or {}).get("commit")
    if got != spec["commit"]:
        fail(f"kas dump: {name} at {got!r}: the lock file's {spec['commit']} was not applied")
print(f"ok: {file}: kas dump: machine {machine}, distro tinylcm, {len(lock)} commits from the lock file")

# bblayers.conf: BBLAYERS entries, ${TOPDIR} expanded.
text = open(os.path.join(conf, "bblayers.conf")).read()
m = re.search(r'BBLAYERS\s*\?*=\s*"(.*?)"', text, re.S)
if not m:
    fail("bblayers.conf has no BBLAYERS")
layers = [os.path.normpath(l.replace("${TOPDIR}", topdir))
          for l in m.group(1).replace("\\\n", " ").split()]
names = [os.path.basename(l) for l in layers]
for layer in needed:
    if layer not in names:
        fail(f"bblayers.conf lacks {layer}: {names}")
ours = layers[names.index("meta-tinylcm")]
if ours != os.path.join(os.path.realpath(project), "yocto", "meta-tinylcm"):
    fail(f"bblayers.conf: meta-tinylcm is {ours}, not this checkout's")
for l in layers:
    if not os.path.isfile(os.path.join(l, "conf", "layer.conf")):
        fail(f"bblayers.conf names {l}, which has no conf/layer.conf")
print(f"ok: {file}: bblayers.conf: {len(layers)} layers, each with conf/layer.conf, incl. {' '.join(needed)}")

local = open(os.path.join(conf, "local.conf")).read()
def assigned(var, value, op="="):
    if not re.search(r'^%s\s*%s\s*"%s"\s*$' % (re.escape(var), re.escape(op), re.escape(value)), local, re.M):
        fail(f'local.conf lacks {var} {op} "{value}"')
assigned("DISTRO", "tinylcm", "??=")
assigned("MACHINE", machine, "??=")
for var, value in [("RPI_USE_U_BOOT", "1"), ("ENABLE_UART", "1"), ("VIDEO_CAMERA", "0"),
                   ("TINYLCM_BOARD_DIR", "${TINYLCM_REPO}/board"),
                   ("RAUC_KEYRING_FILE", "${TINYLCM_PKI_DIR}/ca.cert.pem"),
                   ("RAUC_CERT_FILE", "${TINYLCM_PKI_DIR}/dev.cert.pem"),
                   ("RAUC_KEY_FILE", "${TINYLCM_PKI_DIR}/dev.key.pem")]:
    assigned(var, value)
assigned("TINYLCM_PKI_DIR", "${TINYLCM_REPO}/yocto/pki/dev", "?=")
assigned("LICENSE_FLAGS_ACCEPTED", "synaptics-killswitch", "+=")
print(f"ok: {file}: local.conf: DISTRO ??= tinylcm, MACHINE ??= {machine}, U-Boot, UART, camera, board dir, RAUC keys")

# TINYLCM_REPO is inline Python: evaluate it the way bitbake does (${@...} with `d` and `os`)
# over this BBLAYERS, and expect this checkout, whose board/ the image must use.
m = re.search(r'^TINYLCM_REPO\s*=\s*"\$\{@(.*)\}"\s*$', local, re.M)
if not m:
    fail("local.conf lacks TINYLCM_REPO = \"${@...}\"")
class D:
    def getVar(self, name):
        return {"BBLAYERS": " ".join(layers)}[name]
repo = eval(m.group(1), {"os": os, "d": D()})
if os.path.realpath(repo) != os.path.realpath(project):
    fail(f"TINYLCM_REPO evaluates to {repo}, expected {project}")
print(f"ok: {file}: TINYLCM_REPO evaluates to this checkout, so TINYLCM_BOARD_DIR is its board/")
PY
}

# All of 2. for the kas files in KASDIR; stops at the first failure (non-zero status).
check_kasdir() {
    local kasdir=$1 tag=$2 project="$WORK/$2/project" entry file machine
    validate "$kasdir"/*.yml >/dev/null || return 1
    check_lock "$kasdir/base.lock.yml" "$kasdir/base.yml" >/dev/null || return 1
    make_project "$kasdir" "$project"
    for entry in "${BOARDS[@]}"; do
        read -r file machine <<<"$entry"
        if ! run_kas "$project" "$file" "$WORK/$tag/$file"; then
            sed 's/^/  kas: /' "$WORK/$tag/$file/kas.log" >&2
            printf '%s: kas dump/checkout failed\n' "$file" >&2
            return 1
        fi
        check_board "$project" "$file" "$machine" "$WORK/$tag/$file" || return 1
    done
}

make_stubs "$ROOT/yocto/kas/base.yml"
ok "stub remotes: $(wc -l <"$WORK/remotes") bare repos, URLs rewritten by KAS_PREMIRRORS"
validate "$ROOT"/yocto/kas/*.yml || fail "schema"
pinned=$(check_lock "$ROOT/yocto/kas/base.lock.yml" "$ROOT/yocto/kas/base.yml") || fail "lock file"
ok "base.lock.yml: full quoted commits for $(echo "$pinned" | tr '\n' ' ')"
check_kasdir "$ROOT/yocto/kas" good || fail "the kas files"

# --- 3. scripts/build-image --dry-run ---------------------------------------------------------

# A development PKI as scripts/dev-pki leaves it (the dry run only looks for the files).
mkdir -p "$WORK/pki" "$WORK/no-pki"
for f in ca.cert.pem dev.cert.pem dev.key.pem; do echo "test $f" >"$WORK/pki/$f"; done
for entry in "rpi0-2w rpi0-2w-64.yml raspberrypi0-2w-64" "cm4 cm4-64.yml raspberrypi4-64" \
    "raspberrypi4-64 cm4-64.yml raspberrypi4-64" "raspberrypi0-2w-64 rpi0-2w-64.yml raspberrypi0-2w-64"; do
    read -r board file machine <<<"$entry"
    out=$(TINYLCM_PKI_DIR="$WORK/pki" "$ROOT/scripts/build-image" --dry-run --work-dir "$WORK/wd" "$board" 2>&1) ||
        fail "build-image --dry-run $board failed: $out"
    grep -q "kas build $ROOT/yocto/kas/$file\$" <<<"$out" || fail "build-image $board: no 'kas build .../$file' in: $out"
    grep -q "KAS_BUILD_DIR=$WORK/wd/build-$machine " <<<"$out" || fail "build-image $board: no build folder for $machine in: $out"
    for what in "disk: " "memory: " "kas: " "host tools" "time (estimates"; do
        grep -q "$what" <<<"$out" || fail "build-image $board: the dry run does not report '$what': $out"
    done
    grep -q "^  ok  *RAUC PKI: $WORK/pki" <<<"$out" || fail "build-image $board: PKI in $WORK/pki not found: $out"
    ok "build-image --dry-run $board: kas build yocto/kas/$file into build-$machine; disk, memory, tools, kas, PKI, time"
done
out=$(TINYLCM_PKI_DIR="$WORK/no-pki" "$ROOT/scripts/build-image" --dry-run --work-dir "$WORK/wd" cm4 2>&1) ||
    fail "build-image --dry-run without PKI failed: $out"
grep -q "PROBLEM  RAUC PKI: ca.cert.pem dev.cert.pem dev.key.pem missing .*scripts/dev-pki" <<<"$out" ||
    fail "build-image: a missing PKI is not reported: $out"
ok "build-image --dry-run: a missing PKI is reported with what to run"
if out=$(TINYLCM_PKI_DIR="$WORK/no-pki" "$ROOT/scripts/build-image" --work-dir "$WORK/wd" cm4 2>&1); then
    fail "build-image started a build without a PKI: $out"
fi
[ ! -e "$WORK/wd" ] || fail "build-image without a PKI created its work folder before refusing"
grep -q "must be fixed before building" <<<"$out" || fail "build-image: unclear refusal: $out"
ok "build-image without a PKI refuses before kas runs"
for bad in raspberrypi5 ""; do
    if out=$("$ROOT/scripts/build-image" --dry-run $bad 2>&1); then
        fail "build-image accepted board '$bad'"
    fi
    grep -q "rpi0-2w (raspberrypi0-2w-64) or cm4 (raspberrypi4-64)" <<<"$out" ||
        fail "build-image: the error for board '$bad' does not list the boards: $out"
done
ok "build-image: an unknown or missing board is refused with the list of boards"
"$ROOT/scripts/update-kas-lock" --help | grep -q "kas lock" || fail "update-kas-lock --help"
if "$ROOT/scripts/update-kas-lock" --bogus >/dev/null 2>&1; then fail "update-kas-lock accepted --bogus"; fi
ok "update-kas-lock: --help, unknown arguments refused (the lock itself needs the network)"

# --- 4. broken copies must fail ---------------------------------------------------------------

# Copy yocto/kas, apply a python edit to one file, and expect the checks above to refuse it.
expect_broken() {
    local what=$1 file=$2 edit=$3 tag dir
    tag="broken-$(echo "$what" | tr -c 'a-z0-9' '-')"
    dir="$WORK/$tag-kas"
    cp -r "$ROOT/yocto/kas" "$dir"
    "$PY" - "$dir/$file" "$edit" <<'PY'
import sys
path, edit = sys.argv[1:]
old, new = edit.split("=>", 1)
text = open(path).read()
if old not in text:
    sys.exit(f"the test's edit does not apply to {path}: {old!r}")
open(path, "w").write(text.replace(old, new, 1))
PY
    if (check_kasdir "$dir" "$tag") >"$WORK/$tag.out" 2>&1; then
        cat "$WORK/$tag.out" >&2
        fail "a copy with $what passed the checks"
    fi
    ok "refused: $what ($(grep -v '^ok:\|^  kas:' "$WORK/$tag.out" | tail -n1 | sed "s|$WORK/||" | cut -c1-110))"
}
# The cases, run two at a time (each is a kas dump and checkout of a copy); reported in order.
CASES=()
add_case() { CASES+=("$1"$'\x1f'"$2"$'\x1f'"$3"); }
add_case "an unquoted all-digit commit" base.lock.yml \
    'commit: "f62c67921474370829d24a4fa01ef88543f3906b"=>commit: 1234567890123456789012345678901234567890'
add_case "an abbreviated commit" base.lock.yml \
    '"f87ee8eab434497e3a1f8329013a4af5415cbd1e"=>"f87ee8ea"'
add_case "no machine in the Zero 2 W file" rpi0-2w-64.yml 'machine: raspberrypi0-2w-64=>'
add_case "the CM4 file naming another machine" cm4-64.yml \
    'machine: raspberrypi4-64=>machine: raspberrypi4'
add_case "meta-rauc left out" base.yml '  meta-rauc:
    url: https://github.com/rauc/meta-rauc.git
    branch: wrynose
=>'
add_case "U-Boot off" base.yml 'RPI_USE_U_BOOT = "1"=>RPI_USE_U_BOOT = "0"'
add_case "another distro" base.yml 'distro: tinylcm=>distro: poky'
add_case "a TINYLCM_REPO that finds another layer" base.yml \
    "== 'meta-tinylcm'=>== 'meta-rauc'"
run_case() {
    local what file edit
    IFS=$'\x1f' read -r -d '' what file edit <<<"${CASES[$1]}" || true
    expect_broken "$what" "$file" "${edit%$'\n'}" >"$WORK/case-$1.out" 2>&1
}
for ((i = 0; i < ${#CASES[@]}; i += 2)); do
    pids=()
    for j in $i $((i + 1)); do
        [ "$j" -lt ${#CASES[@]} ] || continue
        run_case "$j" &
        pids+=("$j:$!")
    done
    for p in "${pids[@]}"; do
        if ! wait "${p#*:}"; then
            cat "$WORK/case-${p%%:*}.out" >&2
            exit 1
        fi
        cat "$WORK/case-${p%%:*}.out"
    done
done
