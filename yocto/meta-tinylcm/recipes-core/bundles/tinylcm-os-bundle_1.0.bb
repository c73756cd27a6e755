# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI
# (a bundle is built for the target only, and has no sources of its own: its content is
# tinylcm-image)
SUMMARY = "TinyLCM OS update: a signed RAUC bundle of tinylcm-image for one machine"
DESCRIPTION = "A verity RAUC bundle whose rootfs slot image is tinylcm-image's ext4; its \
               compatible is the one in board/<machine>/system.conf, so a bundle never \
               installs on the other board."
HOMEPAGE = "https://example.invalid/tinylcm"
BUGTRACKER = "https://example.invalid/tinylcm/issues"
SECTION = "tinylcm"
CVE_PRODUCT = "tinylcm"
LICENSE = "MIT"

inherit bundle

# Only the boards with a board/<machine>/system.conf (whose compatible the bundle carries):
# elsewhere the recipe is skipped rather than stopping the parse of a whole build.
COMPATIBLE_MACHINE = "^(raspberrypi0-2w-64|raspberrypi4-64)$"

# The compatible of the device's own system.conf (board/<machine>/system.conf); RAUC refuses
# a bundle whose compatible differs.
RAUC_BUNDLE_COMPATIBLE = "${@tinylcm_compatible(d)}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "TinyLCM OS ${DISTRO_VERSION} for ${MACHINE}"
# verity: the bundle is checked block by block while it is installed (and can be streamed).
RAUC_BUNDLE_FORMAT = "verity"

RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "tinylcm-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

def tinylcm_compatible(d):
    import configparser, os
    path = os.path.join(d.getVar('TINYLCM_BOARD_DIR'), d.getVar('MACHINE'), 'system.conf')
    # Read at parse time: without this BitBake's parse cache keeps the old compatible when
    # only system.conf changes, and the bundle is built for a compatible the device lacks.
    bb.parse.mark_dependency(d, path)
    conf = configparser.ConfigParser(interpolation=None)
    if not conf.read(path) or not conf.has_option('system', 'compatible'):
        bb.fatal('tinylcm: %s has no [system] compatible= (is TINYLCM_BOARD_DIR right?)' % path)
    return conf.get('system', 'compatible')
