# nooelint: oelint.var.bbclassextend
# (the runtime is a target-only service: no native or nativesdk variant makes sense)
SUMMARY = "TinyLCM edge runtime: camera frames through a TFLite model, autonomously"
DESCRIPTION = "The tinylcm binary: camera capture, TFLite inference, drift detection, \
               on-device adaptation and sync with a sphere-lite fleet server, as a systemd \
               service with a watchdog and a boot health gate that confirms RAUC slots."
HOMEPAGE = "https://example.invalid/tinylcm"
BUGTRACKER = "https://example.invalid/tinylcm/issues"
SECTION = "tinylcm"
CVE_PRODUCT = "tinylcm"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=355c9b31f87be0fa18cac291c7fda40a \
                    file://LICENSE-APACHE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# bindgen (v4l2-sys-mit) needs libclang at build time.
DEPENDS = "clang-native"

# The source is the checkout this layer is in (TINYLCM_SRC_DIR, set in layer.conf, built
# through externalsrc, which keeps the crate:// entries below), or with TINYLCM_SRC_DIR = "" a
# git repository at a pinned commit (TINYLCM_GIT_URI, TINYLCM_SRCREV; there is no AUTOREV).
# With neither the recipe is skipped with that advice, instead of failing later in do_fetch.
TINYLCM_SRC_DIR ??= ""
TINYLCM_GIT_URI ??= ""
TINYLCM_SRCREV ??= ""
PV = "0.1.0+git"
SRC_URI = "${TINYLCM_GIT_URI}"
SRCREV = "${TINYLCM_SRCREV}"
inherit_defer ${@'externalsrc' if d.getVar('TINYLCM_SRC_DIR') else ''}
EXTERNALSRC = "${TINYLCM_SRC_DIR}"

# Only Python can skip a recipe with a reason the user sees.
# nooelint: oelint.task.noanonpython
python () {
    if not d.getVar('TINYLCM_SRC_DIR') and not (d.getVar('TINYLCM_GIT_URI') and d.getVar('TINYLCM_SRCREV')):
        raise bb.parse.SkipRecipe('no source: set TINYLCM_SRC_DIR to a TinyLCM checkout, or '
                                  'TINYLCM_GIT_URI and TINYLCM_SRCREV to a repository and commit')
}

require tinylcm-runtime-crates.inc

inherit cargo cargo-update-recipe-crates systemd

# The workspace also holds the fleet server and test crates: build only the runtime
# package (its manifest), which produces the one binary `tinylcm`. The lock file is the
# workspace's.
CARGO_SRC_DIR = "runtime"
CARGO_LOCK_SRC_DIR = "${S}"

# bindgen runs on the build host but parses the target's kernel headers.
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET} --target=${TARGET_SYS}"
# The workspace's release profile strips the binary; Yocto splits debug symbols itself and
# its QA refuses binaries that arrive stripped.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# Coral Edge TPU: the runtime dlopens libedgetpu.so.1 when it is there and falls back to
# XNNPACK without it, so the library is a runtime dependency only.
PACKAGECONFIG ??= "${TINYLCM_RUNTIME_PACKAGECONFIG}"
PACKAGECONFIG[edgetpu] = ",,,${TINYLCM_EDGETPU_PROVIDER}"

SYSTEMD_SERVICE:${PN} = "tinylcm.service tinylcm-healthcheck.service tinylcm-provision.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# Units, tmpfiles, provisioning and the device configuration come from board/ of the same
# commit as the binary, so they always match its command line.
do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/board/systemd/tinylcm.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/board/systemd/tinylcm-healthcheck.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/board/systemd/tinylcm-provision.service ${D}${systemd_system_unitdir}/
    install -d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/board/systemd/tinylcm.tmpfiles ${D}${nonarch_libdir}/tmpfiles.d/tinylcm.conf
    install -d ${D}${systemd_unitdir}/network
    install -m 0644 ${S}/board/systemd/tinylcm-wlan.network ${D}${systemd_unitdir}/network/80-tinylcm-wlan.network
    install -d ${D}${sbindir}
    install -m 0755 ${S}/board/common/tinylcm-provision ${D}${sbindir}/tinylcm-provision
    install -d ${D}${sysconfdir}/tinylcm
    install -m 0644 ${S}/board/tinylcm.toml ${D}${sysconfdir}/tinylcm/config.toml
    install -d ${D}${docdir}/tinylcm
    install -m 0644 ${S}/README.md ${D}${docdir}/tinylcm/README.md
}

FILES:${PN} += "${nonarch_libdir}/tmpfiles.d/tinylcm.conf \
                ${systemd_unitdir}/network/80-tinylcm-wlan.network \
                ${sbindir}/tinylcm-provision"
CONFFILES:${PN} = "${sysconfdir}/tinylcm/config.toml"

# The inference library is dlopen'ed by name (libtensorflowlite_c.so), never linked, so
# the package manager cannot see the dependency: name it. The health gate talks to RAUC.
# tinylcm-provision grows /data (sfdisk, partx, e2fsck, resize2fs, dumpe2fs) at boot.
RDEPENDS:${PN} = "e2fsprogs-dumpe2fs e2fsprogs-e2fsck e2fsprogs-resize2fs \
                  libtensorflow-lite-c rauc util-linux-partx util-linux-sfdisk"
