#!/bin/sh
# demo.sh - builds shmkit and runs its main job, `shmkit demo`, on defaults.
# Extra arguments go to the demo (e.g. ./demo.sh --workers 4 --size 100000000).
set -eu
cd "$(dirname "$0")"
. scripts/deps.sh
# shellcheck disable=SC2086
shmkit_need_packages $SHMKIT_BUILD_PACKAGES
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DSHMKIT_TESTS=OFF \
      -DSHMKIT_BENCH=OFF -DSHMKIT_PYTHON_MODULE=OFF >/dev/null
cmake --build build-demo -j"$(nproc)" --target shmkit_cli >/dev/null
exec ./build-demo/bin/shmkit demo "$@"
