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

# guest_deb PKG VERSION SHA256: print the path of the verified .deb in the cache, downloading
# it with apt on first use. A cached file that does not match its pin is replaced.
guest_deb() {
    local pkg=$1 version=$2 sha=$3 dir file tmp got sudo=""
    dir=$(cache_dir)/qemu
    file=$dir/${pkg}_${version#*:}_arm64.deb
    if sha256_matches "$file" "$sha"; then
        printf '%s\n' "$file"
        return
    fi
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/download.XXXXXX")
    note "downloading $pkg $version (arm64) with apt"
    # APT::Sandbox::User=root: apt would otherwise hand the download to the _apt user, who
    # cannot write into a private temporary folder (it warns and falls back to root anyway).
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64=$version" >&2); then
        # Stale lists (e.g. the arm64 architecture was just added): refresh once.
        $sudo apt-get update -qq
        (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64=$version" >&2) || {
            rm -rf -- "$tmp"
            die "apt cannot download $pkg:arm64=$version; if Debian no longer has it, update the pin in scripts/lib/qemu-guest.sh"
        }
    fi
    got=$(find "$tmp" -name "${pkg}_*_arm64.deb" -print -quit)
    if [ -z "$got" ] || ! sha256_matches "$got" "$sha"; then
        rm -rf -- "$tmp"
        die "$pkg $version: the downloaded .deb is missing or does not match the pinned SHA-256 $sha"
    fi
    mv -f -- "$got" "$file"
    rm -rf -- "$tmp"
    printf '%s\n' "$file"
}

# guest_kernel: print the folder holding the pinned kernel as Image and the Zero 2 W's
# device tree as zero2w.dtb. Extracted once from the verified .deb into the cache (unpacking
# the 60 MB package costs seconds per boot otherwise); a stamp written last names the .deb's
# SHA-256, so an interrupted or outdated extraction is redone.
guest_kernel() {
    local dir deb
    dir=$(cache_dir)/qemu/kernel-$GUEST_KERNEL_RELEASE
    if [ "$(cat "$dir/.deb-sha256" 2>/dev/null)" = "$GUEST_KERNEL_DEB_SHA256" ] &&
        [ -f "$dir/Image" ] && [ -f "$dir/zero2w.dtb" ]; then
        printf '%s\n' "$dir"
        return
    fi
    deb=$(guest_deb "$GUEST_KERNEL_PKG" "$GUEST_KERNEL_VERSION" "$GUEST_KERNEL_DEB_SHA256")
    rm -rf -- "$dir"
    mkdir -p "$dir/x"
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -C "$dir/x" "./boot/vmlinuz-$GUEST_KERNEL_RELEASE" \
            "./usr/lib/linux-image-$GUEST_KERNEL_RELEASE/$GUEST_ZERO2W_DTB"
    mv "$dir/x/boot/vmlinuz-$GUEST_KERNEL_RELEASE" "$dir/Image"
    mv "$dir/x/usr/lib/linux-image-$GUEST_KERNEL_RELEASE/$GUEST_ZERO2W_DTB" "$dir/zero2w.dtb"
    rm -rf -- "$dir/x"
    printf '%s\n' "$GUEST_KERNEL_DEB_SHA256" >"$dir/.deb-sha256"
    printf '%s\n' "$dir"
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
