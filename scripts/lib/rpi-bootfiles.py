#!/usr/bin/env python3
"""What meta-raspberrypi puts on the boot partition for the TinyLCM image, without BitBake.

  rpi-bootfiles.py cmdline META_RASPBERRYPI DISTRO_CONF RPI_CMDLINE_BBAPPEND
      the kernel command line rpi-cmdline writes to cmdline.txt: CMDLINE as rpi-cmdline.bb
      composes it from its CMDLINE_* knobs, with the distro's and our bbappend's values
  rpi-bootfiles.py uboot MACHINE META_RASPBERRYPI DISTRO_CONF IMAGE_BBAPPEND
      the RPI_EXTRA_IMAGE_BOOT_FILES entries of the image (`source;name-on-the-partition`
      or `file`, one per line): where U-Boot (u-boot.bin) and boot.scr land

META_RASPBERRYPI is the layer's folder or its tarball (as in ../shared/yocto-layers).

Why not BitBake: the offline QEMU and boot-script checks need these in seconds, not after a
four-minute parse (tests/image/bitbake-parse.sh reads the real values). This evaluates the
small subset of BitBake those files use: `=`, `?=`, `??=`, `include`/`require` within the
layer, `:tinylcm` overrides and `:remove:tinylcm` (the distro is tinylcm), `${VAR}` (an
undefined one stays as written, as in BitBake), `${@...}` with oe.utils.conditional,
bb.utils.contains and the files' own `def`s, and line continuations. An operation it does
not follow (`+=`, `:append`, another override) on a variable it evaluates is an error, so an
upstream change this cannot follow fails loudly instead of giving a wrong answer.
"""

import re
import sys
import tarfile
from pathlib import Path

OVERRIDE = "tinylcm"
# The variables evaluated here; an assignment to one of them that this cannot follow fails.
WATCHED = re.compile(r"^(CMDLINE.*|RPI_EXTRA_IMAGE_BOOT_FILES|SDIMG_KERNELIMAGE|KERNEL_IMAGETYPE.*|RPI_USE_U_BOOT)$")
ASSIGN = re.compile(
    r"""^([A-Za-z0-9_]+)((?::[A-Za-z0-9_-]+)*)\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*(["'])(.*)\4\s*$"""
)


class Layer:
    """Files of the layer, from its folder or its tarball."""

    def __init__(self, where):
        self.path = Path(where)
        self.files = {}
        if not self.path.is_dir():
            with tarfile.open(self.path) as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name.endswith((".bb", ".inc", ".conf")):
                        # Strip the tarball's top folder.
                        name = member.name.split("/", 1)[1] if "/" in member.name else member.name
                        self.files[name] = tar.extractfile(member).read().decode()

    def read(self, name):
        if self.path.is_dir():
            file = self.path / name
            return file.read_text() if file.is_file() else None
        return self.files.get(name)


def logical_lines(text):
    """Lines with backslash continuations joined."""
    lines, buf = [], ""
    for raw in text.splitlines():
        buf = buf + " " + raw.strip() if buf else raw
        if buf.endswith("\\"):
            buf = buf[:-1]
            continue
        lines.append(buf)
        buf = ""
    if buf:
        lines.append(buf)
    return lines


class Data:
    def __init__(self, layer=None):
        self.layer = layer
        self.values = {}
        self.weak = {}
        self.overrides = {}
        self.removes = {}
        self.functions = {}

    def getVar(self, name, expand=True):  # noqa: N802 (BitBake's name)
        value = self.overrides.get(name, self.values.get(name, self.weak.get(name)))
        if value is None:
            return None
        if not expand:
            return value
        value = self.expand(value)
        if name in self.removes:
            drop = set(self.expand(self.removes[name]).split())
            value = " ".join(w for w in value.split() if w not in drop)
        return value

    def expand(self, value, depth=0):
        if depth > 20:
            sys.exit(f"recursive expansion: {value}")
        out, i = "", 0
        while i < len(value):
            if value.startswith("${@", i):
                j, level = i + 3, 1
                while j < len(value) and level:
                    level += {"{": 1, "}": -1}.get(value[j], 0)
                    j += 1
                # BitBake expands the references inside the code first.
                code = self.expand(value[i + 3 : j - 1], depth + 1)
                out += self.expand(str(self.python(code)), depth + 1)
                i = j
            elif value.startswith("${", i):
                j = value.index("}", i)
                got = self.getVar(value[i + 2 : j])
                out += value[i : j + 1] if got is None else got
                i = j + 1
            else:
                out += value[i]
                i += 1
        return out

    def python(self, code):
        class Utils:
            @staticmethod
            def conditional(var, checkvalue, truevalue, falsevalue, d):
                return truevalue if d.getVar(var) == checkvalue else falsevalue

            @staticmethod
            def contains(var, checkvalues, truevalue, falsevalue, d):
                have = set((d.getVar(var) or "").split())
                return truevalue if set(checkvalues.split()) <= have else falsevalue

        class Namespace:
            utils = Utils

        scope = {"d": self, "oe": Namespace, "bb": Namespace}
        for source in self.functions.values():
            exec(source, scope)  # the files' own defs, e.g. setup_isolcpus
        return eval(code, scope)

    def read(self, text, where):
        lines = logical_lines(text)
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if line.startswith("def "):
                block = [line]
                while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()):
                    block.append(lines[i])
                    i += 1
                self.functions[line[4:].split("(")[0]] = "\n".join(block)
                continue
            inc = re.match(r"^(include|require)\s+(\S+)\s*$", line)
            if inc and self.layer is not None:
                text = self.layer.read(inc.group(2))
                if text is not None:  # files of other layers (tunes) do not matter here
                    self.read(text, inc.group(2))
                elif inc.group(1) == "require" and inc.group(2).startswith("conf/machine/raspberrypi"):
                    sys.exit(f"{where}: requires {inc.group(2)}, which the layer lacks")
                continue
            m = ASSIGN.match(line)
            if not m:
                if re.match(r"^([A-Za-z0-9_]+)", line) and WATCHED.match(line.split()[0].split(":")[0]):
                    sys.exit(f"{where}: cannot evaluate: {line.strip()}")
                continue
            name, override, op, _quote, value = m.groups()
            watched = WATCHED.match(name)
            if override == ":" + OVERRIDE and op == "=":
                self.overrides[name] = value
            elif override == ":remove:" + OVERRIDE and op == "=":
                self.removes[name] = (self.removes.get(name, "") + " " + value).strip()
            elif override or op not in ("=", "?=", "??=", ":="):
                if watched:
                    sys.exit(f"{where}: cannot evaluate {name}{override} {op}")
            elif op == "??=":
                self.weak.setdefault(name, value)
            elif op in ("=", ":=") or name not in self.values:
                self.values[name] = value


def main():
    args = sys.argv[1:]
    if args[:1] == ["cmdline"] and len(args) == 4:
        _, layer, distro, bbappend = args
        layer = Layer(layer)
        d = Data()
        d.values["MACHINE_FEATURES"] = ""  # pitft and the like: none of our boards has one
        d.read(Path(distro).read_text(), distro)
        recipe = "recipes-bsp/bootfiles/rpi-cmdline.bb"
        text = layer.read(recipe) or sys.exit(f"the layer has no {recipe}")
        d.read(text, recipe)
        d.read(Path(bbappend).read_text(), bbappend)
        cmdline = d.getVar("CMDLINE") or sys.exit(f"{recipe} defines no CMDLINE")
        # do_compile: echo "${@' '.join(d.getVar('CMDLINE').split())}" > cmdline.txt
        print(" ".join(cmdline.split()))
    elif args[:1] == ["uboot"] and len(args) == 5:
        _, machine, layer, distro, bbappend = args
        layer = Layer(layer)
        d = Data(layer)
        conf = f"conf/machine/{machine}.conf"
        text = layer.read(conf) or sys.exit(f"the layer has no {conf}")
        # bitbake.conf reads the machine's configuration, then the distro's.
        d.read(text, conf)
        d.read(Path(distro).read_text(), distro)
        d.read(Path(bbappend).read_text(), bbappend)
        files = d.getVar("RPI_EXTRA_IMAGE_BOOT_FILES") or sys.exit("no RPI_EXTRA_IMAGE_BOOT_FILES")
        print("\n".join(files.split()))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
