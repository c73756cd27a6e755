#!/bin/sh
# Debian's real RAUC service on a private D-Bus with file-backed A/B slots, for
# runtime/tests/rauc_dbus.rs (see shared platform notes §6.2-6.3).
#
#   rauc-harness.sh setup DIR          dev PKI (openssl), slots, system.conf, a bootloader
#                                      backend emulating U-Boot try counters, bundles
#   rauc-harness.sh run DIR SLOT CMD   under `unshare -m`: fake /proc/cmdline booted from
#                                      SLOT (A/B), a private bus, `rauc service`, then CMD
#                                      with DBUS_SESSION_BUS_ADDRESS set; exits with CMD's
#                                      status. NO_RAUC_SERVICE=1 leaves the service out.
set -eu

setup() {
    T=$1
    mkdir -p "$T/pki" "$T/other-pki" "$T/slots" "$T/mnt" "$T/data" "$T/boot"
    pki "$T/pki" "TinyLCM Test"
    pki "$T/other-pki" "Someone Else"
    truncate -s 16M "$T/slots/rootfs.0.img" "$T/slots/rootfs.1.img"
    echo "A B" > "$T/boot/order"
    echo 3 > "$T/boot/tries_A"
    echo 3 > "$T/boot/tries_B"
    # The custom bootloader backend: an order list and try counters per slot, like the
    # U-Boot script (BOOT_ORDER, BOOT_x_LEFT): a slot with no tries left is bad and skipped.
    cat > "$T/bootloader.sh" <<SH
#!/bin/sh
D="$T/boot"
case "\$1" in
get-primary)
    for s in \$(cat "\$D/order"); do
        if [ "\$(cat "\$D/tries_\$s")" -gt 0 ]; then echo "\$s"; exit 0; fi
    done
    exit 1 ;;
set-primary)
    rest=""
    for s in \$(cat "\$D/order"); do [ "\$s" = "\$2" ] || rest="\$rest \$s"; done
    echo "\$2\$rest" > "\$D/order"
    echo 3 > "\$D/tries_\$2" ;;
get-state)
    if [ "\$(cat "\$D/tries_\$2")" -gt 0 ]; then echo good; else echo bad; fi ;;
set-state)
    if [ "\$3" = good ]; then echo 3 > "\$D/tries_\$2"; else echo 0 > "\$D/tries_\$2"; fi ;;
*) exit 1 ;;
esac
SH
    chmod +x "$T/bootloader.sh"
    cat > "$T/system.conf" <<CONF
[system]
compatible=tinylcm-test-board
bootloader=custom
mountprefix=$T/mnt
data-directory=$T/data
[handlers]
bootloader-custom-backend=$T/bootloader.sh
[keyring]
path=$T/pki/ca.cert.pem
check-purpose=codesign
[slot.rootfs.0]
device=$T/slots/rootfs.0.img
type=ext4
bootname=A
[slot.rootfs.1]
device=$T/slots/rootfs.1.img
type=ext4
bootname=B
CONF
    mkdir -p "$T/content/rootfs/etc"
    echo "2.0" > "$T/content/rootfs/etc/tinylcm-release"
    mke2fs -q -t ext4 -d "$T/content/rootfs" "$T/content/rootfs.ext4" 8M >/dev/null
    rm -r "$T/content/rootfs"
    cat > "$T/content/manifest.raucm" <<MANIFEST
[update]
compatible=tinylcm-test-board
version=2.0
[bundle]
format=plain
[image.rootfs]
filename=rootfs.ext4
MANIFEST
    # `rauc bundle` rewrites the manifest in its content folder: always bundle from a copy.
    bundle "$T" "$T/pki" "$T/good.raucb"
    bundle "$T" "$T/other-pki" "$T/other-ca.raucb"
}

pki() {
    d=$1
    openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key.pem"
    openssl req -new -x509 -key "$d/ca.key.pem" -subj "/CN=$2 Dev CA" -days 30 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/ca.cert.pem" 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out "$d/dev.key.pem"
    openssl req -new -key "$d/dev.key.pem" -subj "/CN=$2 Dev Signing" -out "$d/dev.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' \
        > "$d/leaf.ext"
    openssl x509 -req -in "$d/dev.csr" -CA "$d/ca.cert.pem" -CAkey "$d/ca.key.pem" \
        -CAcreateserial -days 30 -extfile "$d/leaf.ext" -out "$d/dev.cert.pem" 2>/dev/null
}

bundle() {
    src=$(mktemp -d "$1/bundle-src.XXXXXX")
    cp -a "$1/content/." "$src/"
    rauc bundle --cert="$2/dev.cert.pem" --key="$2/dev.key.pem" "$src" "$3" >/dev/null 2>&1
    rm -r "$src"
}

run() {
    T=$1
    SLOT=$2
    shift 2
    echo "console=ttyS0 root=/dev/fake rauc.slot=$SLOT" > "$T/cmdline"
    # RAUC finds the booted slot on the kernel command line.
    mount --bind "$T/cmdline" /proc/cmdline
    export DBUS_STARTER_BUS_TYPE=session
    bus=$(dbus-daemon --session --fork --print-address=1 --print-pid=1)
    DBUS_SESSION_BUS_ADDRESS=$(echo "$bus" | sed -n 1p)
    DBUS_PID=$(echo "$bus" | sed -n 2p)
    export DBUS_SESSION_BUS_ADDRESS
    SVC=""
    if [ -z "${NO_RAUC_SERVICE:-}" ]; then
        rauc service --conf="$T/system.conf" >> "$T/service.log" 2>&1 &
        SVC=$!
        i=0
        until rauc status --conf="$T/system.conf" >/dev/null 2>&1; do
            i=$((i + 1))
            if [ $i -gt 100 ]; then
                echo "rauc service did not come up:" >&2
                cat "$T/service.log" >&2
                kill $SVC $DBUS_PID 2>/dev/null || true
                exit 2
            fi
            sleep 0.1
        done
    fi
    rc=0
    "$@" || rc=$?
    [ -z "$SVC" ] || kill $SVC 2>/dev/null || true
    kill "$DBUS_PID" 2>/dev/null || true
    [ -z "$SVC" ] || wait $SVC 2>/dev/null || true
    exit $rc
}

cmd=$1
shift
case "$cmd" in
setup) setup "$@" ;;
run) run "$@" ;;
*) echo "usage: $0 setup DIR | run DIR SLOT CMD..." >&2; exit 2 ;;
esac
