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

# Build dependencies of the runtime on the host (bindgen for v4l needs libclang).
ensure_runtime_build_deps() {
    require_cmds cargo rustup
    ensure_apt libclang-dev clang pkg-config unzip python3-venv
}

# Cross toolchain and emulator for the aarch64 build and tests.
ensure_aarch64_deps() {
    ensure_apt gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross \
        libstdc++6-arm64-cross linux-libc-dev-arm64-cross qemu-user-static
    ensure_rust_targets aarch64-unknown-linux-gnu
}
