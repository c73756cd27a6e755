# TinyLCM: the fstab of the A/B layout (board/common/layout.toml). The root file system is
# whichever slot U-Boot booted (root= on the kernel command line), mounted read-only; the
# shared boot partition and the data partition are mounted by device, the way the boot script
# and RAUC's system.conf name them.
FILESEXTRAPATHS:prepend:tinylcm := "${THISDIR}/files:"
SRC_URI:append:tinylcm = " file://tinylcm-fstab"

do_install:append:tinylcm() {
    install -m 0644 ${UNPACKDIR}/tinylcm-fstab ${D}${sysconfdir}/fstab
    install -d ${D}/data
}
