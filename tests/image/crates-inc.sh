#!/usr/bin/env bash
# The Yocto layer's crates include must be exactly what scripts/update-crates-inc makes of
# the workspace's Cargo.lock: a stale include makes the image's offline cargo build fail
# (a crate missing from SRC_URI) long after the change that caused it.
#  1. regenerate into a temp file and compare with the committed include;
#  2. prove the comparison can fail: a lock with one crate's version and checksum changed
#     must give a different include;
#  3. prove the generator refuses git-sourced dependencies.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
require_cmds python3 diff

INC="$ROOT/yocto/meta-tinylcm/recipes-tinylcm/tinylcm-runtime/tinylcm-runtime-crates.inc"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

[ -f "$INC" ] || die "$INC is missing: run scripts/update-crates-inc"
"$ROOT/scripts/update-crates-inc" --output "$WORK/fresh.inc" >/dev/null
if ! diff -u "$INC" "$WORK/fresh.inc" >"$WORK/diff"; then
    head -40 "$WORK/diff" >&2
    die "the crates include differs from Cargo.lock: run scripts/update-crates-inc and commit the result"
fi
n=$(grep -c 'crate://crates.io/' "$INC")
locked=$(grep -c '^source = "registry+https://github.com/rust-lang/crates.io-index"' "$ROOT/Cargo.lock")
[ "$n" -eq "$locked" ] || die "the include lists $n crates, Cargo.lock has $locked from crates.io"
echo "ok: tinylcm-runtime-crates.inc equals the one made from Cargo.lock ($n crates)"

# 2. A modified lock (the first crate one patch version up, a new checksum) must not match.
python3 - "$ROOT/Cargo.lock" "$WORK/modified.lock" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r'(\[\[package\]\]\nname = "[^"]+"\nversion = ")(\d+)\.(\d+)\.(\d+)(")', text)
bumped = f"{m.group(1)}{m.group(2)}.{m.group(3)}.{int(m.group(4)) + 1}{m.group(5)}"
text = text[:m.start()] + bumped + text[m.end():]
text = re.sub(r'checksum = "[0-9a-f]{64}"', 'checksum = "' + "0" * 64 + '"', text, count=1)
open(sys.argv[2], "w").write(text)
PY
"$ROOT/scripts/update-crates-inc" --lock "$WORK/modified.lock" --output "$WORK/modified.inc" >/dev/null
if diff -q "$INC" "$WORK/modified.inc" >/dev/null; then
    die "a modified Cargo.lock gave the same include: the comparison cannot fail"
fi
echo "ok: a Cargo.lock with one crate changed gives a different include (the check can fail)"

# 3. A git dependency cannot be a crate:// entry: the generator must refuse it by name.
cat "$ROOT/Cargo.lock" >"$WORK/git.lock"
cat >>"$WORK/git.lock" <<'TOML'

[[package]]
name = "some-git-crate"
version = "0.1.0"
source = "git+https://example.invalid/some-git-crate?rev=0123456#0123456"
TOML
if "$ROOT/scripts/update-crates-inc" --lock "$WORK/git.lock" --output "$WORK/git.inc" 2>"$WORK/git.err"; then
    die "update-crates-inc accepted a git-sourced dependency"
fi
grep -q "some-git-crate" "$WORK/git.err" || die "the refusal does not name the git dependency: $(cat "$WORK/git.err")"
echo "ok: update-crates-inc refuses a git-sourced dependency and names it"
