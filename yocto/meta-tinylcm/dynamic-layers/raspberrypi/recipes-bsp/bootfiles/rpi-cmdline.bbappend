# TinyLCM: meta-raspberrypi's cmdline.txt, shaped through its CMDLINE_* knobs. No root=:
# the boot script adds root= and rauc.slot= for the slot it picked (a fixed root= would
# always boot A). `ro`: the slot is mounted read-only from the start, as the fstab keeps it
# (without it the kernel mounts the slot read-write and systemd remounts it).
CMDLINE_ROOTFS:tinylcm = "ro ${CMDLINE_ROOT_FSTYPE} rootwait"
# rpi-cmdline lists ${CMDLINE_CMA} without defining it anywhere, which would put the text
# "${CMDLINE_CMA}" itself on the command line; the device tree's CMA pool is what the
# camera stack uses.
CMDLINE_CMA:tinylcm = ""
