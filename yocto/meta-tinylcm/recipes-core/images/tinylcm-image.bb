SUMMARY = "TinyLCM camera image: the runtime on an A/B root file system updated by RAUC"
DESCRIPTION = "systemd, RAUC with the runtime's health gate marking slots good, camera \
               support (V4L2, libcamera with its V4L2 compatibility layer), the TFLite C \
               library, a read-only root file system with the kernel inside it, and a /data \
               partition."
HOMEPAGE = "https://example.invalid/tinylcm"
BUGTRACKER = "https://example.invalid/tinylcm/issues"
SECTION = "tinylcm"
CVE_PRODUCT = "tinylcm"
LICENSE = "MIT"

inherit core-image

# read-only-rootfs: every A/B slot is written only by RAUC; state lives on /data.
IMAGE_FEATURES += "${TINYLCM_READ_ONLY_ROOTFS}"

# kernel-image and kernel-modules live in the root file system so the kernel updates and
# rolls back with its slot (the boot script loads /boot/Image from the slot it picked).
IMAGE_INSTALL += "kernel-image \
                  kernel-modules \
                  packagegroup-core-boot \
                  rauc \
                  tinylcm-runtime \
                  libtensorflow-lite-c \
                  libubootenv-bin \
                  v4l-utils \
                  ${@bb.utils.contains('TINYLCM_CAMERA', 'libcamera', 'libcamera', '', d)} \
                  e2fsprogs-resize2fs \
                  parted \
                  "

# The runtime's health gate (tinylcm-healthcheck.service) marks the booted slot good, and
# bad only while it is on trial. meta-rauc's rauc-mark-good.service (which rauc recommends)
# would mark it good a second time after boot-complete.target: a second write of U-Boot's
# environment on the boot partition every boot, for nothing.
BAD_RECOMMENDATIONS += "rauc-mark-good"

# A camera module through libcamera (whose V4L2 compatibility layer turns the raw sensor
# into frames the runtime's V4L2 source can read), or only plain V4L2 for USB webcams.
TINYLCM_CAMERA ?= "libcamera"

# wic image for flashing (bmap for a fast, verified bmaptool copy) and the plain ext4 of the
# root file system, which the OS bundle carries.
IMAGE_FSTYPES = "ext4 wic.bz2 wic.bmap"
WKS_FILE = "tinylcm-dual-rpi.wks.in"
# The layer keeps its wks in files/wic/; searched first whatever the release's default.
WKS_SEARCH_PATH:prepend := "${THISDIR}/../../files/wic:"
# The slot size of board/common/layout.toml (1 GiB): the ext4 of the bundle must fit it.
IMAGE_ROOTFS_MAXSIZE = "1048576"

# Wi-Fi: tinylcm-provision writes the credentials from the boot partition to
# /data/etc/wpa_supplicant/wpa_supplicant-wlan0.conf; the read-only root links to that file
# and starts wpa_supplicant on wlan0 (which fails quietly on a board without credentials).
IMAGE_INSTALL += "wpa-supplicant"
ROOTFS_POSTPROCESS_COMMAND += "tinylcm_wifi_from_data tinylcm_camera_compat"
tinylcm_wifi_from_data[doc] = "Links wpa_supplicant's wlan0 configuration to the provisioned file on /data"
tinylcm_camera_compat[doc] = "Preloads libcamera's V4L2 compatibility layer into tinylcm.service"

tinylcm_wifi_from_data() {
    install -d ${IMAGE_ROOTFS}${sysconfdir}/wpa_supplicant
    ln -sf /data/etc/wpa_supplicant/wpa_supplicant-wlan0.conf \
        ${IMAGE_ROOTFS}${sysconfdir}/wpa_supplicant/wpa_supplicant-wlan0.conf
    install -d ${IMAGE_ROOTFS}${sysconfdir}/systemd/system/multi-user.target.wants
    ln -sf ${systemd_system_unitdir}/wpa_supplicant@.service \
        ${IMAGE_ROOTFS}${sysconfdir}/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service
}

# A camera module gives raw Bayer frames on its V4L2 node; libcamera's V4L2 compatibility
# layer, preloaded into the runtime, turns them into the processed frames the runtime's V4L2
# source reads. USB webcams work either way.
tinylcm_camera_compat() {
    if [ "${TINYLCM_CAMERA}" = "libcamera" ]; then
        install -d ${IMAGE_ROOTFS}${sysconfdir}/systemd/system/tinylcm.service.d
        printf '[Service]\nEnvironment=LD_PRELOAD=%s/libcamera/v4l2-compat.so\n' "${libexecdir}" \
            > ${IMAGE_ROOTFS}${sysconfdir}/systemd/system/tinylcm.service.d/libcamera.conf
    fi
}
