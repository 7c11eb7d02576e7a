#!/bin/sh
# test.sh - builds shmkit and runs the whole test suite:
#   1. the C tests, the CLI, Python and CPython-interop tests (plain build);
#   2. the C tests again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. each libFuzzer target for a short run (clang, ASan + UBSan).
# Then it checks that no test left anything in /dev/shm.
# ./test.sh --quick runs step 1 only.
set -eu
cd "$(dirname "$0")"
. scripts/deps.sh
# shellcheck disable=SC2086
shmkit_need_packages $SHMKIT_BUILD_PACKAGES libcriterion-dev python3 \
    python3-dev python3-pytest python3-numpy python3-setuptools \
    clang libclang-rt-14-dev

quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=$(nproc)
failed=0
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT

step() { printf '\n==== %s\n' "$*"; }

step "plain build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure || failed=1

if [ "$quick" -eq 0 ]; then
    step "C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSHMKIT_SANITIZE=ON \
          -DSHMKIT_BENCH=OFF -DSHMKIT_PYTHON_MODULE=OFF >/dev/null
    cmake --build build-asan -j"$jobs"
    ctest --test-dir build-asan -L c --output-on-failure || failed=1

    step "fuzz targets, short runs (clang, ASan + UBSan)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSHMKIT_FUZZ=ON \
          -DSHMKIT_SANITIZE=ON -DSHMKIT_BENCH=OFF >/dev/null
    cmake --build build-fuzz -j"$jobs"
    if ctest --test-dir build-fuzz -N -L fuzz | grep -q 'Total Tests: 0'; then
        echo "no fuzz targets"
    else
        ctest --test-dir build-fuzz -L fuzz --output-on-failure || failed=1
    fi
fi

step "leftovers in /dev/shm"
# Test names start with sktest_; shmkit's own bookkeeping and generated
# names made during this run count too.
leftovers() {
    find /dev/shm -maxdepth 1 -mindepth 1 \( -name 'sktest_*' -o \
         \( -newer "$stamp" \( -name 'psm_*' -o -name 'shmkit.ref.*' -o \
         -name 'shmkit-tmp-*' \) \) \) 2>/dev/null
}
# A family tracker removes its blocks just after the family exits: give
# the last ones a few seconds before calling anything a leftover.
tries=0
while [ -n "$(leftovers)" ] && [ "$tries" -lt 10 ]; do
    sleep 0.5
    tries=$((tries + 1))
done
left=$(leftovers)
if [ -n "$left" ]; then
    echo "tests left objects behind (removed now):"
    echo "$left"
    echo "$left" | xargs rm -f
    failed=1
else
    echo "none"
fi

if [ "$failed" -ne 0 ]; then
    printf "\nshmkit: TESTS FAILED\n"
    exit 1
fi
printf "\nshmkit: all tests passed\n"
