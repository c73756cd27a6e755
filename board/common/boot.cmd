# TinyLCM A/B boot script for U-Boot (hush), shared by both boards; compiled to boot.scr.
#
# Why: the Pi firmware has no rollback, so U-Boot keeps a try counter per root file system
# slot in its environment, with the names RAUC's `bootloader=uboot` backend reads and
# writes (fw_env.config says where the environment lives):
#   BOOT_ORDER   slots in priority order, e.g. "A B" (`rauc install` puts the new slot first)
#   BOOT_A_LEFT  tries left for slot A (RAUC writes 3 on set-primary and mark-good, 0 on mark-bad)
#   BOOT_B_LEFT  the same for slot B
# Each boot takes the first slot in BOOT_ORDER with tries left, decrements its counter and
# saves the environment *before* booting, so a kernel or userspace that never gets the slot
# marked good (tinylcm-healthcheck.service) costs one try; after three failed tries the next
# slot in order boots. The kernel command line always gets `root=` and `rauc.slot=`: RAUC
# finds the booted slot from them.
#
# When no slot has tries left (both failed their health gates, e.g. the camera is gone on a
# device whose slots were both confirmed), the first slot of BOOT_ORDER (A when the order is
# empty) boots anyway, without a try and without writing the environment: the device stays
# up on one OS, reachable for a fix, instead of resetting its counters and falling back and
# forth between A and B for ever. A slot marked good later gets its tries back (RAUC writes
# 3), and the normal order resumes.
#
# Layout (board/common/layout.toml): A = partition 2, B = partition 3 of the boot medium;
# the kernel sits inside each root file system (/boot/Image) so it updates with the slot.
#
# Only hush features that plain sh shares are used (if/elif, for, test, ||, ${var}):
# board/tests/boot-counters.sh runs this very file under sh with the U-Boot commands as
# shell functions (scripts/lib/uboot-sim.sh).

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

# Helpers live in the environment too (hush locals differ between U-Boot versions);
# clear what a previous boot left behind.
setenv tinylcm_slot
setenv tinylcm_part

for slot in ${BOOT_ORDER}; do
    # Once a slot is chosen the rest of the order does not matter.
    if test -z "${tinylcm_slot}"; then
        if test "x${slot}" = "xA"; then
            if test "${BOOT_A_LEFT}" -gt 0; then
                setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
                setenv tinylcm_slot A
                setenv tinylcm_part 2
            fi
        elif test "x${slot}" = "xB"; then
            if test "${BOOT_B_LEFT}" -gt 0; then
                setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
                setenv tinylcm_slot B
                setenv tinylcm_part 3
            fi
        else
            echo "tinylcm: ignoring unknown slot '${slot}' in BOOT_ORDER"
        fi
    fi
done

if test -z "${tinylcm_slot}"; then
    for slot in ${BOOT_ORDER} A; do
        if test -z "${tinylcm_slot}"; then
            if test "x${slot}" = "xA"; then
                setenv tinylcm_slot A
                setenv tinylcm_part 2
            elif test "x${slot}" = "xB"; then
                setenv tinylcm_slot B
                setenv tinylcm_part 3
            fi
        fi
    done
    echo "tinylcm: no slot has tries left; booting slot ${tinylcm_slot} without a try until a slot is marked good"
else
    echo "tinylcm: booting slot ${tinylcm_slot} (tries left: A=${BOOT_A_LEFT} B=${BOOT_B_LEFT})"
    # Persist the spent try before anything can fail or hang.
    saveenv
fi

# The firmware merged cmdline.txt into the device tree it hands over at ${fdt_addr}; start
# from its bootargs and add the slot's root. bootargs is set after saveenv so the stored
# environment holds counters, not a stale command line.
fdt addr ${fdt_addr}
fdt get value bootargs /chosen bootargs
setenv bootargs "${bootargs} root=/dev/mmcblk0p${tinylcm_part} rauc.slot=${tinylcm_slot}"

if load ${devtype} ${devnum}:${tinylcm_part} ${kernel_addr_r} boot/Image; then
    booti ${kernel_addr_r} - ${fdt_addr}
fi
# Only reached when the kernel could not be loaded or booted: the try is already spent,
# so resetting retries this slot until its counter runs out, then falls back. (With no tries
# left anywhere it is the same slot again: there is no counter left to fall back on.)
echo "tinylcm: slot ${tinylcm_slot} did not boot; resetting"
reset
