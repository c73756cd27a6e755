# shellcheck shell=bash
# Idempotent installation of what the scripts need on a fresh Debian machine.
# Each function checks first and installs only what is missing, so a second run
# costs a few dpkg/rustup queries. Source after common.sh.

# Install Debian packages that are not installed yet (needs root or sudo).
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    note "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Add rustup targets that are not installed yet.
ensure_rust_targets() {
    local installed target
    installed=$(rustup target list --installed)
    for target in "$@"; do
        grep -qx "$target" <<<"$installed" || rustup target add "$target"
    done
}

# Build dependencies of the runtime on the host (bindgen for v4l needs libclang),
# and the font `tinylcm report` draws its text with.
ensure_runtime_build_deps() {
    require_cmds cargo rustup
    ensure_apt libclang-dev clang pkg-config unzip python3-venv fonts-dejavu-core
}

# What the runtime's service tests run for real: Debian's RAUC service on a private D-Bus
# with file-backed slots (squashfs-tools and openssl make and sign bundles, e2fsprogs the
# slot images), unshare for the fake /proc/cmdline, systemd-analyze for the unit files.
ensure_runtime_test_deps() {
    ensure_apt rauc rauc-service squashfs-tools openssl dbus e2fsprogs util-linux systemd
}

# Install PACKAGES from bookworm-backports (adding that source once): the qemu 7.2 of
# bookworm proper is too old for LiteRT under qemu-user and clashes with qemu-utils 10.
ensure_backports() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' |
            $sudo tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    note "installing $* from bookworm-backports"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "$@" >/dev/null
}

# Major version of the installed qemu-aarch64-static, or 0.
qemu_major() {
    qemu-aarch64-static --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -n1 | grep . || echo 0
}

# Cross toolchain and emulator for the aarch64 build and tests.
ensure_aarch64_deps() {
    ensure_apt gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross \
        libstdc++6-arm64-cross linux-libc-dev-arm64-cross
    # LiteRT's CPU detection crashes under bookworm's qemu 7.2 (it passes the
    # host's /proc/cpuinfo through); bookworm-backports has 10.x.
    if [ "$(qemu_major)" -lt 8 ]; then
        ensure_backports qemu-user-static
        [ "$(qemu_major)" -ge 8 ] || die "qemu-aarch64-static >= 8 is needed (found $(qemu_major))"
    fi
    ensure_rust_targets aarch64-unknown-linux-gnu
}

# The Python tools of the Yocto layer's offline checks, pinned, in their own venv:
# oelint-adv (lints recipes against a release's rules) and kas (reads our project files).
YOCTO_TOOLS=(oelint-adv==9.11.2 kas==5.5)

# The venv holding YOCTO_TOOLS (its bin/ has oelint-adv and kas).
yocto_venv() {
    printf '%s\n' "$(cache_dir)/venv-yocto"
}

# Create or update the venv with YOCTO_TOOLS; quick when they are already there.
ensure_yocto_tools() {
    ensure_apt python3-venv git
    local venv stamp want
    venv=$(yocto_venv)
    stamp="$venv/.tinylcm-tools"
    want="${YOCTO_TOOLS[*]}"
    [ -x "$venv/bin/kas" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    note "installing ${want} into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${YOCTO_TOOLS[@]}"
    printf '%s\n' "$want" >"$stamp"
}

# Tools the image scripts and their checks use: bmaptool (flash), mkimage (boot.scr),
# filesystem and partition tools that build images without mounting, cpio and a static
# busybox for initramfs images, and RAUC (bundles, the A/B round trip).
ensure_image_tools() {
    ensure_apt bmap-tools u-boot-tools cpio busybox-static dosfstools mtools fdisk e2fsprogs \
        rauc rauc-service squashfs-tools openssl dbus util-linux systemd
}

# Major version of the installed qemu-system-aarch64, or 0.
qemu_system_major() {
    qemu-system-aarch64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -n1 | grep . || echo 0
}

# qemu-system-aarch64 for booting the aarch64 runtime (scripts/qemu-boot). From
# bookworm-backports: bookworm's qemu-system-arm 7.2 cannot be installed next to the
# qemu-utils 10 that ensure_aarch64_deps' qemu-user pulls in ("Breaks: qemu-system-common
# (< 1:8.0)"). Also makes arm64 packages downloadable (`apt-get download pkg:arm64`), which
# is how the guest kernel and busybox are fetched.
ensure_qemu_system() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ "$(qemu_system_major)" -lt 8 ]; then
        ensure_backports qemu-system-arm
        [ "$(qemu_system_major)" -ge 8 ] ||
            die "qemu-system-aarch64 >= 8 is needed (found $(qemu_system_major))"
    fi
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        note "adding the arm64 architecture to apt (for the guest's kernel and busybox)"
        $sudo dpkg --add-architecture arm64
        $sudo apt-get update -qq
    fi
    ensure_apt cpio binutils-aarch64-linux-gnu
}
