# TinyLCM: /etc/fw_env.config from board/common/fw_env.config tells fw_printenv/fw_setenv,
# and through them RAUC's uboot backend, where U-Boot keeps its environment (uboot.env on the
# boot partition).
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/common:"
SRC_URI:append:tinylcm = " file://fw_env.config;subdir=tinylcm"

do_install:append:tinylcm() {
    install -d ${D}${sysconfdir}
    install -m 0644 ${UNPACKDIR}/tinylcm/fw_env.config ${D}${sysconfdir}/fw_env.config
}

FILES:${PN}:append:tinylcm = " ${sysconfdir}/fw_env.config"
CONFFILES:${PN}:append:tinylcm = " ${sysconfdir}/fw_env.config"
