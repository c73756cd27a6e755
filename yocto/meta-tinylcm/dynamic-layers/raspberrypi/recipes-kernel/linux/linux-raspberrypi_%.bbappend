# TinyLCM: what RAUC needs to install a verity bundle (loop, squashfs, device mapper with
# dm-verity) and the SoC watchdog systemd feeds.
FILESEXTRAPATHS:prepend:tinylcm := "${THISDIR}/files:"
SRC_URI:append:tinylcm = " file://tinylcm-rauc.cfg"
