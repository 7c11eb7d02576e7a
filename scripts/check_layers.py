#!/usr/bin/env python3
"""check_layers.py - dependencies between shmkit's layers point down only.

Reads compiled object files with `nm`, maps every global symbol to the unit
(layer folder, or file) whose source defines it, and maps every symbol a unit
uses to the unit that defines it. Fails (exit 1) if a unit uses one at the
same or a higher level, or if the unit graph has a cycle; prints the graph.

    check_layers.py [--nm NM] [--link CC] [--base DIR] OBJ... [--base DIR OBJ...]
    check_layers.py --compile          # compiles src/ itself (cc -c) first

With --link CC it also links each layer of the library as a shared object
with only the layers below it (-Wl,--no-undefined), so an upward call
cannot even link: the build's own view of the same rule.

An object built by CMake is named .../<target>.dir/<source path>.o, the source
path relative to the directory of the target's CMakeLists.txt; --base DIR
says which directory that is, relative to the repository (default: the
repository root), for the objects that follow it. The test suite runs it on
the objects of the library and of the CPython extension (tests/CMakeLists.txt).

To add a layer folder or split a module: add its unit to LEVELS below, at the
level it stands on. A source file that matches no unit is an error, so a new
folder cannot slip past the check.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The layers, lowest first. A unit is a folder ("src/core/") or a single file
# ("python/src/module.c"); a source belongs to the longest unit that is a
# prefix of its path. A unit may use only units with a strictly lower level.
LEVELS = [
    # the library
    ("src/core/", 0),      # OS contract + Linux, errors, names, blocks
    ("src/sync/", 1),      # robust mutexes, conditions, named locks
    ("src/objects/", 2),   # ShareableList (+ its lock), typed Value/Array, queue
    ("src/life/", 3),      # journals, tracker, refcount sidecars, gc, kinds
    ("src/manager/", 4),   # manager protocol, server, client
    # the CPython extension, over the whole library
    ("python/src/", 10),
]


def unit_of(source):
    """The (unit, level) a source path (relative to the root) belongs to."""
    best = None
    for unit, level in LEVELS:
        if source.startswith(unit) and (best is None or len(unit) > len(best[0])):
            best = (unit, level)
    return best


def source_of(obj, base):
    """The source path (relative to the root) an object file was built from."""
    path = os.path.abspath(obj)
    m = re.search(r"\.dir/(.+)\.o(bj)?$", path)
    if m:
        return os.path.normpath(os.path.join(base, m.group(1)))
    m = re.search(r"/@(.+)\.o$", path)  # --compile's own naming
    if m:
        return m.group(1).replace("@", "/")
    sys.exit(f"check_layers: cannot tell which source {obj} was built from")


NM = "nm"


def nm(obj, which):
    """Global symbol names of one object file, --defined-only or
    --undefined-only (weak references count as uses)."""
    out = subprocess.run([NM, "-P", "-g", which, obj], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def symbols(obj):
    """(defined, undefined) global symbols of one object file."""
    return nm(obj, "--defined-only"), nm(obj, "--undefined-only")


def compile_sources(tmp):
    """Compiles every src/*/*.c into tmp; returns the object paths."""
    objs = []
    for folder in sorted(os.listdir(os.path.join(ROOT, "src"))):
        d = os.path.join(ROOT, "src", folder)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith(".c"):
                continue
            src = f"src/{folder}/{f}"
            obj = os.path.join(tmp, "@" + src.replace("/", "@") + ".o")
            subprocess.run(["cc", "-std=gnu11", "-c", "-o", obj,
                            "-I", os.path.join(ROOT, "include"),
                            "-I", os.path.join(ROOT, "src"),
                            os.path.join(ROOT, src)], check=True)
            objs.append(obj)
    return [(o, ".") for o in objs]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--compile", action="store_true",
                   help="compile src/*/*.c with cc instead of reading OBJs")
    p.add_argument("--nm", default="nm", help="the nm to use (default: nm)")
    p.add_argument("--link", metavar="CC",
                   help="also link each library layer with the ones below it "
                        "and nothing else (CC -shared -Wl,--no-undefined)")
    p.add_argument("--libs", default="-lpthread -lcrypto -lm",
                   help="system libraries for --link (default: %(default)s)")
    p.add_argument("items", nargs="*", metavar="[--base DIR] OBJ")
    # --base may appear between objects: collect (obj, base) pairs by hand.
    base, pairs, rest = ".", [], []
    it = iter(argv)
    for a in it:
        if a == "--base":
            base = next(it, None)
            if base is None:
                p.error("--base needs a directory")
        elif a.startswith("--base="):
            base = a.split("=", 1)[1]
        elif a.endswith(".o") or a.endswith(".obj"):
            pairs.append((a, base))
        else:
            rest.append(a)
    args = p.parse_args(rest)
    return args, pairs


def main(argv):
    global NM
    args, pairs = parse_args(argv)
    NM = args.nm
    with tempfile.TemporaryDirectory() as tmp:
        if args.compile:
            pairs = compile_sources(tmp)
        if not pairs:
            sys.exit("check_layers: no object files (see --help)")
        status = check(pairs)
        if args.link:
            status |= link_layers(pairs, args.link, args.libs.split(), tmp)
        return status


def link_layers(pairs, cc, libs, tmp):
    """Links the library's units level by level, each with only those
    below it: an upward call is then an undefined reference. 0 if all link."""
    by_unit = {}
    for obj, base in pairs:
        u = unit_of(source_of(obj, base))
        if u and u[0].startswith("src/"):
            by_unit.setdefault(u, []).append(obj)
    objs, status = [], 0
    for unit, level in sorted(by_unit, key=lambda u: u[1]):
        objs += by_unit[(unit, level)]
        r = subprocess.run([cc, "-shared", "-o", os.path.join(tmp, "layer.so"),
                            "-Wl,--no-undefined"] + objs + libs,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"check_layers: {unit} does not link with only the layers "
                  f"below it:\n{r.stderr}", file=sys.stderr)
            status = 1
        else:
            print(f"  {unit} links with only the layers below it")
    return status


def check(pairs):
    owner = {}                  # symbol -> unit that defines it
    uses = {}                   # unit -> {symbol: [source, ...]}
    level = dict(LEVELS)
    errors = []
    for obj, base in pairs:
        src = source_of(obj, base)
        u = unit_of(src)
        if u is None:
            errors.append(f"{src}: in no unit of LEVELS (scripts/check_layers.py)")
            continue
        defined, undefined = symbols(obj)
        for s in defined:
            if s in owner and owner[s] != u[0]:
                errors.append(f"{s}: defined in both {owner[s]} and {u[0]}")
            owner[s] = u[0]
        for s in undefined:
            uses.setdefault(u[0], {}).setdefault(s, []).append(src)
    edges = {}                  # (from, to) -> sorted symbols
    for u, syms in uses.items():
        for s, srcs in syms.items():
            v = owner.get(s)
            if v is not None and v != u:
                edges.setdefault((u, v), set()).add((s, tuple(sorted(set(srcs)))))
    print("layer graph (unit -> units it uses):")
    for unit, lv in LEVELS:
        outs = sorted({v for (u, v) in edges if u == unit})
        print(f"  {lv:2d} {unit:16s} -> {', '.join(outs) if outs else '-'}")
    for (u, v), syms in sorted(edges.items()):
        if level[v] >= level[u]:
            for s, srcs in sorted(syms):
                errors.append(f"upward use: {', '.join(srcs)} ({u}, level "
                              f"{level[u]}) uses {s} from {v} (level {level[v]})")
    cycle = find_cycle({u for u, _ in edges} | {v for _, v in edges},
                       set(edges))
    if cycle:
        errors.append("cycle: " + " -> ".join(cycle))
    for e in errors:
        print("check_layers: " + e, file=sys.stderr)
    if errors:
        return 1
    print("check_layers: ok, every use points down")
    return 0


def find_cycle(nodes, edges):
    """One cycle of the directed graph as a list of nodes, or None."""
    succ = {n: sorted(v for (u, v) in edges if u == n) for n in nodes}
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in succ[n]:
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(nodes):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
