# TinyLCM: the device's RAUC configuration is board/<machine>/system.conf (the very file the
# offline RAUC tests use) and its keyring is TINYLCM_RAUC_KEYRING (the development CA of
# ./scripts/dev-pki by default). Both are fetched as file:// sources, so changing either
# rebuilds the package. meta-rauc's rauc-conf installs them into ${nonarch_libdir}/rauc
# (/usr/lib/rauc, where RAUC looks for system.conf when /etc/rauc has none); the keyring is
# named keyring.pem there, which system.conf gives relative to its own folder
# ([keyring] path=keyring.pem), so neither file depends on where the other is installed.
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/${MACHINE}:${@os.path.dirname(d.getVar('TINYLCM_RAUC_KEYRING') or '')}:"
RAUC_KEYRING_FILE:tinylcm = "${@os.path.basename(d.getVar('TINYLCM_RAUC_KEYRING') or '')}"

do_install:append:tinylcm() {
    if [ "${RAUC_KEYRING_FILE}" != "keyring.pem" ]; then
        mv ${D}${nonarch_libdir}/rauc/${RAUC_KEYRING_FILE} ${D}${nonarch_libdir}/rauc/keyring.pem
    fi
}
