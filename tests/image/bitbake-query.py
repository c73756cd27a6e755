#!/usr/bin/env python3
"""Parse every recipe of a BitBake build folder once and answer questions about it, as JSON.

Run by tests/image/bitbake-parse.sh inside an initialised build environment (after
oe-init-build-env, as a non-root user). One tinfoil session does what `bitbake -p`, a few
`bitbake -e RECIPE` and the task runfile bitbake would write for `do_install` do, with a
single parse (separate `bitbake` commands re-parse a fresh build folder more than once).

  bitbake-query.py OUT.json RECIPE:VAR[,VAR...] ... [--runfile RECIPE:TASK ...]
                   [--provider NAME ...] [--fetch RECIPE ...] [--wic IMAGE ...]
                   [--network RECIPE:LAYER[,LAYER...] ...]

OUT.json gets {"messages": [[level, text], ...] (every WARNING or ERROR logged while parsing),
"vars": {recipe: {var: value}}, "runfiles": {"recipe:task": shell text}, "providers":
{name: recipe file} (for build-time names and run-time package names alike), "layers":
[{"path", "collections", "depends", "recommends"}] in BBLAYERS order, "bbpath": [...],
"skipped": {recipe file: reason}, "fetch": {recipe: [local path of each SRC_URI entry]},
"wic": {image: {"wks": expanded wks text, "env": {WICVARS name: value}}}, "network":
{spec: {recipe file: [tasks allowed network access]}} (see network_tasks)}. It exits non-zero only when
the parse itself cannot run; judging the answers is the caller's job.
"""

import contextlib
import io
import json
import re
import sys


def messages_of(log):
    """[level, text] of every WARNING, ERROR or CRITICAL line in tinfoil's console output."""
    found = []
    for line in log.splitlines():
        level, sep, text = line.partition(": ")
        if sep and level in ("WARNING", "ERROR", "CRITICAL"):
            found.append([level, text])
    return found


def main(argv):
    out_path = argv[1]
    lists = {"": [], "--runfile": [], "--provider": [], "--fetch": [], "--wic": [],
             "--network": []}
    target = lists[""]
    for arg in argv[2:]:
        if arg in lists:
            target = lists[arg]
            continue
        target.append(arg)
    queries, runfiles, providers = lists[""], lists["--runfile"], lists["--provider"]
    fetches, wics, network = lists["--fetch"], lists["--wic"], lists["--network"]

    import bb.data
    import bb.fetch2
    import bb.tinfoil

    console = io.StringIO()
    result = {"messages": [], "vars": {}, "runfiles": {}, "providers": {},
              "layers": [], "skipped": {}, "fetch": {}, "wic": {}, "network": {}}
    # BitBake's UI logs to whatever sys.stdout and sys.stderr are when it starts: CONSOLE,
    # where its warnings and errors are read from.
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console), \
            bb.tinfoil.Tinfoil(output=console) as tinfoil:
        # config_only=False: every recipe of every layer is parsed, as `bitbake -p` does.
        tinfoil.prepare(config_only=False, quiet=2)
        datastores = {}

        def parsed(recipe):
            """The recipe's datastore, parsed once however many questions ask about it."""
            if recipe not in datastores:
                datastores[recipe] = tinfoil.parse_recipe(recipe)
            return datastores[recipe]

        wanted = {}
        for q in queries:
            recipe, names = q.split(":", 1)
            wanted.setdefault(recipe, []).extend(names.split(","))
        for recipe, names in wanted.items():
            d = parsed(recipe)
            result["vars"][recipe] = {n: d.getVar(n) for n in names}
        for r in runfiles:
            recipe, task = r.split(":", 1)
            d = parsed(recipe)
            # What bitbake writes to ${T}/run.<task>: the function with every shell function
            # and exported variable it uses, expanded.
            text = io.StringIO()
            bb.data.emit_func(task, text, d)
            result["runfiles"][r] = text.getvalue()
        for recipe in fetches:
            d = parsed(recipe)
            # Where do_fetch finds each SRC_URI entry (file:// ones through FILESPATH).
            result["fetch"][recipe] = bb.fetch2.Fetch(d.getVar("SRC_URI").split(), d).localpaths()
        for recipe in wics:
            d = parsed(recipe)
            # The wks as the image class's do_write_wks_template writes it (a .wks.in expanded
            # against the image's data, references to undefined variables dropped) and the
            # variables wic reads from its .env file (WICVARS).
            wks = d.getVar("_WKS_TEMPLATE") or ""
            while True:
                stripped = re.sub(r"\${[^{}@\n\t :]+}", "", wks)
                if stripped == wks:
                    break
                wks = stripped
            env = {v: d.getVar(v) or "" for v in (d.getVar("WICVARS") or "").split()}
            result["wic"][recipe] = {"wks": wks, "env": env}
        for name in providers:
            result["providers"][name] = provider_file(tinfoil, name)
        for spec in network:
            start, follow = spec.split(":", 1)
            result["network"][spec] = network_tasks(tinfoil, start, follow)
        config = tinfoil.config_data
        result["bbpath"] = (config.getVar("BBPATH") or "").split(":")
        for layer in (config.getVar("BBLAYERS") or "").split():
            names = [c for c in (config.getVar("BBFILE_COLLECTIONS") or "").split()
                     if (config.getVar("BBFILE_PATTERN_" + c) or "").lstrip("^").rstrip("/")
                     == layer.rstrip("/")]
            result["layers"].append({
                "path": layer,
                "collections": names,
                "depends": " ".join(config.getVar("LAYERDEPENDS_" + c) or "" for c in names).split(),
                "recommends": " ".join(config.getVar("LAYERRECOMMENDS_" + c) or "" for c in names).split(),
            })
        for fn, info in tinfoil.get_skipped_recipes().items():
            result["skipped"][fn] = getattr(info, "skipreason", None) or str(info)
    result["messages"] = messages_of(console.getvalue())
    sys.stderr.write(console.getvalue())
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)


BUILD_TASKS = {"do_unpack", "do_patch", "do_prepare_recipe_sysroot", "do_configure",
               "do_compile", "do_install"}


def network_tasks(tinfoil, start, follow):
    """{recipe file: [build tasks with the network flag]} for the recipes START (a recipe name)
    needs at build or run time, following dependencies only through recipes whose file path
    contains one of the comma-separated FOLLOW strings (a layer's name) besides START itself.
    Build tasks turn sources into the package; do_fetch, sstate and devshell tasks may reach
    the network by design."""
    import bb.utils
    follow = follow.split(",")
    found, queue, first = {}, [start], True
    while queue:
        name = queue.pop()
        fn = provider_file(tinfoil, name)
        if not fn or fn in found:
            continue
        d = tinfoil.parse_recipe_file(fn)
        found[fn] = sorted(t for t in (d.getVar("__BBTASKS", False) or [])
                           if t in BUILD_TASKS and d.getVarFlag(t, "network"))
        if not first and not any(f in fn for f in follow):
            continue
        first = False
        deps = (d.getVar("DEPENDS") or "").split()
        if start == d.getVar("PN") and d.getVar("IMAGE_INSTALL") is not None:
            deps += (d.getVar("IMAGE_INSTALL") or "").split()
        for pkg in (d.getVar("PACKAGES") or "").split():
            deps += bb.utils.explode_deps(d.getVar("RDEPENDS:" + pkg) or "")
        queue.extend(deps)
    return found


def provider_file(tinfoil, name):
    """The recipe file that provides NAME at build time or, failing that, at run time."""
    best = tinfoil.find_best_provider(name)
    if best and len(best) > 3 and best[3]:
        return best[3]
    runtime = tinfoil.get_runtime_providers(name)
    # A list of recipe files, or of lists of them (one per provider name), by bitbake version.
    while isinstance(runtime, (list, tuple)) and runtime:
        runtime = runtime[0]
    return runtime or None


if __name__ == "__main__":
    main(sys.argv)
