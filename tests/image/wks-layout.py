#!/usr/bin/env python3
"""Check a wks file (and optionally an fstab) against board/common/layout.toml, the partition
layout everything follows: order, labels, file system types, sizes, the partition table type,
what fills each partition, and the fstab's devices.

  wks-layout.py LAYOUT.toml WKS [FSTAB]

Used on the layer's raw wks.in by yocto-lint.sh and on the wks as BitBake expands it for the
image by bitbake-parse.sh. Exits 1 with the first difference.
"""

import sys
import tomllib


def opt(part, key):
    """The value of --key=value or --key value in a tokenised `part` line, or None."""
    for i, tok in enumerate(part):
        if tok == key and i + 1 < len(part):
            return part[i + 1]
        if tok.startswith(key + "="):
            return tok.split("=", 1)[1]
    return None


def main(layout_path, wks_path, fstab_path=None):
    doc = tomllib.load(open(layout_path, "rb"))
    layout = sorted(doc["partition"], key=lambda x: x["number"])
    lines = [l.split() for l in open(wks_path) if l.strip() and not l.lstrip().startswith("#")]
    parts = [l for l in lines if l[0] == "part"]
    if len(parts) != len(layout):
        sys.exit(f"wks has {len(parts)} partitions, layout.toml {len(layout)}")
    for want, p in zip(layout, parts):
        got = (opt(p, "--label"), opt(p, "--fstype"), opt(p, "--fixed-size"))
        exp = (want["label"], want["fstype"], f"{want['size-mib']}M")
        if got != exp:
            sys.exit(f"wks partition {want['number']}: label/fstype/size {got}, layout.toml says {exp}")
        if "--no-fstab-update" not in p:
            sys.exit(f"wks partition {want['number']}: no --no-fstab-update (fstab comes from base-files)")
        source = opt(p, "--source")
        expected_source = ("bootimg_partition" if want["mountpoint"] == "/boot" else
                           "rootfs" if want["mountpoint"] == "/" else None)
        if source != expected_source:
            sys.exit(f"wks partition {want['number']}: filled by {source}, expected {expected_source}")
    table = next((opt(l, "--ptable") for l in lines if l[0] == "bootloader"), None)
    if table != doc["table"]:
        sys.exit(f"wks partition table {table}, layout.toml says {doc['table']}")
    if fstab_path:
        fstab = {l.split()[1]: l.split() for l in open(fstab_path)
                 if l.strip() and not l.startswith("#")}
        for want in layout:
            if want["mountpoint"] == "/":
                continue
            row = fstab.get(want["mountpoint"])
            if not row or row[0] != want["device"] or row[2] != want["fstype"]:
                sys.exit(f"fstab: {want['mountpoint']} should be {want['device']} ({want['fstype']}), got {row}")
        if "ro" not in fstab.get("/", ["", "", "", ""])[3].split(","):
            sys.exit("fstab: / is not mounted read-only")


if __name__ == "__main__":
    main(*sys.argv[1:])
