#!/usr/bin/env python3
"""Checks that the files of the CPython extension (python/src) call only
down: each file may use the symbols of the files listed before it in
LAYERS, never one after it (no cycle, no upward call).

usage: check_py_layers.py OBJDIR   (the directory of the extension's
       object files, e.g. build/python/CMakeFiles/shmkit_python.dir/src)

It reads each object file's defined and undefined symbols with nm, so it
checks what the compiler actually emitted. Exit status 1 names each
offending use.
"""
import os
import subprocess
import sys

# Bottom first; the same order as the comment at the top of python/src/ext.h.
LAYERS = ["common", "mapping", "sync", "list", "typed", "manager", "queue",
          "functions", "module"]


def symbols(path):
    out = subprocess.run(["nm", "-P", path], check=True, capture_output=True,
                         text=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            used.add(name)
        elif kind in "TDBRC":
            defined.add(name)
    return defined, used


def main(objdir):
    objs = {}
    for f in sorted(os.listdir(objdir)):
        if f.endswith(".c.o"):
            objs[f[:-len(".c.o")]] = os.path.join(objdir, f)
    unknown = sorted(set(objs) - set(LAYERS))
    missing = sorted(set(LAYERS) - set(objs))
    if unknown or missing:
        print(f"check_py_layers: files not in LAYERS: {unknown}; "
              f"LAYERS without a file: {missing}")
        return 1
    rank = {name: i for i, name in enumerate(LAYERS)}
    owner = {}
    syms = {}
    for name, path in objs.items():
        defined, used = symbols(path)
        syms[name] = used
        for s in defined:
            owner.setdefault(s, name)
    bad = []
    for name, used in syms.items():
        for s in sorted(used):
            o = owner.get(s)
            if o is not None and o != name and rank[o] > rank[name]:
                bad.append(f"{name}.c uses {s} from {o}.c, a layer above it")
    for line in bad:
        print("check_py_layers:", line)
    if not bad:
        print("check_py_layers: python/src calls only down:",
              " < ".join(LAYERS))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
