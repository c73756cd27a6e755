# shellcheck shell=sh
# A simulator for board/common/boot.cmd: runs the U-Boot boot script's logic under plain sh.
# Why: U-Boot itself cannot run here (no board, and QEMU's raspi machines need a full SD
# image), but the try-counter logic is what decides rollbacks, so it must be tested. The
# script only uses hush features sh shares; this file supplies the U-Boot commands it calls
# as shell functions over a file-backed environment (one NAME=VALUE per line, like
# `fw_printenv`'s output). Source it, then:
#   uboot_sim_boot SCRIPT ENVFILE     one power-on: prints `booti <bootargs>` or `reset`
#   uboot_sim_setenv ENVFILE NAME [V] what fw_setenv (and so RAUC's uboot backend) does
#   uboot_sim_getenv ENVFILE NAME     what fw_printenv -n does (empty when unset)
# The U-Boot console output of the script goes to stderr.
#
# Knobs (environment): UBOOT_SIM_BOOTARGS, the firmware's command line found in the device
# tree (default: a line like the image's cmdline.txt); UBOOT_SIM_LOAD_FAILS, a list of
# partition numbers whose kernel cannot be loaded.

# sh cannot tell a sourced file its own path: set UBOOT_SIM_LIB to this file's absolute
# path before sourcing it (uboot_sim_boot starts a clean child shell that sources it again).

uboot_sim__die() {
    printf 'uboot-sim: %s\n' "$*" >&2
    exit 2
}

# Succeed if $1 is a name U-Boot and sh both accept as a variable.
uboot_sim__valid_name() {
    case $1 in
        '' | [0-9]* | *[!A-Za-z0-9_]*) return 1 ;;
        *) return 0 ;;
    esac
}

# NAME=VALUE lines of ENVFILE without NAME (the rest of an fw_setenv).
uboot_sim__without() {
    [ -f "$1" ] || return 0
    grep -v "^$2=" "$1" || true
}

uboot_sim_setenv() {
    envfile=$1 name=$2
    shift 2
    uboot_sim__valid_name "$name" || uboot_sim__die "invalid variable name '$name'"
    {
        uboot_sim__without "$envfile" "$name"
        [ $# -eq 0 ] || printf '%s=%s\n' "$name" "$*"
    } >"$envfile.new" && mv "$envfile.new" "$envfile"
}

uboot_sim_getenv() {
    [ -f "$1" ] || return 0
    sed -n "s/^$2=//p" "$1" | tail -n 1
}

uboot_sim_boot() {
    [ -f "$1" ] || uboot_sim__die "no boot script at $1"
    [ -f "${UBOOT_SIM_LIB:-}" ] || uboot_sim__die "set UBOOT_SIM_LIB to the path of uboot-sim.sh"
    touch "$2"
    # A clean environment, so nothing of the caller's shell leaks into the script's ${...}.
    # shellcheck disable=SC2016 # the child shell expands them, not this one
    env -i PATH="$PATH" UBOOT_SIM_LIB="$UBOOT_SIM_LIB" \
        UBOOT_SIM_BOOTARGS="${UBOOT_SIM_BOOTARGS:-console=serial0,115200 rootfstype=ext4 rootwait}" \
        UBOOT_SIM_LOAD_FAILS="${UBOOT_SIM_LOAD_FAILS:-}" \
        sh -c '. "$UBOOT_SIM_LIB" && uboot_sim__run "$1" "$2"' uboot-sim "$1" "$2"
}

# Runs inside uboot_sim_boot's child shell: load the environment, define the commands, run.
uboot_sim__run() {
    UBOOT_SIM_ENVFILE=$2
    UBOOT_SIM_NAMES=""
    UBOOT_SIM_DIRTY=""
    while IFS= read -r line; do
        name=${line%%=*}
        uboot_sim__valid_name "$name" || uboot_sim__die "bad line in $2: $line"
        eval "$name=\${line#*=}"
        UBOOT_SIM_NAMES="$UBOOT_SIM_NAMES $name"
    done <"$2"
    # What U-Boot and the Pi firmware provide before the script starts (read by boot.cmd).
    # shellcheck disable=SC2034
    fdt_addr=0x2eff2e00 kernel_addr_r=0x00080000 devtype=mmc devnum=0
    # shellcheck disable=SC1090 # the script under test, chosen by the caller
    . "$1"
    # boot.cmd must end in booti or reset; falling off its end would drop to a U-Boot prompt.
    uboot_sim__die "the script ended without booting or resetting"
}

# --- the U-Boot commands boot.cmd uses ---

echo() {
    printf 'U-Boot> %s\n' "$*" >&2
}

setenv() {
    name=$1
    shift
    uboot_sim__valid_name "$name" || uboot_sim__die "setenv: invalid name '$name'"
    if [ $# -eq 0 ]; then
        unset "$name"
    else
        eval "$name=\$*"
    fi
    case " $UBOOT_SIM_NAMES " in *" $name "*) ;; *) UBOOT_SIM_NAMES="$UBOOT_SIM_NAMES $name" ;; esac
}

# Only what the script needs: integer + and -. (U-Boot's setexpr reads hex; counters stay
# below 10, where hex and decimal agree.)
# A changed counter is a spent try: it must be saved before the script boots or resets
# (defaults filled in for a missing variable need not be).
setexpr() {
    case $1 in BOOT_*) UBOOT_SIM_DIRTY=1 ;; esac
    case $3 in
        +) setenv "$1" $(($2 + $4)) ;;
        -) setenv "$1" $(($2 - $4)) ;;
        *) uboot_sim__die "setexpr: unsupported operator '$3'" ;;
    esac
}

saveenv() {
    : >"$UBOOT_SIM_ENVFILE.new"
    value="" isset=""
    for name in $UBOOT_SIM_NAMES; do
        eval "value=\${$name-}"
        eval "isset=\${$name+set}"
        [ -z "$isset" ] || printf '%s=%s\n' "$name" "$value" >>"$UBOOT_SIM_ENVFILE.new"
    done
    mv "$UBOOT_SIM_ENVFILE.new" "$UBOOT_SIM_ENVFILE"
    UBOOT_SIM_DIRTY=""
}

# `fdt addr ADDR` and `fdt get value VAR /chosen bootargs`, the firmware's command line.
fdt() {
    case "$1 $2" in
        "addr $fdt_addr") ;;
        "get value")
            [ "$4 $5" = "/chosen bootargs" ] || uboot_sim__die "fdt get: unexpected node '$4 $5'"
            setenv "$3" "$UBOOT_SIM_BOOTARGS"
            ;;
        *) uboot_sim__die "fdt: unsupported '$*'" ;;
    esac
}

# `load mmc 0:PART ADDR FILE`: succeeds unless PART is in UBOOT_SIM_LOAD_FAILS.
load() {
    [ "$1 ${2%%:*}" = "mmc 0" ] || uboot_sim__die "load: unexpected device '$1 $2'"
    [ "$4" = "boot/Image" ] || uboot_sim__die "load: unexpected file '$4'"
    case " $UBOOT_SIM_LOAD_FAILS " in *" ${2#*:} "*) return 1 ;; esac
    return 0
}

# Booting ends the simulation; a try that was not saved first is a bug of the script.
booti() {
    [ -z "$UBOOT_SIM_DIRTY" ] || uboot_sim__die "booti with unsaved counter changes"
    [ "$1 $3" = "$kernel_addr_r $fdt_addr" ] || uboot_sim__die "booti: unexpected args '$*'"
    printf 'booti %s\n' "${bootargs:-}"
    exit 0
}

reset() {
    [ -z "$UBOOT_SIM_DIRTY" ] || uboot_sim__die "reset with unsaved counter changes"
    printf 'reset\n'
    exit 0
}
