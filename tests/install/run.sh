#!/bin/sh
# Installs the build into a temporary prefix, then builds and runs a program
# against it twice: through find_package(shmkit) and through pkg-config.
# usage: run.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/shmkit.h"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
out=$(LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/consumer")
[ "${out#* }" = "ok" ] || { echo "find_package consumer printed: $out"; exit 1; }
libdir=$(ls -d "$tmp"/prefix/lib*/pkgconfig | head -1)
PKG_CONFIG_PATH="$libdir" cc -o "$tmp/pc" "$src/tests/install/consumer/main.c" \
    $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs shmkit)
out=$(LD_LIBRARY_PATH="${libdir%/pkgconfig}" "$tmp/pc")
[ "${out#* }" = "ok" ] || { echo "pkg-config consumer printed: $out"; exit 1; }
"$tmp/prefix/bin/shmkit" version
echo "install: find_package and pkg-config consumers ok"
