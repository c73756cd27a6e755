# TinyLCM: the kernel lives in each root file system slot (it updates and rolls back with
# the slot; boot.cmd loads /boot/Image from the slot it picked), so it is left off the shared
# boot partition.
RPI_EXTRA_IMAGE_BOOT_FILES:remove:tinylcm = "${KERNEL_IMAGETYPE}"
