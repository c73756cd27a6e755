#!/usr/bin/env bash
# Offline quality checks of the Yocto layer yocto/meta-tinylcm (no bitbake needed):
#  1. oelint-adv (pinned, release wrynose) on every .bb/.bbappend/.bbclass/.conf/.inc of the
#     layer with the layer's .oelint.cfg: any finding fails, info included;
#  2. what yocto-check-layer's README/SECURITY tests want, and the licence file;
#  3. every top-level statement of every .bbappend is gated on the tinylcm distro override
#     (test_signatures: adding the layer must change nothing for other distros);
#  4. the wks and the fstab follow board/common/layout.toml;
#  5. the checks can fail: an ungated bbappend and a recipe without LICENSE, in a temp copy
#     of the layer, must be reported by oelint-adv and step 3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
ensure_yocto_tools
require_cmds python3

LAYER="$ROOT/yocto/meta-tinylcm"
OELINT="$(yocto_venv)/bin/oelint-adv"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The files oelint-adv and the gating check look at, relative to LAYER_DIR.
layer_files() {
    (cd "$1" && find . -type f \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' \
        -o -name '*.conf' -o -name '*.inc' \) -not -path './files/*' | sort)
}

# oelint-adv on LAYER_DIR [FILE...] (all layer files by default); findings go to stdout.
# Returns 0 only when it exits 0 and prints nothing.
run_oelint() {
    local dir=$1 out rc=0
    shift
    local files=("$@")
    [ ${#files[@]} -gt 0 ] || mapfile -t files < <(layer_files "$dir")
    out=$(cd "$dir" && OELINT_CONFIG="$dir/.oelint.cfg" "$OELINT" --quiet --relpaths \
        --release wrynose "${files[@]}" 2>&1) || rc=$?
    [ -z "$out" ] || printf '%s\n' "$out"
    [ "$rc" -eq 0 ] && [ -z "$out" ]
}

# Step 3 on LAYER_DIR: print every top-level bbappend statement that does not act only under
# the tinylcm override, and fail if there is one.
check_gated() {
    python3 - "$1" <<'PY'
import pathlib, re, sys
bad = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.bbappend")):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith(("#", " ", "\t", "}", '"')):
            i += 1
            continue
        if re.match(r"python\s*(__anonymous)?\s*\(\)\s*\{", line):
            # Anonymous python (a varflag cannot carry an override) must test the override.
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("}")), len(lines))
            if "'tinylcm'" not in "\n".join(lines[i:end]):
                bad.append(f"{path}:{i + 1}: anonymous python that does not check the tinylcm override")
            i = end + 1
            continue
        if re.match(r"(include|require)\s", line):
            # Taking in a file is gated by its path expression: empty outside the distro.
            if "'tinylcm'" not in line:
                bad.append(f"{path}:{i + 1}: include not conditional on the tinylcm override")
            i += 1
            continue
        # An assignment, flag or function header: the override must be part of its name.
        name = re.split(r"\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=|\(\)\s*\{)", line, maxsplit=1)[0]
        if ":tinylcm" not in name:
            bad.append(f"{path}:{i + 1}: not gated on the tinylcm override: {line.strip()}")
        i += 1
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}

# 1. oelint-adv on the whole layer.
mapfile -t files < <(layer_files "$LAYER")
[ ${#files[@]} -gt 10 ] || die "expected the layer's recipes under $LAYER, found ${#files[@]} files"
if ! run_oelint "$LAYER" >"$WORK/lint.txt"; then
    cat "$WORK/lint.txt" >&2
    die "oelint-adv reports findings on yocto/meta-tinylcm (fix them; suppress only network rules in .oelint.cfg)"
fi
echo "ok: oelint-adv --release wrynose is clean on ${#files[@]} layer files"

# 2. What yocto-check-layer's test_readme/test_security look for, and the licence.
readme="$LAYER/README.md"
[ -s "$readme" ] || die "$readme is missing or empty"
grep -qiE '[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]+' "$readme" || die "$readme names no e-mail address"
grep -qi 'maintainer' "$readme" || die "$readme names no maintainer"
grep -qi 'patch' "$readme" || die "$readme does not say how to submit patches"
[ -s "$LAYER/SECURITY.md" ] || die "$LAYER/SECURITY.md is missing or empty"
grep -q 'Permission is hereby granted' "$LAYER/COPYING.MIT" || die "$LAYER/COPYING.MIT is not the MIT licence"
grep -q 'LAYERSERIES_COMPAT_tinylcm = "wrynose"' "$LAYER/conf/layer.conf" ||
    die "conf/layer.conf does not declare LAYERSERIES_COMPAT wrynose"
echo "ok: README.md (maintainer, patches, e-mail), SECURITY.md, COPYING.MIT and LAYERSERIES_COMPAT are there"

# bitbake refuses to build when a licence file's checksum is stale: catch an edited
# LICENSE-* here rather than on the first build after it.
recipe="$LAYER/recipes-tinylcm/tinylcm-runtime/tinylcm-runtime_git.bb"
n=0
while read -r file sum; do
    [ -f "$ROOT/$file" ] || die "$recipe: LIC_FILES_CHKSUM names $file, which the repository lacks"
    actual=$(md5sum "$ROOT/$file" | cut -d' ' -f1)
    [ "$actual" = "$sum" ] ||
        die "$recipe: LIC_FILES_CHKSUM of $file is $sum, the file's md5 is $actual: update the recipe"
    n=$((n + 1))
done < <(grep -o 'file://[^;]*;md5=[0-9a-f]*' "$recipe" | sed 's|file://||; s|;md5=| |')
[ "$n" -ge 2 ] || die "$recipe: expected LIC_FILES_CHKSUM entries for LICENSE-MIT and LICENSE-APACHE"
echo "ok: the runtime recipe's LIC_FILES_CHKSUM matches the repository's $n licence files"

# 3. Every bbappend acts only under the distro override.
if ! check_gated "$LAYER" >"$WORK/gated.txt"; then
    cat "$WORK/gated.txt" >&2
    die "bbappends must act only under the tinylcm override (yocto-check-layer test_signatures)"
fi
n=$(find "$LAYER" -name '*.bbappend' | wc -l)
[ "$n" -ge 5 ] || die "expected the layer's bbappends, found $n"
echo "ok: all $n bbappends act only under the tinylcm distro override"

# 4. The wks and fstab follow board/common/layout.toml (order, labels, types, sizes, devices).
python3 "$ROOT/tests/image/wks-layout.py" "$ROOT/board/common/layout.toml" \
    "$LAYER/files/wic/tinylcm-dual-rpi.wks.in" "$LAYER/recipes-core/base-files/files/tinylcm-fstab"
echo "ok: the wks and the fstab follow board/common/layout.toml"

# 5. The checks can fail. A temp copy of the layer with an ungated bbappend and a recipe
# without LICENSE.
cp -a "$LAYER" "$WORK/broken"
mkdir -p "$WORK/broken/recipes-core/busybox"
cat >"$WORK/broken/recipes-core/busybox/busybox_%.bbappend" <<'BB'
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI += "file://tinylcm.cfg"
include busybox-tinylcm.inc
BB
recipe=recipes-tinylcm/tinylcm-runtime/tinylcm-runtime_git.bb
sed -i '/^LICENSE = /d' "$WORK/broken/$recipe"
if run_oelint "$WORK/broken" ./recipes-core/busybox/busybox_%.bbappend >"$WORK/bad-append.txt"; then
    die "oelint-adv accepted an ungated bbappend: the lint step cannot fail"
fi
grep -q 'oelint.vars.noncoreoverride' "$WORK/bad-append.txt" ||
    die "oelint-adv did not report noncoreoverride for an ungated bbappend: $(cat "$WORK/bad-append.txt")"
if run_oelint "$WORK/broken" "./$recipe" >"$WORK/bad-recipe.txt"; then
    die "oelint-adv accepted a recipe without LICENSE: the lint step cannot fail"
fi
grep -q 'LICENSE' "$WORK/bad-recipe.txt" ||
    die "oelint-adv did not report the missing LICENSE: $(cat "$WORK/bad-recipe.txt")"
if check_gated "$WORK/broken" >"$WORK/bad-gated.txt"; then
    die "the override check accepted an ungated bbappend"
fi
[ "$(grep -c 'busybox_%.bbappend' "$WORK/bad-gated.txt")" -eq 3 ] ||
    die "the override check should name the three ungated lines: $(cat "$WORK/bad-gated.txt")"
grep -q 'include not conditional' "$WORK/bad-gated.txt" ||
    die "the override check did not report an unconditional include: $(cat "$WORK/bad-gated.txt")"
echo "ok: an ungated bbappend (assignments, an include) and a recipe without LICENSE are reported (the checks can fail)"
