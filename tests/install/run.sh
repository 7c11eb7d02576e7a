#!/bin/sh
# The install as a new user meets it, on this machine: configure shmkit
# afresh with the test dependencies hidden (no Criterion: pkg-config sees no
# .pc files; no pytest: a stand-in that fails to import; gcc, not clang),
# check that configure says what it skipped, build, `cmake --install` into
# a clean prefix with the Python package, then build programs against the
# install, and run them all WITHOUT LD_LIBRARY_PATH:
#   find_package(shmkit): shmkit::shmkit (also once installed elsewhere)
#                         and shmkit::shmkit_static
#   pkg-config:           shmkit (rpath) and shmkit-static
#   Python:               PYTHONPATH=PREFIX/lib/pythonX.Y/site-packages
#   the command and its man page.
# usage: run.sh SOURCE_DIR PYTHON
set -eu
src=$1 python=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset LD_LIBRARY_PATH PYTHONPATH
fail() { echo "install: $*" >&2; exit 1; }

mkdir "$tmp/nopc" "$tmp/nopytest"
echo 'raise ImportError("hidden by tests/install/run.sh")' > "$tmp/nopytest/pytest.py"
prefix=$tmp/prefix

PKG_CONFIG_LIBDIR=$tmp/nopc PYTHONPATH=$tmp/nopytest CC=gcc \
    cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_INSTALL_PREFIX="$prefix" -DSHMKIT_BENCH=OFF \
          -DSHMKIT_PYTHON="$python" -DSHMKIT_INSTALL_PYTHON=ON \
          > "$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configure failed"; }
grep -q "shmkit: C tests skipped: Criterion" "$tmp/configure.log" ||
    { cat "$tmp/configure.log"; fail "configure did not say the C tests are skipped"; }
grep -q "shmkit: Python tests skipped: pytest" "$tmp/configure.log" ||
    { cat "$tmp/configure.log"; fail "configure did not say the Python tests are skipped"; }
cmake --build "$tmp/build" -j2 > "$tmp/build.log" 2>&1 ||
    { tail -50 "$tmp/build.log"; fail "build failed"; }
cmake --install "$tmp/build" > /dev/null

libdir=$(cd "$prefix" && ls -d lib*/pkgconfig | head -1)
libdir=$prefix/${libdir%/pkgconfig}
for f in include/shmkit.h include/shmkit/list.h bin/shmkit share/man/man1/shmkit.1; do
    test -f "$prefix/$f" || fail "$f not installed"
done
test -f "$libdir/libshmkit.a" && test -e "$libdir/libshmkit.so.1" ||
    fail "libraries not installed in $libdir"

# ---- CMake consumers: built, run, installed elsewhere, run again ----
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_INSTALL_PREFIX="$tmp/app" > /dev/null
cmake --build "$tmp/consumer" > /dev/null
cmake --install "$tmp/consumer" > /dev/null
rm -rf "$tmp/consumer"
check() { # check LABEL PROGRAM [static]
    out=$("$2") || fail "$1: exited $? (printed: $out)"
    [ "${out#* }" = "ok" ] || fail "$1 printed: $out"
    if [ "${3:-}" = static ]; then
        ! readelf -d "$2" | grep -q 'NEEDED.*libshmkit' ||
            fail "$1 needs libshmkit.so"
    fi
    echo "install: $1: $out"
}
check "find_package shmkit::shmkit, installed" "$tmp/app/bin/consumer"
check "find_package shmkit::shmkit_static" "$tmp/app/bin/consumer_static" static

# ---- pkg-config consumers ----
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -o "$tmp/pc" "$src/tests/install/consumer/main.c" $(pkg-config --cflags --libs shmkit)
check "pkg-config shmkit" "$tmp/pc"
# shellcheck disable=SC2046
cc -o "$tmp/pcs" "$src/tests/install/consumer/main.c" $(pkg-config --cflags --libs shmkit-static)
check "pkg-config shmkit-static" "$tmp/pcs" static

# ---- the command, its manual, the Python package ----
"$prefix/bin/shmkit" version | grep -q "^shmkit " || fail "shmkit version"
if command -v man > /dev/null; then
    MANPATH=$prefix/share/man man -P cat shmkit 2>/dev/null | grep -q "shmkit ls" ||
        fail "man shmkit does not show the page"
fi
site=$(cd "$prefix" && ls -d lib/python*/site-packages)
for f in py.typed __init__.pyi shared_memory.py; do
    test -f "$prefix/$site/shmkit/$f" || fail "python: shmkit/$f not installed"
done
out=$(PREFIX=$prefix PYTHONPATH=$prefix/$site "$python" -c '
import os, shmkit
from shmkit import shared_memory
assert os.path.dirname(shmkit.__file__).startswith(os.environ["PREFIX"]), shmkit.__file__
s = shared_memory.SharedMemory(create=True, size=10)
s.buf[:2] = b"ok"
print("python", bytes(s.buf[:2]).decode())
s.close(); s.unlink()' 2>&1) || fail "python: $out"
[ "$out" = "python ok" ] || fail "python printed: $out"
echo "install: python package from $site: ok"
echo "install: all consumers ran without LD_LIBRARY_PATH"
