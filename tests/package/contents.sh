#!/usr/bin/env bash
# The Debian packages' contents, for every architecture built: lintian (each tag it still
# reports is explained in the package's lintian-overrides, so any other tag fails), the
# changelog's version, and for a foreign architecture (arm64, the Pi's) that the binary and
# LiteRT are built for it: the ELF machine, the pinned SHA-256 of that architecture's
# libLiteRt.so and the C++ library it needs in Depends. (tests/package/install.sh installs
# and runs it in an arm64 Debian root.)
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
done
