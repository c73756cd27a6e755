# TinyLCM: the device's RAUC configuration is board/<machine>/system.conf (the very file the
# offline RAUC tests use) and its keyring is TINYLCM_RAUC_KEYRING (the development CA of
# ./scripts/dev-pki by default), installed as /etc/rauc/keyring.pem where system.conf looks.
# Both are fetched as file:// sources, so changing either rebuilds the package.
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/${MACHINE}:${@os.path.dirname(d.getVar('TINYLCM_RAUC_KEYRING') or '')}:"
RAUC_KEYRING_FILE:tinylcm = "${@os.path.basename(d.getVar('TINYLCM_RAUC_KEYRING') or '')}"

do_install:append:tinylcm() {
    if [ "${RAUC_KEYRING_FILE}" != "keyring.pem" ]; then
        mv ${D}${sysconfdir}/rauc/${RAUC_KEYRING_FILE} ${D}${sysconfdir}/rauc/keyring.pem
    fi
}
