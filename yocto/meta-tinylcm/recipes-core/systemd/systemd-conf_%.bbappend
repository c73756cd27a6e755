# TinyLCM: systemd feeds the SoC's hardware watchdog (bcm2835-wdt), so a hung kernel or PID 1
# resets the board and costs the booted slot one try in U-Boot's counters.
FILESEXTRAPATHS:prepend:tinylcm := "${THISDIR}/files:"
SRC_URI:append:tinylcm = " file://tinylcm-watchdog.conf"

do_install:append:tinylcm() {
    install -d ${D}${systemd_unitdir}/system.conf.d
    sed -e 's/@WATCHDOG_SEC@/${TINYLCM_RUNTIME_WATCHDOG_SEC}/g' ${UNPACKDIR}/tinylcm-watchdog.conf \
        > ${D}${systemd_unitdir}/system.conf.d/50-tinylcm-watchdog.conf
    chmod 0644 ${D}${systemd_unitdir}/system.conf.d/50-tinylcm-watchdog.conf
}

FILES:${PN}:append:tinylcm = " ${systemd_unitdir}/system.conf.d/50-tinylcm-watchdog.conf"
