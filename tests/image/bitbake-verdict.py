#!/usr/bin/env python3
"""Judge what BitBake resolved for one board (the JSON of bitbake-query.py) against what the
device needs. Run by tests/image/bitbake-parse.sh; prints one `ok:` line per fact, or a
`FAIL:` line and exits 1 at the first broken one.

  bitbake-verdict.py --answers A.json --machine M --project DIR --firmware-kernel NAME
                     [--system-conf F] [--rauc-image DIR [--keyring F]]

--project is the checkout the build was made from (its board/ files are the ones the image
installs); --firmware-kernel is the file its config.txt makes the firmware start (the caller
reads it with scripts/lib/rpi-boot.sh's firmware_kernel); --system-conf replaces the board's
system.conf. The caller shows that each assertion fails on the defect it guards against by
passing broken inputs or edited answers. --rauc-image is the ${D} of rauc-conf's real
do_install, run by the caller, and --keyring the CA it must have installed.
"""

import argparse
import configparser
import json
import os
import re
import sys


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}")


# Names that mark a parse message as ours: our layer's path, our recipes, our files.
OURS = re.compile(r"meta-tinylcm|tinylcm|board/(common|raspberrypi)")


def check_messages(a, machine):
    errors = [m for level, m in a["messages"] if level in ("ERROR", "CRITICAL")]
    if errors:
        fail(f"{machine}: the parse logged {len(errors)} error(s), first: {errors[0][:400]}")
    ours = [m for level, m in a["messages"] if level == "WARNING" and OURS.search(m)]
    if ours:
        fail(f"{machine}: the parse warned about our layer: {ours[0][:400]}")
    others = [m for level, m in a["messages"] if level == "WARNING"]
    ok(f"{machine}: parse: no error, no warning about meta-tinylcm "
       f"({len(others)} upstream warning(s){': ' + others[0][:120] if others else ''})")
    skipped = {fn: why for fn, why in a["skipped"].items() if "meta-tinylcm" in fn}
    if skipped:
        fn, why = next(iter(skipped.items()))
        fail(f"{machine}: our recipe {os.path.basename(fn)} was skipped: {why}")
    ok(f"{machine}: none of our recipes skipped")


def layer_of(a, path):
    """The BBLAYERS entry holding PATH (the longest matching prefix)."""
    best = None
    for layer in a["layers"]:
        root = layer["path"].rstrip("/") + "/"
        if path.startswith(root) and (best is None or len(root) > len(best["path"])):
            best = layer
    return best


def bbpath_layer(a, relpath):
    """The layer of the first BBPATH entry holding RELPATH (how bitbake finds a class or an
    included configuration file)."""
    for entry in a["bbpath"]:
        if entry and os.path.isfile(os.path.join(entry, relpath)):
            return layer_of(a, os.path.join(entry, relpath))
    return None


def used_files(layer_dir):
    """(what, relative path) of every class our layer inherits and every configuration file it
    requires by a literal path."""
    used = set()
    for root, _, files in os.walk(layer_dir):
        for f in files:
            if not f.endswith((".bb", ".bbappend", ".bbclass", ".conf", ".inc")):
                continue
            for line in open(os.path.join(root, f)):
                m = re.match(r"\s*inherit\s+(.*)", line)
                if m and "$" not in m.group(1):
                    for cls in m.group(1).split():
                        used.add((f"class {cls}", cls))
                m = re.match(r"\s*require\s+(conf/\S+)", line)
                if m:
                    used.add((m.group(1), m.group(1)))
    return used


def check_layer_dependencies(a, machine, project):
    """Every layer our files need is a declared dependency (a recommendation for the layer
    whose glue sits in dynamic-layers/)."""
    ours = next((l for l in a["layers"] if "tinylcm" in l["collections"]), None)
    if ours is None:
        fail(f"{machine}: no layer with collection 'tinylcm' in BBLAYERS")
    declared = {d.split(":")[0] for d in ours["depends"]}
    recommended = {d.split(":")[0] for d in ours["recommends"]}
    needed = {}
    for name, fn in a["providers"].items():
        if not fn:
            fail(f"{machine}: nothing provides {name}, which our layer uses")
        layer = layer_of(a, fn.split(":")[-1])
        if layer is None:
            fail(f"{machine}: {name} comes from {fn}, outside every layer")
        needed.setdefault(layer["collections"][0], set()).add(name)
    for what, rel in used_files(ours["path"]):
        for candidate in ([rel] if rel.startswith("conf/") else
                          [f"classes{k}/{rel}.bbclass" for k in ("", "-recipe", "-global")]):
            layer = bbpath_layer(a, candidate)
            if layer:
                needed.setdefault(layer["collections"][0], set()).add(what)
                break
        else:
            fail(f"{machine}: our layer uses {what}, which no layer in BBPATH provides")
    needed.pop("tinylcm", None)
    for collection, names in sorted(needed.items()):
        if collection not in declared and collection not in recommended:
            fail(f"{machine}: LAYERDEPENDS_tinylcm lacks '{collection}', which provides "
                 f"{', '.join(sorted(names))}")
    ok(f"{machine}: LAYERDEPENDS/LAYERRECOMMENDS cover every layer our recipes, classes and "
       "includes come from: " + ", ".join(f"{c} ({len(n)})" for c, n in sorted(needed.items())))


def boot_files(image_boot_files):
    """IMAGE_BOOT_FILES as {name on the boot partition: deploy-folder source}."""
    names = {}
    for entry in image_boot_files.split():
        src, _, dst = entry.partition(";")
        if src.endswith("/*"):
            continue  # a folder's content (the firmware's bootfiles)
        names[dst or os.path.basename(src)] = src
    return names


def check_image(a, machine, project, kernel):
    img = a["vars"]["tinylcm-image"]
    files = boot_files(img["IMAGE_BOOT_FILES"])
    if kernel not in files:
        top = sorted(f for f in files if "/" not in f)
        fail(f"{machine}: config.txt makes the firmware load {kernel}, but the boot partition "
             f"gets {top} and overlays/ (IMAGE_BOOT_FILES)")
    if files[kernel] != "u-boot.bin":
        fail(f"{machine}: the firmware loads {kernel}, which is {files[kernel]}, not U-Boot")
    if "boot.scr" not in files:
        fail(f"{machine}: no boot.scr on the boot partition: U-Boot would not run the A/B script")
    kimg = img.get("KERNEL_IMAGETYPE") or "Image"
    if kimg in files:
        fail(f"{machine}: the kernel {kimg} is on the shared boot partition: it must live in the slot")
    ok(f"{machine}: the firmware loads {kernel} (config.txt), which IMAGE_BOOT_FILES fills with "
       f"u-boot.bin; boot.scr beside it; no kernel on the boot partition")

    wks = img["WKS_TEMPLATE_PATH"] or ""
    want = os.path.join(project, "yocto/meta-tinylcm/files/wic/tinylcm-dual-rpi.wks.in")
    if img["WKS_FILE"] != "tinylcm-dual-rpi.wks.in" or os.path.realpath(wks) != os.path.realpath(want):
        fail(f"{machine}: WKS_FILE {img['WKS_FILE']} resolves to {wks}, not our {want}")
    ok(f"{machine}: WKS_FILE resolves to the layer's files/wic/tinylcm-dual-rpi.wks.in")

    fstypes = img["IMAGE_FSTYPES"].split()
    for t in ("wic.bz2", "wic.bmap", "ext4"):
        if t not in fstypes:
            fail(f"{machine}: IMAGE_FSTYPES {fstypes} lacks {t}")
    ok(f"{machine}: IMAGE_FSTYPES {' '.join(fstypes)}")

    features = img["DISTRO_FEATURES"].split()
    for f in ("systemd", "rauc", "usrmerge"):
        if f not in features:
            fail(f"{machine}: DISTRO_FEATURES lacks {f}")
    for f in ("x11", "wayland", "sysvinit"):
        if f in features:
            fail(f"{machine}: DISTRO_FEATURES has {f}, which the camera image leaves out")
    ok(f"{machine}: DISTRO_FEATURES has systemd, rauc, usrmerge; no x11, wayland, sysvinit")

    install = img["IMAGE_INSTALL"].split()
    for p in ("tinylcm-runtime", "rauc", "kernel-image", "libtensorflow-lite-c"):
        if p not in install:
            fail(f"{machine}: IMAGE_INSTALL lacks {p}")
    ok(f"{machine}: IMAGE_INSTALL has the runtime, RAUC, the kernel and TFLite C")


def check_cmdline(a, machine):
    """The kernel command line rpi-cmdline writes: the slot read-only from the start, no fixed
    root= (boot.cmd adds the slot it picked) and no variable left unexpanded."""
    words = (a["vars"]["rpi-cmdline"]["CMDLINE"] or "").split()
    left = [w for w in words if "${" in w]
    if left:
        fail(f"{machine}: cmdline.txt would carry unexpanded text {left}")
    if "ro" not in words:
        fail(f"{machine}: cmdline.txt {' '.join(words)} lacks ro: the slot is mounted read-write")
    root = [w for w in words if w.startswith("root=")]
    if root:
        fail(f"{machine}: cmdline.txt fixes {root[0]}: every boot would take that slot")
    ok(f"{machine}: cmdline.txt is '{' '.join(words)}': read-only, root= left to boot.cmd")


def check_runtime_source(a, machine, project):
    rt = a["vars"]["tinylcm-runtime"]
    real = os.path.realpath(project)
    if os.path.realpath(rt["S"] or "") != real or os.path.realpath(rt["EXTERNALSRC"] or "") != real:
        fail(f"{machine}: tinylcm-runtime builds S={rt['S']} (EXTERNALSRC={rt['EXTERNALSRC']}), "
             f"not this checkout {project}")
    foreign = [u for u in (rt["SRC_URI"] or "").split() if not u.startswith("crate://")]
    if foreign:
        fail(f"{machine}: tinylcm-runtime fetches {foreign[0]} besides the checkout's crates")
    n = len(rt["SRC_URI"].split())
    ok(f"{machine}: tinylcm-runtime builds this checkout (S, EXTERNALSRC); SRC_URI is its {n} crates")


def check_rauc(a, machine, system_conf, rauc_image, keyring):
    rc = a["vars"]["rauc-conf"]
    libdir = rc["nonarch_libdir"]
    installed = os.path.join(rauc_image, libdir.lstrip("/"), "rauc")
    target_conf = os.path.join(libdir, "rauc", "system.conf")
    # The recipe installs the board's file under that name; compare with the one under test.
    if not os.path.isfile(os.path.join(installed, "system.conf")):
        fail(f"{machine}: rauc-conf's do_install put no system.conf in {libdir}/rauc")
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(system_conf)
    path = conf.get("keyring", "path", fallback=None)
    if not path:
        fail(f"{machine}: {system_conf} has no [keyring] path")
    # RAUC resolves a relative keyring path against the folder of system.conf.
    on_device = os.path.normpath(path if path.startswith("/") else
                                 os.path.join(os.path.dirname(target_conf), path))
    if not os.path.isfile(os.path.join(rauc_image, on_device.lstrip("/"))):
        present = sorted(os.path.join("/", os.path.relpath(os.path.join(r, f), rauc_image))
                         for r, _, fs in os.walk(rauc_image) for f in fs)
        fail(f"{machine}: system.conf's keyring {path} is {on_device} on the device, but "
             f"rauc-conf installs {present}")
    installed_keyring = os.path.join(rauc_image, on_device.lstrip("/"))
    if keyring and open(installed_keyring, "rb").read() != open(keyring, "rb").read():
        fail(f"{machine}: the keyring rauc-conf installs is not {keyring} (TINYLCM_RAUC_KEYRING): "
             "a placeholder would make every signed bundle fail on the device")
    ok(f"{machine}: rauc-conf's do_install puts system.conf in {libdir}/rauc and the keyring at "
       f"{on_device}, where system.conf's [keyring] path={path} points")


def check_tflite_offline(a, machine):
    """No recipe of meta-tensorflow-lite the image needs may reach the network in a task, and
    our flatbuffers pin is the commit meta-oe builds for the tag TensorFlow is patched to."""
    for spec, found in a["network"].items():
        online = {fn: tasks for fn, tasks in found.items() if tasks}
        if online:
            fn, tasks = next(iter(online.items()))
            fail(f"{machine}: {os.path.basename(fn.split(':')[-1])} keeps network access in "
                 f"{', '.join(tasks)} (needed by {spec.split(':')[0]}): the image cannot be "
                 "built offline or mirrored")
        tflite = sorted(os.path.basename(fn.split(":")[-1]) for fn in found
                        if "meta-tensorflow-lite" in fn)
        if spec.startswith("tinylcm-image:") and any(t.startswith("libtensorflow-lite_") for t in tflite):
            fail(f"{machine}: the image pulls in the full libtensorflow-lite besides "
                 "libtensorflow-lite-c: TensorFlow would be built twice (libedgetpu is opt-in)")
        if not tflite:
            fail(f"{machine}: {spec.split(':')[0]} needs no recipe of meta-tensorflow-lite?")
        ok(f"{machine}: {spec.split(':')[0]}: {len(found)} recipes it pulls in through our and "
           f"meta-tensorflow-lite's recipes build offline, incl. {', '.join(tflite)}")

    c = a["vars"]["libtensorflow-lite-c"]
    fb = a["vars"]["flatbuffers"]
    if c["SRCREV_flatbuffers"] != fb["SRCREV"]:
        fail(f"{machine}: SRCREV_flatbuffers {c['SRCREV_flatbuffers']} is not meta-oe's flatbuffers "
             f"{fb['PV']} ({fb['SRCREV']})")
    patch = next((os.path.join(d, "001-flatbuffers.cmake.patch") for d in c["FILESPATH"].split(":")
                  if os.path.isfile(os.path.join(d, "001-flatbuffers.cmake.patch"))), None)
    if patch is None:
        fail(f"{machine}: meta-tensorflow-lite no longer patches TensorFlow's flatbuffers tag: "
             "review the flatbuffers pin in tensorflow-lite-offline.inc")
    tags = re.findall(r"^\+\s*GIT_TAG\s+v?(\S+)", open(patch).read(), re.M)
    if tags != [fb["PV"]]:
        fail(f"{machine}: TensorFlow is patched to flatbuffers {tags}, the pin is {fb['PV']}")
    ok(f"{machine}: flatbuffers pinned at {fb['SRCREV'][:12]}: meta-oe's v{fb['PV']}, the tag "
       "meta-tensorflow-lite patches TensorFlow to")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--answers", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--firmware-kernel", required=True,
                   help="the file config.txt makes the firmware start (rpi-boot.sh's firmware_kernel)")
    p.add_argument("--system-conf")
    p.add_argument("--rauc-image")
    p.add_argument("--keyring", help="the CA the image must trust (TINYLCM_RAUC_KEYRING)")
    args = p.parse_args()
    a = json.load(open(args.answers))
    board = os.path.join(args.project, "board", args.machine)
    system_conf = args.system_conf or os.path.join(board, "system.conf")

    check_messages(a, args.machine)
    check_layer_dependencies(a, args.machine, args.project)
    check_image(a, args.machine, args.project, args.firmware_kernel)
    check_cmdline(a, args.machine)
    check_runtime_source(a, args.machine, args.project)
    check_tflite_offline(a, args.machine)
    if args.rauc_image:
        check_rauc(a, args.machine, system_conf, args.rauc_image, args.keyring)


if __name__ == "__main__":
    main()
