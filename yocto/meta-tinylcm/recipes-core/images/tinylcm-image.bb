SUMMARY = "TinyLCM camera image: the runtime on an A/B root file system updated by RAUC"
DESCRIPTION = "systemd, RAUC with rauc-mark-good after the runtime's health gate, camera \
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
                  rauc-mark-good \
                  tinylcm-runtime \
                  libtensorflow-lite-c \
                  libubootenv-bin \
                  v4l-utils \
                  ${@bb.utils.contains('TINYLCM_CAMERA', 'libcamera', 'libcamera', '', d)} \
                  e2fsprogs-resize2fs \
                  parted \
                  "

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
