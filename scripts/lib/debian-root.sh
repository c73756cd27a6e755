# shellcheck shell=bash
# A throwaway Debian root for the package tests (tests/package/): debootstrap of this
# machine's release from its configured mirror, made once per architecture and package list,
# kept as a tarball in the cache (~/.cache/tinylcm/debian-root) and unpacked afresh for every
# run. Source after common.sh and scripts/lib/check.sh (it uses WORK, note and fail).

# debian_root DIR ARCH INCLUDES: unpack a fresh minbase root of ARCH (amd64, arm64) with the
# comma-separated packages INCLUDES into DIR. The first call for an ARCH and INCLUDES runs
# debootstrap (a minute or two from the mirror; a foreign ARCH needs binfmt_misc set up).
debian_root() {
    local dir=$1 arch=$2 includes=$3 suite tarball mirror
    # shellcheck disable=SC1091 # the host's release file
    suite=$(. /etc/os-release && printf '%s\n' "$VERSION_CODENAME")
    tarball=$(cache_dir)/debian-root/$suite-$arch-minbase-${includes//,/-}.tar
    if [ ! -s "$tarball" ]; then
        mirror=$(apt-cache policy | awk -v s="$suite/main" '$0 ~ s {print $2; exit}')
        [ -n "$mirror" ] || fail "no $suite/main mirror in apt's sources (apt-get update?)"
        note "debootstrap $suite ($arch) from $mirror into $tarball"
        rm -rf "${WORK:?}/debootstrap"
        debootstrap --arch="$arch" --variant=minbase --include="$includes" "$suite" \
            "$WORK/debootstrap" "$mirror" >"$WORK/debootstrap.log" 2>&1 || {
            tail -n 20 "$WORK/debootstrap.log" >&2
            fail "debootstrap failed"
        }
        mkdir -p "$(dirname "$tarball")"
        tar -C "$WORK/debootstrap" -cf "$tarball.tmp.$$" .
        mv -f "$tarball.tmp.$$" "$tarball"
        rm -rf "${WORK:?}/debootstrap"
    fi
    mkdir -p "$dir"
    tar -C "$dir" -xf "$tarball"
    ok "a fresh $suite root ($arch; minbase with $includes)"
}

# package_file DIR NAME REVISION ARCH: the path of DIR's NAME_*-REVISION_ARCH.deb.
package_file() {
    local f
    f=$(find "$1" -maxdepth 1 -name "$2_*-$3_$4.deb" -print -quit)
    [ -n "$f" ] || fail "no $2_*-$3_$4.deb in $1 (build: scripts/package-deb --revision $3)"
    printf '%s\n' "$f"
}
