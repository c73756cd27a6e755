# TinyLCM: U-Boot keeps its environment twice on the boot partition (uboot.env and
# uboot-redund.env, written in turn), so a power cut while boot.scr saves the try counters
# leaves the previous copy intact (files/tinylcm-env-redund.cfg). meta-raspberrypi's own
# u-boot bbappend installs a one-file fw_env.config into u-boot-env; board/common comes first
# in the search path, so that package gets ours, with both files, too.
FILESEXTRAPATHS:prepend:tinylcm := "${TINYLCM_BOARD_DIR}/common:${THISDIR}/files:"
SRC_URI:append:tinylcm = " file://tinylcm-env-redund.cfg"
