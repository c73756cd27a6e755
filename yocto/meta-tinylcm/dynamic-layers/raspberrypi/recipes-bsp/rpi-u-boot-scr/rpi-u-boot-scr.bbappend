# TinyLCM: U-Boot's boot.scr is compiled from board/common/boot.cmd, the A/B try-counter
# script that tests/image/boot-counters.sh runs under a simulator. It takes the place of
# meta-raspberrypi's boot.cmd.in (it has no @@ placeholders, so the recipe's sed leaves it
# unchanged) and is fetched as a file:// source, so an edit rebuilds boot.scr.
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/common:"
SRC_URI:append:tinylcm = " file://boot.cmd;subdir=tinylcm"

do_compile:prepend:tinylcm() {
    cp ${UNPACKDIR}/tinylcm/boot.cmd ${UNPACKDIR}/boot.cmd.in
}
