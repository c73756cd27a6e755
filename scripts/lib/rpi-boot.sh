# shellcheck shell=bash
# meta-raspberrypi's boot partition for the TinyLCM image, as the offline image checks need
# it: the firmware's kernel command line (cmdline.txt), where U-Boot lands (the
# RPI_EXTRA_IMAGE_BOOT_FILES entries) and which file the firmware starts (config.txt).
# Read from the pinned meta-raspberrypi tarball (../shared/yocto-layers, or
# TINYLCM_YOCTO_LAYERS) with scripts/lib/rpi-bootfiles.py, not guessed.
# Source after common.sh and bitbake.sh (yocto_layers_dir).

RPI_BOOT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RPI_BOOT_LAYER=$RPI_BOOT_ROOT/yocto/meta-tinylcm

# The meta-raspberrypi tarball MANIFEST.tsv lists.
rpi_layer() {
    local dir tarball
    dir=$(yocto_layers_dir) || exit 1
    tarball=$(awk -F'\t' '$1 == "meta-raspberrypi" { print $6 }' "$dir/MANIFEST.tsv")
    [[ -n $tarball && -f $dir/$tarball ]] || die "$dir/MANIFEST.tsv lists no meta-raspberrypi tarball"
    printf '%s\n' "$dir/$tarball"
}

# firmware_cmdline [DISTRO_CONF [RPI_CMDLINE_BBAPPEND]]: cmdline.txt of the image.
firmware_cmdline() {
    python3 "$RPI_BOOT_ROOT/scripts/lib/rpi-bootfiles.py" cmdline "$(rpi_layer)" \
        "${1:-$RPI_BOOT_LAYER/conf/distro/tinylcm.conf}" \
        "${2:-$RPI_BOOT_LAYER/dynamic-layers/raspberrypi/recipes-bsp/bootfiles/rpi-cmdline.bbappend}"
}

# uboot_boot_files MACHINE [DISTRO_CONF [IMAGE_BBAPPEND]]: the image's
# RPI_EXTRA_IMAGE_BOOT_FILES, one `source[;name]` per line.
uboot_boot_files() {
    python3 "$RPI_BOOT_ROOT/scripts/lib/rpi-bootfiles.py" uboot "$1" "$(rpi_layer)" \
        "${2:-$RPI_BOOT_LAYER/conf/distro/tinylcm.conf}" \
        "${3:-$RPI_BOOT_LAYER/dynamic-layers/raspberrypi/recipes-core/images/tinylcm-image.bbappend}"
}

# The name U-Boot gets on the boot partition, from uboot_boot_files' lines on stdin.
uboot_name_on_partition() {
    awk -F';' '$1 == "u-boot.bin" { print ($2 == "" ? $1 : $2) }'
}

# firmware_kernel CONFIG_TXT: the file the Pi firmware starts: the last kernel= (the firmware
# takes the last value), else kernel8.img, its default with arm_64bit=1.
firmware_kernel() {
    local kernel
    kernel=$(sed -n 's/^[[:space:]]*kernel=\([^[:space:]#]*\).*/\1/p' "$1" | tail -n 1)
    if [ -z "$kernel" ]; then
        grep -q '^[[:space:]]*arm_64bit=1' "$1" || die "$1: neither kernel= nor arm_64bit=1"
        kernel=kernel8.img
    fi
    printf '%s\n' "$kernel"
}

# U-Boot as the image builds it for both boards: the release oe-core wrynose's
# u-boot_2026.01.bb pins (tag and SRCREV of its u-boot-common.inc), meta-raspberrypi's
# UBOOT_MACHINE rpi_arm64_config, and meta-tinylcm's config fragments, built once into the
# cache (about a minute on two cores). Debian's u-boot-rpi is the same configuration three
# years older, without our fragments: a fragment whose symbol the release lacks (Kconfig
# drops it with a warning) or a redundant environment only show in this build.
IMAGE_UBOOT_TAG=v2026.01
IMAGE_UBOOT_SRCREV=127a42c7257a6ffbbd1575ed1cbaa8f5408a44b3
IMAGE_UBOOT_GIT=https://source.denx.de/u-boot/u-boot.git
IMAGE_UBOOT_FRAGMENTS=("$RPI_BOOT_LAYER"/dynamic-layers/raspberrypi/recipes-bsp/u-boot/files/*.cfg)

# image_uboot FILE: write the image's u-boot.bin to FILE. The source is the git repository
# TINYLCM_UBOOT_GIT (a local clone or mirror holding IMAGE_UBOOT_SRCREV), else a shallow
# clone of IMAGE_UBOOT_GIT. Returns 1 with the reason on stderr when the source cannot be
# had (no network); fails (die) when it builds wrong, e.g. a fragment line Kconfig dropped.
image_uboot() {
    local file=$1 key dir src repo frag line
    key=$(cat "${IMAGE_UBOOT_FRAGMENTS[@]}" | sha256sum | cut -c1-16)
    dir=$(cache_dir)/uboot-rpi_arm64-$IMAGE_UBOOT_TAG-$key
    if [ ! -f "$dir/u-boot.bin" ]; then
        ensure_apt bison flex libssl-dev libgnutls28-dev gcc-aarch64-linux-gnu make bc python3-dev
        rm -rf -- "$dir" && mkdir -p "$dir"
        repo=${TINYLCM_UBOOT_GIT:-}
        if [ -z "$repo" ]; then
            repo=$dir/git
            git clone -q --depth 1 --branch "$IMAGE_UBOOT_TAG" "$IMAGE_UBOOT_GIT" "$repo" >&2 || {
                rm -rf -- "$dir"
                printf 'cannot clone %s %s (no network?); set TINYLCM_UBOOT_GIT to a clone\n' \
                    "$IMAGE_UBOOT_GIT" "$IMAGE_UBOOT_TAG" >&2
                return 1
            }
        fi
        [ "$(git -C "$repo" rev-parse "$IMAGE_UBOOT_TAG^{commit}" 2>/dev/null)" = "$IMAGE_UBOOT_SRCREV" ] || {
            rm -rf -- "$dir"
            printf '%s: %s is not %s (the commit oe-core pins)\n' "$repo" "$IMAGE_UBOOT_TAG" "$IMAGE_UBOOT_SRCREV" >&2
            return 1
        }
        # Blob by blob rather than `git archive`: a partial mirror may lack blobs of the
        # sources' own test data, which the build does not need.
        src=$dir/src
        python3 - "$repo" "$IMAGE_UBOOT_SRCREV" "$src" <<'PY' || die "extracting U-Boot failed"
import os, subprocess, sys
repo, rev, out = sys.argv[1:]
tree = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "-z", rev], capture_output=True, check=True).stdout
cat = subprocess.Popen(["git", "-C", repo, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
for entry in filter(None, tree.split(b"\0")):
    meta, path = entry.split(b"\t", 1)
    mode, kind, sha = meta.split()
    if kind != b"blob":
        continue
    cat.stdin.write(sha + b"\n")
    cat.stdin.flush()
    header = cat.stdout.readline().split()
    if header[1] == b"missing":
        if b"/tests/" not in path:
            sys.exit(f"{repo} lacks {path.decode()}")
        continue
    data = cat.stdout.read(int(header[2]))
    cat.stdout.read(1)
    dst = os.path.join(out, path.decode())
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if mode == b"120000":
        os.symlink(data.decode(), dst)
    else:
        with open(dst, "wb") as f:
            f.write(data)
        if mode == b"100755":
            os.chmod(dst, 0o755)
PY
        note "building U-Boot $IMAGE_UBOOT_TAG (rpi_arm64 + ${IMAGE_UBOOT_FRAGMENTS[*]##*/})"
        (
            cd "$src"
            export ARCH=arm CROSS_COMPILE=aarch64-linux-gnu-
            make -s rpi_arm64_defconfig >/dev/null
            scripts/kconfig/merge_config.sh -m .config "${IMAGE_UBOOT_FRAGMENTS[@]}" >/dev/null
            make -s olddefconfig >/dev/null
        ) >&2 || die "configuring U-Boot failed"
        # Kconfig drops a symbol it does not know with a warning only: every fragment line must
        # be in the final configuration.
        for frag in "${IMAGE_UBOOT_FRAGMENTS[@]}"; do
            # shellcheck disable=SC2094 # $frag is only read here (its name is in a message)
            while IFS= read -r line; do
                case $line in CONFIG_*) grep -qxF "$line" "$src/.config" ||
                    die "$(basename "$frag"): $line is not in U-Boot $IMAGE_UBOOT_TAG's configuration (unknown symbol, or a dependency missing)" ;;
                esac
            done <"$frag"
        done
        (cd "$src" && make -s -j"$(nproc)" ARCH=arm CROSS_COMPILE=aarch64-linux-gnu- u-boot.bin) >"$dir/build.log" 2>&1 ||
            { tail -n 20 "$dir/build.log" >&2; die "building U-Boot failed"; }
        cp "$src/.config" "$dir/config"
        mv "$src/u-boot.bin" "$dir/u-boot.bin"
        rm -rf -- "$src" "$dir/git"
    fi
    cp "$dir/u-boot.bin" "$file"
}
