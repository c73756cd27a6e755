# TinyLCM: board/<machine>/config.txt (camera, memory split, U-Boot as the kernel, DWC2 on
# the CM4) is appended to the config.txt meta-raspberrypi generates; the firmware takes the
# last value of a repeated key, so the board file wins. Fetched as a file:// source so an
# edit redeploys it.
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/${MACHINE}:"
SRC_URI:append:tinylcm = " file://config.txt;subdir=tinylcm"

do_deploy:append:tinylcm() {
    printf '\n# --- board/%s/config.txt (meta-tinylcm) ---\n' "${MACHINE}" >> ${DEPLOYDIR}/${BOOTFILES_DIR_NAME}/config.txt
    cat ${UNPACKDIR}/tinylcm/config.txt >> ${DEPLOYDIR}/${BOOTFILES_DIR_NAME}/config.txt
}
