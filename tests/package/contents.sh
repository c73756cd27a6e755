#!/usr/bin/env bash
# The Debian packages' contents, for every architecture built: lintian (each tag it still
# reports is explained in the package's lintian-overrides, so any other tag fails), the
# changelog's version, and for a foreign architecture (arm64, the Pi's) that the binary and
# LiteRT are built for it: the ELF machine, the pinned SHA-256 of that architecture's
# libLiteRt.so, and a first inference of the packaged binary with the packaged library
# under qemu-user (the cross sysroot as its libc).
#
# Usage: tests/package/contents.sh DEB_DIR
#   DEB_DIR holds revision-1 packages (scripts/package-deb) of one or more architectures.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/common.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$repo/scripts/lib/check.sh"

deb_dir=${1:?usage: tests/package/contents.sh DEB_DIR}
command -v lintian >/dev/null || missing "lintian" "apt-get install lintian"
check_init

mapfile -t debs < <(find "$deb_dir" -maxdepth 1 -name '*-1_*.deb' | sort)
[ ${#debs[@]} -gt 0 ] || fail "no revision-1 packages in $deb_dir (scripts/package-deb)"

for deb in "${debs[@]}"; do
    name=$(basename "$deb")
    # --pedantic shows every tag; an unexplained one of any level fails.
    if ! lintian --pedantic --fail-on error,warning,info,pedantic "$deb" >"$WORK/lintian" 2>&1; then
        cat "$WORK/lintian" >&2
        fail "lintian reports tags on $name that no override explains"
    fi
    version=$(dpkg-deb -f "$deb" Version)
    package=$(dpkg-deb -f "$deb" Package)
    rm -rf "$WORK/x" && mkdir -p "$WORK/x" && dpkg-deb -x "$deb" "$WORK/x"
    top=$(zcat "$WORK/x/usr/share/doc/$package/changelog.Debian.gz" | head -n 1)
    [[ "$top" == "$package ($version) "* ]] ||
        fail "$name: the changelog's last entry is '$top', not version $version (add an entry to $package's debian/changelog)"
    ok "$name: lintian clean (overrides explained), changelog at $version"
done

# pin ARCH: the pinned SHA-256 of LiteRT for ARCH (uname -m spelling), from scripts/fetch-libs.
pin() {
    sed -n "s/^ *\[$1\]=\([0-9a-f]\{64\}\)$/\1/p" "$repo/scripts/fetch-libs" | head -n1
}

host=$(dpkg --print-architecture)
for deb in "${debs[@]}"; do
    arch=$(dpkg-deb -f "$deb" Architecture)
    [ "$arch" != "$host" ] || continue
    [ "$arch" = arm64 ] || fail "$(basename "$deb"): no check for architecture $arch"
    [ "$(dpkg-deb -f "$deb" Package)" = tinylcm ] || continue
    x=$WORK/arm64
    rm -rf "$x" && mkdir -p "$x" && dpkg-deb -x "$deb" "$x"
    file -b "$x/usr/bin/tinylcm" | grep -q "ARM aarch64" ||
        fail "usr/bin/tinylcm of $(basename "$deb") is $(file -b "$x/usr/bin/tinylcm")"
    sha256_matches "$x/usr/lib/tinylcm/libLiteRt.so" "$(pin aarch64)" ||
        fail "usr/lib/tinylcm/libLiteRt.so of $(basename "$deb") is not the pinned aarch64 LiteRT"
    dpkg-deb -f "$deb" Depends | grep -q "libstdc++6" ||
        fail "Depends lacks libstdc++6, which LiteRT links: $(dpkg-deb -f "$deb" Depends)"
    ok "$(basename "$deb"): aarch64 binary, the pinned aarch64 LiteRT, Depends on its C++ library"

    command -v qemu-aarch64-static >/dev/null ||
        missing "qemu-aarch64-static" "apt-get install qemu-user-static (>= 8, bookworm-backports)"
    [ -d /usr/aarch64-linux-gnu/lib ] ||
        missing "the aarch64 C library" "apt-get install libc6-dev-arm64-cross libstdc++6-arm64-cross"
    # The packaged config with the extracted folder for / and the synthetic camera.
    sed -e "s#/usr/lib/tinylcm#$x/usr/lib/tinylcm#; s#/var/lib/tinylcm#$WORK/state#" \
        -e 's/^kind = "camera"/kind = "synthetic"/' "$x/etc/tinylcm/config.toml" >"$WORK/config.toml"
    mkdir -p "$WORK/state"
    if ! HOME=$WORK TINYLCM_RUN__MAX_FRAMES=5 qemu-aarch64-static -L /usr/aarch64-linux-gnu \
        "$x/usr/bin/tinylcm" run --config "$WORK/config.toml" >"$WORK/run.log" 2>&1; then
        tail -n 20 "$WORK/run.log" >&2
        fail "the arm64 package's tinylcm did not run under qemu-aarch64"
    fi
    grep -q "$x/usr/lib/tinylcm/libLiteRt.so" "$WORK/run.log" ||
        fail "the arm64 run did not load the packaged LiteRT: $(head -n 20 "$WORK/run.log")"
    [ -s "$WORK/state/status.json" ] || fail "the arm64 run wrote no status.json"
    grep -q '"frames"' "$WORK/state/status.json" || fail "no frames in the arm64 run's status"
    ok "$(basename "$deb"): its tinylcm ran frames through its LiteRT under qemu-aarch64"
done
