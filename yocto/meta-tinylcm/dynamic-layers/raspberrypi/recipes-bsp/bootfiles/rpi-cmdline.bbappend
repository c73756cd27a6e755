# TinyLCM: cmdline.txt is board/common/cmdline.txt, without root=: the boot script adds
# root= and rauc.slot= for the slot it picked, so a fixed root= here would always boot A.
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/common:"
SRC_URI:append:tinylcm = " file://cmdline.txt;subdir=tinylcm"

do_deploy:append:tinylcm() {
    install -m 0644 ${UNPACKDIR}/tinylcm/cmdline.txt ${DEPLOYDIR}/${BOOTFILES_DIR_NAME}/cmdline.txt
}
