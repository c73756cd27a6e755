# shellcheck shell=bash
# The arm64 guest that scripts/qemu-boot and tests/image/qemu-*.sh boot in qemu-system-aarch64:
# a Debian kernel and a static busybox, pinned, fetched with apt, cached outside git.
# Source after common.sh and setup.sh.

# Pinned by version and by the .deb's SHA-256. Both come from bookworm's main archive (the
# last point release of a release in LTS stays there). When Debian drops one, pick the
# current version with `apt-cache policy PKG:arm64`, fetch it with `apt-get download` and
# record its SHA-256 here. The kernel is a plain arm64 Image with the PL011 console and
# initramfs support built in (virtio-blk, ext4 and the MMC host drivers are modules).
GUEST_KERNEL_PKG=linux-image-6.1.0-50-arm64
GUEST_KERNEL_VERSION=6.1.176-1
GUEST_KERNEL_RELEASE=6.1.0-50-arm64
GUEST_KERNEL_DEB_SHA256=914f75b57a8e165d85fb910c3e2dcc7000a05a9fea3f42f90b26e8dd590d5f06
GUEST_BUSYBOX_PKG=busybox-static
GUEST_BUSYBOX_VERSION=1:1.35.0-4+deb12u1+b1
GUEST_BUSYBOX_DEB_SHA256=732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5
# The Raspberry Pi Zero 2 W's device tree, from the kernel package.
GUEST_ZERO2W_DTB=broadcom/bcm2837-rpi-zero-2-w.dtb

# apt_download SPEC DIR: download the arm64 package SPEC (NAME or NAME=VERSION) into DIR;
# fails quietly when apt cannot get it. apt checks the .deb against Debian's signed index.
apt_download() {
    local spec=$1 dir=$2 sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # APT::Sandbox::User=root: apt would otherwise hand the download to the _apt user, who
    # cannot write into a private temporary folder (it warns and falls back to root anyway).
    (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "${spec%%=*}:arm64${spec#"${spec%%=*}"}" >&2) && return
    # Stale lists (e.g. the arm64 architecture was just added): refresh once.
    $sudo apt-get update -qq
    (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "${spec%%=*}:arm64${spec#"${spec%%=*}"}" >&2)
}

# guest_deb PKG VERSION SHA256 [FALLBACK_PKG]: print the path of the .deb in the cache,
# downloading it with apt on first use. The pinned version is checked against its SHA-256.
# Debian drops superseded versions (and a kernel's whole ABI package) at point releases: a
# pin that apt no longer has falls back to the current FALLBACK_PKG (default PKG), which apt
# has verified against Debian's signed index, with a warning to update the pin; CI keeps
# working while the pin is stale.
guest_deb() {
    local pkg=$1 version=$2 sha=$3 fallback=${4:-$1} dir file tmp got stale
    dir=$(cache_dir)/qemu
    file=$dir/${pkg}_${version#*:}_arm64.deb
    if sha256_matches "$file" "$sha"; then
        printf '%s\n' "$file"
        return
    fi
    # A stale pin's fallback, downloaded before (apt is not asked again on every boot).
    stale=$dir/${pkg}_${version#*:}.stale
    if [ -f "$stale" ] && [ -f "$(cat "$stale")" ]; then
        cat "$stale"
        return
    fi
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/download.XXXXXX")
    note "downloading $pkg $version (arm64) with apt"
    if apt_download "$pkg=$version" "$tmp"; then
        got=$(find "$tmp" -name "${pkg}_*_arm64.deb" -print -quit)
        if [ -z "$got" ] || ! sha256_matches "$got" "$sha"; then
            rm -rf -- "$tmp"
            die "$pkg $version: the downloaded .deb is missing or does not match the pinned SHA-256 $sha"
        fi
    else
        note "warning: Debian no longer has $pkg $version; using the current $fallback" \
            "(update the pin in scripts/lib/qemu-guest.sh)"
        apt_download "$fallback" "$tmp" || {
            rm -rf -- "$tmp"
            die "apt can download neither $pkg:arm64=$version nor $fallback:arm64"
        }
        got=$(find "$tmp" -name "${fallback}_*_arm64.deb" -print -quit)
        [ -n "$got" ] || die "apt reported $fallback downloaded, but there is no .deb"
        file=$dir/$(basename "$got")
        printf '%s\n' "$file" >"$stale"
    fi
    mv -f -- "$got" "$file"
    rm -rf -- "$tmp"
    printf '%s\n' "$file"
}

# The kernel package linux-image-arm64 depends on now (the fallback for a stale kernel pin).
current_kernel_pkg() {
    apt-cache depends linux-image-arm64:arm64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-arm64\).*/\1/p' | head -n1
}

# kernel_extracted DIR DEB_SHA256: DIR holds Image and zero2w.dtb from the .deb with that
# SHA-256 (the stamp is written last, so an interrupted extraction does not count).
kernel_extracted() {
    [ "$(cat "$1/.deb-sha256" 2>/dev/null)" = "$2" ] && [ -f "$1/Image" ] && [ -f "$1/zero2w.dtb" ]
}

# guest_kernel: print the folder holding the kernel as Image and the Zero 2 W's device tree
# as zero2w.dtb. Extracted once from the verified .deb into the cache (unpacking the 60 MB
# package costs seconds per boot otherwise); a stamp written last names the .deb's SHA-256,
# so an interrupted or outdated extraction is redone.
guest_kernel() {
    local dir deb release debsha
    dir=$(cache_dir)/qemu/kernel-$GUEST_KERNEL_RELEASE
    if kernel_extracted "$dir" "$GUEST_KERNEL_DEB_SHA256"; then
        printf '%s\n' "$dir"
        return
    fi
    deb=$(guest_deb "$GUEST_KERNEL_PKG" "$GUEST_KERNEL_VERSION" "$GUEST_KERNEL_DEB_SHA256" \
        "$(current_kernel_pkg)")
    # The release is in the package's name (linux-image-<release>_<version>_arm64.deb).
    release=$(basename "$deb")
    release=${release#linux-image-}
    release=${release%%_*}
    debsha=$(sha256_of "$deb")
    dir=$(cache_dir)/qemu/kernel-$release
    if kernel_extracted "$dir" "$debsha"; then
        printf '%s\n' "$dir"
        return
    fi
    rm -rf -- "$dir"
    mkdir -p "$dir/x"
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -C "$dir/x" "./boot/vmlinuz-$release" \
            "./usr/lib/linux-image-$release/$GUEST_ZERO2W_DTB"
    mv "$dir/x/boot/vmlinuz-$release" "$dir/Image"
    mv "$dir/x/usr/lib/linux-image-$release/$GUEST_ZERO2W_DTB" "$dir/zero2w.dtb"
    rm -rf -- "$dir/x"
    printf '%s\n' "$debsha" >"$dir/.deb-sha256"
    printf '%s\n' "$dir"
}

# guest_modules DEST NAME: copy the kernel module NAME and the modules it depends on, from
# the kernel package of guest_kernel, into DEST (flat: NAME.ko, ...) and print their file
# names in load order, dependencies first. Fails when the kernel has no such module (e.g.
# it is built in, or not configured: look in the package's /boot/config-*). The package
# ships no modules.dep (depmod runs at install), so dependencies are read from each
# module's own .modinfo section. Extracted modules are cached beside the kernel.
guest_modules() {
    local dest=$1 name=$2 kdir deb index order=() seen=" "
    kdir=$(guest_kernel)
    deb=$(guest_deb "$GUEST_KERNEL_PKG" "$GUEST_KERNEL_VERSION" "$GUEST_KERNEL_DEB_SHA256" \
        "$(current_kernel_pkg)")
    index=$kdir/modules.index
    if [ ! -s "$index" ]; then
        # "name path" per module, names with _ for - as the kernel compares them.
        dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -n 's|^\./\(lib/modules/.*/\([^/]*\)\.ko\)$|\2 \1|p' |
            awk '{ n = $1; gsub("-", "_", n); print n, $2 }' >"$index.tmp"
        [ -s "$index.tmp" ] || die "no kernel modules in $deb"
        mv "$index.tmp" "$index"
    fi
    # path_of NAME: the module's path in the package (empty: none).
    path_of() {
        local n=${1//-/_}
        awk -v n="$n" '$1 == n { print $2; exit }' "$index"
    }
    # deps_of PATH: the names the module depends on.
    deps_of() {
        aarch64-linux-gnu-objcopy -O binary --only-section=.modinfo "$kdir/$1" /dev/stdout |
            tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '
    }
    # Extract the closure level by level: one pass over the 60 MB package per level, not
    # per module (a pass costs seconds).
    local level=("$name") next n path dep fetch
    while [ ${#level[@]} -gt 0 ]; do
        fetch=()
        for n in "${level[@]}"; do
            path=$(path_of "$n")
            [ -n "$path" ] || { note "the guest kernel has no module $n"; return 1; }
            [ -f "$kdir/$path" ] || fetch+=("./$path")
        done
        if [ ${#fetch[@]} -gt 0 ]; then
            dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir" "${fetch[@]}" ||
                { note "cannot extract ${fetch[*]} from $deb"; return 1; }
        fi
        next=()
        for n in "${level[@]}"; do
            for dep in $(deps_of "$(path_of "$n")"); do
                dep=${dep//-/_}
                case "$seen" in *" $dep "*) ;; *) seen+="$dep "; next+=("$dep") ;; esac
            done
        done
        level=("${next[@]}")
    done
    # visit NAME: depth first, dependencies before the module.
    visit() {
        local n=${1//-/_} p d
        case " ${order[*]} " in *" $(path_of "$n") "*) return 0 ;; esac
        p=$(path_of "$n")
        for d in $(deps_of "$p"); do
            visit "$d"
        done
        order+=("$p")
    }
    visit "$name"
    for path in "${order[@]}"; do
        cp "$kdir/$path" "$dest/"
        basename "$path"
    done
}

# guest_busybox FILE: extract the pinned static arm64 busybox to FILE.
guest_busybox() {
    local file=$1 deb tmp
    deb=$(guest_deb "$GUEST_BUSYBOX_PKG" "$GUEST_BUSYBOX_VERSION" "$GUEST_BUSYBOX_DEB_SHA256")
    tmp=$(mktemp -d)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./bin/busybox
    mv "$tmp/bin/busybox" "$file"
    rm -rf -- "$tmp"
}

# Debian's U-Boot for the Raspberry Pi (rpi_arm64: the configuration meta-raspberrypi builds
# for both boards; environment in uboot.env on the FAT partition), same pinning as above.
GUEST_UBOOT_RPI_PKG=u-boot-rpi
GUEST_UBOOT_RPI_VERSION=2023.01+dfsg-2+deb12u3
GUEST_UBOOT_RPI_DEB_SHA256=3722f286cfafca03f4cac7adade04fccf66158ad8467501b9deabd154162b5e8

# guest_uboot_rpi FILE: extract the pinned rpi_arm64 u-boot.bin to FILE.
guest_uboot_rpi() {
    local file=$1 deb tmp
    deb=$(guest_deb "$GUEST_UBOOT_RPI_PKG" "$GUEST_UBOOT_RPI_VERSION" "$GUEST_UBOOT_RPI_DEB_SHA256")
    tmp=$(mktemp -d)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/lib/u-boot/rpi_arm64/u-boot.bin
    mv "$tmp/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$file"
    rm -rf -- "$tmp"
}

# layout_partitions LAYOUT_TOML: one line per partition, in order:
# "number label fstype size-mib slot" (slot "-" when the partition is not a slot).
layout_partitions() {
    python3 - "$1" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    layout = tomllib.load(f)
if layout["table"] != "msdos":
    sys.exit(f"{sys.argv[1]}: table {layout['table']!r}: only MBR disks are built here")
for p in sorted(layout["partition"], key=lambda p: p["number"]):
    print(p["number"], p["label"], p["fstype"], p["size-mib"], p.get("slot", "-"))
PY
}

# guest_disk LAYOUT_TOML DISK BOOT_SCR KERNEL: a sparse disk image with the partitions of
# LAYOUT_TOML (the first at 1 MiB, as wic and sfdisk align it): BOOT_SCR as boot.scr on the
# vfat partition, KERNEL as boot/Image in every slot's ext4 (where boot.cmd loads it), other
# ext4 partitions empty. File systems are written at their offsets, without loop mounts.
guest_disk() {
    local layout=$1 disk=$2 boot_scr=$3 kernel=$4 parts script start number label fstype size slot tmp
    local mib=$((1024 * 1024))
    parts=$(layout_partitions "$layout") || die "cannot read $layout"
    tmp=$(mktemp -d)
    script="label: dos"$'\n'
    start=1
    while read -r number label fstype size slot; do
        case "$fstype" in
            vfat) script+="start=$((start * 2048)), size=$((size * 2048)), type=c, bootable"$'\n' ;;
            ext4) script+="start=$((start * 2048)), size=$((size * 2048)), type=83"$'\n' ;;
            *) die "$layout: partition $number has fstype $fstype, which guest_disk cannot build" ;;
        esac
        start=$((start + size))
    done <<<"$parts"
    rm -f -- "$disk"
    truncate -s $((start * mib)) "$disk"
    sfdisk -q "$disk" <<<"$script"
    start=1
    while read -r number label fstype size slot; do
        if [ "$fstype" = vfat ]; then
            mkfs.fat -C -n "${label^^}" "$tmp/p$number.vfat" $((size * 1024)) >/dev/null
            mcopy -i "$tmp/p$number.vfat" "$boot_scr" ::boot.scr
            dd if="$tmp/p$number.vfat" of="$disk" bs=1M seek="$start" conv=notrunc status=none
            rm -f -- "$tmp/p$number.vfat"
        else
            mkdir -p "$tmp/fs$number"
            if [ "$slot" != - ]; then
                mkdir -p "$tmp/fs$number/boot"
                cp "$kernel" "$tmp/fs$number/boot/Image"
            fi
            mke2fs -q -t ext4 -L "$label" -d "$tmp/fs$number" -E offset=$((start * mib)) \
                "$disk" $((size * 1024))k
        fi
        start=$((start + size))
    done <<<"$parts"
    rm -rf -- "$tmp"
}
