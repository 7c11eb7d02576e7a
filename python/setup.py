"""Builds shmkit._shmkit for `pip install ./python`.

The extension is compiled together with the library's own sources (../src,
../include), so an installed shmkit needs no libshmkit.so at run time; it
links the system's OpenSSL libcrypto (the manager's authentication) and
pthreads, as the library does. CMake builds the same thing for the tests.
"""
import glob
import os
import platform

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rel(path):
    # setuptools wants source paths relative to this directory.
    return os.path.relpath(path, HERE)


def library_sources():
    # One folder per layer under src/ (src/core, src/sync, ...).
    src = os.path.join(ROOT, "src")
    core = [p for p in sorted(glob.glob(os.path.join(src, "*", "*.c")))
            if not os.path.basename(p).startswith("os_")]
    system = platform.system().lower()
    os_file = os.path.join(src, "core", f"os_{system}.c")
    if not os.path.exists(os_file):
        raise SystemExit(f"shmkit: no OS layer for {platform.system()} yet (src/core/os_*.c)")
    return core + [os_file]


ext = Extension(
    "shmkit._shmkit",
    sources=[rel(p) for p in sorted(glob.glob(os.path.join(HERE, "src", "*.c")))]
    + [rel(p) for p in library_sources()],
    include_dirs=[rel(os.path.join(ROOT, "include")), rel(os.path.join(ROOT, "src")),
                  rel(os.path.join(HERE, "src"))],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                        "-Wno-unused-parameter"],
    libraries=["crypto", "pthread"],
)

setup(ext_modules=[ext])
