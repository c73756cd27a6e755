# shellcheck shell=bash
# BitBake without network, on the upstream layers at the commits the project pins: what
# tests/image/bitbake-parse.sh (and anyone reading the layer against the real upstream) needs.
# Source after common.sh and setup.sh.
#
# The layers come as tarballs with a MANIFEST.tsv (name, url, branch, commit, date, tarball),
# by default from ../shared/yocto-layers beside this checkout; TINYLCM_YOCTO_LAYERS names
# another folder. Each is unpacked once into a git repository on the branch kas asks for, so
# kas checks the project out exactly as it would from the real remotes (KAS_PREMIRRORS).
# BitBake refuses to run as root: it runs as the throwaway user BITBAKE_USER, whose home
# holds the repositories and the build folders. Also here: which kas file builds which board
# (scripts/build-image and the checks share it).

BITBAKE_USER=tinylcm-bitbake

# Host packages BitBake and oe-core's sanity checks ask for (poky's list for Debian).
BITBAKE_HOST_PACKAGES=(gawk wget git diffstat unzip texinfo gcc build-essential chrpath socat
    cpio python3 python3-pip python3-pexpect xz-utils debianutils iputils-ping python3-git
    python3-jinja2 python3-subunit zstd liblz4-tool lz4 file locales libacl1 python3-yaml)

# The machine and the kas file (relative to the checkout) of BOARD, a board's short name
# (rpi0-2w, cm4) or its machine; dies naming the boards otherwise.
board_kas() {
    case "$1" in
        raspberrypi0-2w-64 | rpi0-2w) echo "raspberrypi0-2w-64 yocto/kas/rpi0-2w-64.yml" ;;
        raspberrypi4-64 | cm4) echo "raspberrypi4-64 yocto/kas/cm4-64.yml" ;;
        "") die "which board? rpi0-2w (raspberrypi0-2w-64) or cm4 (raspberrypi4-64); see --help" ;;
        *) die "unknown board '$1': use rpi0-2w (raspberrypi0-2w-64) or cm4 (raspberrypi4-64)" ;;
    esac
}

# Copy the checkout at ROOT as a user has it into DEST: its tracked files that still exist and
# its new ones git does not ignore (no build output, no keys), optionally only under PATHSPECs.
copy_checkout() {
    local root=$1 dest=$2
    shift 2
    mkdir -p "$dest"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard -- "$@" |
        while IFS= read -r -d '' f; do [ ! -e "$f" ] || printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xf - -C "$dest"
}

# The folder with MANIFEST.tsv and the layer tarballs; fails with what to do when it is absent.
yocto_layers_dir() {
    local dir=${TINYLCM_YOCTO_LAYERS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared/yocto-layers}
    [ -f "$dir/MANIFEST.tsv" ] ||
        die "no upstream Yocto layers at $dir (MANIFEST.tsv and the tarballs it lists): set TINYLCM_YOCTO_LAYERS to that folder"
    (cd "$dir" && pwd)
}

# Home of BITBAKE_USER (created on first use).
bitbake_home() {
    printf '/home/%s\n' "$BITBAKE_USER"
}

# Host packages, the en_US.UTF-8 locale BitBake insists on, and the throwaway user.
ensure_bitbake_host() {
    ensure_apt "${BITBAKE_HOST_PACKAGES[@]}"
    if ! locale -a 2>/dev/null | grep -qix 'en_US.utf8'; then
        note "generating the en_US.UTF-8 locale (BitBake needs a UTF-8 locale)"
        sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
        grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
        locale-gen >/dev/null
    fi
    id -u "$BITBAKE_USER" >/dev/null 2>&1 ||
        useradd --create-home --shell /bin/bash --comment "TinyLCM offline BitBake checks" "$BITBAKE_USER"
}

# Run a bash COMMAND as BITBAKE_USER in a clean environment (BitBake passes little of it on
# anyway, and a root HOME or PATH would leak into the build).
as_bitbake_user() {
    runuser -u "$BITBAKE_USER" -- env -i HOME="$(bitbake_home)" USER="$BITBAKE_USER" \
        LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin \
        bash -c "$1"
}

# Unpack each layer of MANIFEST.tsv into a git repository on its branch under
# <cache>/yocto-layers/<commit>/<name>.git, once per commit; prints "name url branch commit
# repo" per layer. The commits in MANIFEST.tsv are what the tarballs were taken at; the repos
# made here have other hashes, so kas runs with --skip repos_checkout.
yocto_layer_repos() {
    local src cache name url branch commit _date tarball repo tmp
    src=$(yocto_layers_dir)
    cache="$(cache_dir)/yocto-layers"
    mkdir -p "$cache"
    while IFS=$'\t' read -r name url branch commit _date tarball; do
        [ "$name" = name ] && continue
        repo="$cache/$commit/$name.git"
        if [ ! -f "$repo/tinylcm-done" ]; then
            [ -f "$src/$tarball" ] || die "$src/$tarball: listed in MANIFEST.tsv but missing"
            note "unpacking $tarball into a git repository on branch $branch"
            rm -rf "$repo" "$cache/$commit/$name.tmp"
            tmp="$cache/$commit/$name.tmp"
            mkdir -p "$tmp"
            tar -xzf "$src/$tarball" -C "$tmp"
            # A tarball holds one top folder (the repository's own name).
            [ "$(find "$tmp" -mindepth 1 -maxdepth 1 | wc -l)" -eq 1 ] ||
                die "$tarball: expected one top-level folder"
            # A bare repository with one commit of the tree (gc off: a background gc would
            # race the clean-up).
            git init -q --bare -b "$branch" "$repo"
            (
                cd "$tmp"/*/ || exit 1
                export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_DIR="$repo" GIT_WORK_TREE=.
                git -c gc.auto=0 add -A
                git -c gc.auto=0 -c user.name=tinylcm -c user.email=tinylcm@localhost \
                    commit -q -m "$name at $commit (from $tarball)"
            )
            rm -rf "$tmp"
            touch "$repo/tinylcm-done"
        fi
        printf '%s %s %s %s %s\n' "$name" "$url" "$branch" "$commit" "$repo"
    done <"$src/MANIFEST.tsv"
}
