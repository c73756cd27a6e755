# shellcheck shell=bash
# meta-raspberrypi's boot partition for the TinyLCM image, as the offline image checks need
# it: the firmware's kernel command line (cmdline.txt), where U-Boot lands (the
# RPI_EXTRA_IMAGE_BOOT_FILES entries) and which file the firmware starts (config.txt).
# Read from the pinned meta-raspberrypi tarball (../shared/yocto-layers, or
# TINYLCM_YOCTO_LAYERS) with scripts/lib/rpi-bootfiles.py, not guessed.
# Source after common.sh.

RPI_BOOT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RPI_BOOT_LAYER=$RPI_BOOT_ROOT/yocto/meta-tinylcm

# The meta-raspberrypi tarball MANIFEST.tsv lists.
rpi_layer() {
    local dir tarball
    dir=${TINYLCM_YOCTO_LAYERS:-$RPI_BOOT_ROOT/../shared/yocto-layers}
    [ -f "$dir/MANIFEST.tsv" ] ||
        die "no upstream Yocto layers at $dir (MANIFEST.tsv and its tarballs): set TINYLCM_YOCTO_LAYERS"
    tarball=$(awk -F'\t' '$1 == "meta-raspberrypi" { print $6 }' "$dir/MANIFEST.tsv")
    [ -n "$tarball" ] && [ -f "$dir/$tarball" ] || die "$dir/MANIFEST.tsv lists no meta-raspberrypi tarball"
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
