#!/usr/bin/env bash
# scripts/dev-pki and scripts/make-bundle on their own (run by `./scripts/test image`; the
# install side is tests/image/rauc-roundtrip.sh): the PKI's files, modes and purpose, that a
# second run keeps the keys and --force replaces them; a bundle's compatible per board; and
# the errors a user meets: missing rootfs, unknown board, missing keys, a rootfs that is not
# ext4, a version that would corrupt the manifest, and keys whose CA does not match (no
# bundle may be left behind).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/setup.sh
. "$ROOT/scripts/lib/setup.sh"
# shellcheck source=scripts/lib/check.sh
. "$ROOT/scripts/lib/check.sh"
ensure_image_tools

check_init
PKI="$WORK/pki"


expect_error() {
    local what=$1 pattern=$2
    shift 2
    if "$@" >"$WORK/out" 2>&1; then
        fail "accepted $what"
    fi
    grep -Eq "$pattern" "$WORK/out" || fail "$what failed without '$pattern': $(cat "$WORK/out")"
    printf 'ok: %s: %s\n' "$what" "$(grep -m1 -o 'error:.*' "$WORK/out" | cut -c1-100)"
}

# --- dev-pki ---
"$ROOT/scripts/dev-pki" --out "$PKI" >"$WORK/out" 2>&1 || fail "dev-pki: $(cat "$WORK/out")"
grep -q "DEVELOPMENT only" "$WORK/out" || fail "dev-pki does not warn that its keys are for development"
for f in ca.cert.pem ca.key.pem dev.cert.pem dev.key.pem; do
    [ -s "$PKI/$f" ] || fail "dev-pki did not write $f"
done
for f in ca.key.pem dev.key.pem; do
    [ "$(stat -c %a "$PKI/$f")" = 600 ] || fail "$f has mode $(stat -c %a "$PKI/$f"), expected 600"
done
openssl verify -CAfile "$PKI/ca.cert.pem" "$PKI/dev.cert.pem" >/dev/null || fail "dev.cert.pem is not issued by ca.cert.pem"
openssl x509 -in "$PKI/dev.cert.pem" -noout -ext extendedKeyUsage | grep -q "Code Signing" ||
    fail "dev.cert.pem lacks the codeSigning purpose"
printf 'ok: dev-pki: CA and codeSigning certificate, private keys 0600, development warning\n'

before=$(cat "$PKI"/*.pem | sha256sum)
"$ROOT/scripts/dev-pki" --out "$PKI" >"$WORK/out" 2>&1 || fail "dev-pki second run: $(cat "$WORK/out")"
[ "$(cat "$PKI"/*.pem | sha256sum)" = "$before" ] || fail "a second dev-pki run changed the keys"
[ "$(grep -c '^kept' "$WORK/out")" = 4 ] || fail "a second dev-pki run does not say it kept 4 files: $(cat "$WORK/out")"
ca_before=$(sha256sum <"$PKI/ca.cert.pem")
rm "$PKI/dev.cert.pem"
"$ROOT/scripts/dev-pki" --out "$PKI" >/dev/null 2>&1 || fail "dev-pki could not reissue a deleted signing certificate"
[ "$(sha256sum <"$PKI/ca.cert.pem")" = "$ca_before" ] || fail "reissuing the signing certificate replaced the CA"
openssl verify -CAfile "$PKI/ca.cert.pem" "$PKI/dev.cert.pem" >/dev/null || fail "the reissued certificate does not verify"
printf 'ok: dev-pki: a second run keeps all keys; a deleted signing certificate is reissued by the same CA\n'
cp -a "$PKI" "$WORK/pki-old"
"$ROOT/scripts/dev-pki" --out "$PKI" --force >/dev/null 2>&1 || fail "dev-pki --force failed"
[ "$(sha256sum <"$PKI/ca.cert.pem")" != "$ca_before" ] || fail "dev-pki --force kept the CA"
printf 'ok: dev-pki --force makes a new CA\n'
rm "$WORK/pki-old/ca.key.pem"
expect_error "dev-pki with half a CA" "only one of ca.key.pem and ca.cert.pem" \
    "$ROOT/scripts/dev-pki" --out "$WORK/pki-old"

# --- make-bundle ---
mkdir -p "$WORK/rootfs/etc"
printf 'test\n' >"$WORK/rootfs/etc/tinylcm-release"
head -c 65536 /dev/urandom >"$WORK/rootfs/etc/noise"
mke2fs -q -t ext4 -d "$WORK/rootfs" "$WORK/rootfs.ext4" 8M >/dev/null
MB="$ROOT/scripts/make-bundle"
for conf in "$ROOT"/board/*/system.conf; do
    board=$(basename "$(dirname "$conf")")
    want=$(sed -n 's/^compatible=//p' "$conf")
    for format in verity plain; do
        "$MB" --board "$board" --rootfs "$WORK/rootfs.ext4" --version 1.2.3 --pki "$PKI" \
            --format "$format" -o "$WORK/$board.raucb" >"$WORK/out" 2>&1 || fail "make-bundle $board: $(cat "$WORK/out")"
        rauc info --keyring="$PKI/ca.cert.pem" --no-verify --output-format=json "$WORK/$board.raucb" \
            2>/dev/null >"$WORK/info.json" || fail "rauc info cannot read the $board bundle"
        got=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print(i["compatible"], i["version"], *[k for im in i["images"] for k in im])' "$WORK/info.json")
        [ "$got" = "$want 1.2.3 rootfs" ] || fail "the $board bundle says '$got', expected '$want 1.2.3 rootfs'"
    done
    printf 'ok: make-bundle %s: compatible %s from its system.conf, image for slot class rootfs, verity and plain\n' \
        "$board" "$want"
done
[ -z "$(find "$WORK" -maxdepth 1 -name '.make-bundle.*')" ] || fail "make-bundle left its work folder behind"

board=$(basename "$(dirname "$(find "$ROOT/board" -name system.conf | sort | head -n 1)")")
ok_args=(--board "$board" --rootfs "$WORK/rootfs.ext4" --version 1.0 --pki "$PKI")
expect_error "make-bundle with a missing rootfs" "rootfs image .*nope\.ext4 does not exist" \
    "$MB" --board "$board" --rootfs "$WORK/nope.ext4" --version 1.0 --pki "$PKI" -o "$WORK/x.raucb"
expect_error "make-bundle for an unknown board" "unknown board 'raspberrypi5': expected one of" \
    "$MB" --board raspberrypi5 --rootfs "$WORK/rootfs.ext4" --version 1.0 --pki "$PKI" -o "$WORK/x.raucb"
expect_error "make-bundle for a board given as a path" "unknown board" \
    "$MB" --board ../board/common --rootfs "$WORK/rootfs.ext4" --version 1.0 --pki "$PKI" -o "$WORK/x.raucb"
expect_error "make-bundle without keys" "signing keys missing: .*dev\.cert\.pem not found \(run scripts/dev-pki" \
    "$MB" --board "$board" --rootfs "$WORK/rootfs.ext4" --version 1.0 --pki "$WORK/none" -o "$WORK/x.raucb"
expect_error "make-bundle of a rootfs that is not ext4" "is squashfs, but the slots of .* are ext4" \
    "$MB" "${ok_args[@]/$WORK\/rootfs.ext4/$WORK/$board.raucb}" -o "$WORK/x.raucb"
expect_error "make-bundle with a version containing a newline" "may only contain" \
    "$MB" --board "$board" --rootfs "$WORK/rootfs.ext4" --version $'1.0\n[handler]' --pki "$PKI" -o "$WORK/x.raucb"
mkdir "$WORK/mixed"
cp "$PKI"/dev.*.pem "$WORK/mixed/"
cp "$WORK/pki-old/ca.cert.pem" "$WORK/mixed/"
expect_error "make-bundle signed by a key of another CA" "does not verify against" \
    "$MB" --board "$board" --rootfs "$WORK/rootfs.ext4" --version 1.0 --pki "$WORK/mixed" -o "$WORK/x.raucb"
[ ! -e "$WORK/x.raucb" ] || fail "a failed make-bundle left a bundle behind"
printf 'make-bundle: all checks passed\n'
