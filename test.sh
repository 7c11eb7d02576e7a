#!/bin/sh
# test.sh - builds shmkit and runs the whole test suite in a private
# /dev/shm (scripts/private-shm.sh), so it can neither see nor touch
# another program's shared memory:
#   1. the C tests, the CLI, Python and CPython-interop tests (plain build);
#   2. the C tests again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the Python tests and examples in that sanitized build: Debian's
#      python3 with the sanitizer runtime preloaded (build-asan/python-sanitized);
#   4. each libFuzzer target for a short run (clang, ASan + UBSan).
# After each step, every daemon the step started (trackers, managers) has
# exited (scripts/reap.py waits for them) and /dev/shm must hold nothing.
# Before entering, it plants an object in the host's /dev/shm; the suite
# must not see it (ctest test "isolation") and it must survive untouched.
# The run ends with one line counting passed, failed and skipped cases
# (scripts/test-summary.py), after the names of the failed and skipped ones.
#
#   ./test.sh            everything
#   ./test.sh --quick    step 1 only
#
# To add a step: call run_ctest (a ctest run, counted case by case) or
# run_check (any command, counted as one case) in the inner part below.
# Each ctest run's reports are kept in build/test-run/reports/LABEL (steps
# 2 and 3 share a build tree), where the summary reads them.
set -eu
case "${1:-}" in
    "" | --quick) ;;
    -h | --help) sed -n '2,18p' "$0" | cut -c3-; exit 0 ;;
    *) echo "usage: ./test.sh [--quick]   (./test.sh --help says more)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
top=$(pwd)
state=$top/build/test-run    # what the inner run hands to the outer one

if [ "${SHMKIT_TEST_OUTER:-}" != 1 ]; then
    . scripts/deps.sh
    # shellcheck disable=SC2086
    # python3-pip: the fresh-venv install test; mypy: the stubs test;
    # libpython3.11-testsuite: CPython's own tests (tests/cpython).
    shmkit_need_packages $SHMKIT_BUILD_PACKAGES libcriterion-dev python3 \
        python3-dev python3-pytest python3-numpy python3-pip mypy \
        libpython3.11-testsuite clang libclang-rt-14-dev util-linux
fi

# ---- outer part: plant, enter the private /dev/shm, check, summarise ----
if [ -z "${SHMKIT_PRIVATE_SHM:-}" ]; then
    rm -rf "$state"
    mkdir -p "$state"
    planted=psm_planted_$$
    head -c 4096 /dev/urandom >"$state/planted"
    cp "$state/planted" "/dev/shm/$planted"
    # Removed however the run ends: a signal exits, and exit runs the trap.
    trap 'rm -f "/dev/shm/$planted"' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 141' PIPE
    trap 'exit 143' TERM
    status=0
    SHMKIT_TEST_OUTER=1 SHMKIT_PLANTED=$planted \
        scripts/private-shm.sh ./test.sh "$@" || status=$?
    printf '\n==== the object planted in the host /dev/shm\n'
    if cmp -s "$state/planted" "/dev/shm/$planted"; then
        echo "survived, unchanged: /dev/shm/$planted"
        echo "passed planted-object-survives" >>"$state/checks"
    else
        echo "FAILED: /dev/shm/$planted was removed or changed by the run"
        echo "failed planted-object-survives" >>"$state/checks"
    fi
    rm -f "/dev/shm/$planted"
    trap - EXIT HUP INT PIPE TERM
    if [ ! -e "$state/inner-done" ]; then
        # A build or set-up step failed: the counts below cannot show it.
        echo "failed test.sh-stopped-early-with-status-$status" >>"$state/checks"
    fi
    printf '\n==== summary\n'
    # shellcheck disable=SC2046
    scripts/test-summary.py $(cat "$state/runs" 2>/dev/null) \
        --checks "$state/checks" || status=1
    exit "$status"
fi

# ---- inner part: in the private /dev/shm (or prefix mode) ----
[ "${SHMKIT_TEST_OUTER:-}" = 1 ] || { rm -rf "$state"; mkdir -p "$state"; }
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=2
failed=0
stamp=$state/stamp
: >"$stamp"

step() { printf '\n==== %s\n' "$*"; }

# Records one of test.sh's own checks: record passed|failed|skipped NAME.
record() { echo "$1 $2" >>"$state/checks"; }

# The run's tag: the C and Python tests put it in their name prefixes
# (sktest_<tag><pid>_, sktest_py<tag>..., skpy<tag>...).
SHMKIT_TEST_TAG=r$$x
export SHMKIT_TEST_TAG

# Objects in /dev/shm this run must answer for. In a private /dev/shm,
# everything: it started empty. In prefix mode, only names carrying this
# run's tag; bookkeeping and generated names made during the run are
# listed apart, never judged nor removed (they may be another program's).
ours() {
    if [ "$SHMKIT_PRIVATE_SHM" = 1 ]; then
        find /dev/shm -mindepth 1 -maxdepth 1
    else
        find /dev/shm -mindepth 1 -maxdepth 1 \( \
             -name "sktest_${SHMKIT_TEST_TAG}*" -o \
             -name "sktest_py${SHMKIT_TEST_TAG}*" -o \
             -name "skpy${SHMKIT_TEST_TAG}*" \)
    fi
}
maybe_ours() {
    [ "$SHMKIT_PRIVATE_SHM" = 1 ] && return 0
    find /dev/shm -mindepth 1 -maxdepth 1 -newer "$stamp" \( \
         -name 'psm_*' -o -name 'shmkit.ref.*' -o -name 'shmkit-tmp-*' \)
}

# Called after each step: scripts/reap.py has already waited for every
# daemon of the step, so what is left now stays.
check_leftovers() {
    left=$(ours)
    if [ -n "$left" ]; then
        echo "$1 left objects in /dev/shm (a failure; removed now):"
        echo "$left"
        echo "$left" | xargs rm -f
        record failed "no-leftovers-after-$1"
        failed=1
    else
        record passed "no-leftovers-after-$1"
    fi
    other=$(maybe_ours)
    if [ -n "$other" ]; then
        echo "prefix mode: made during $1, maybe by another program (left alone):"
        echo "$other"
    fi
}

# run_ctest LABEL BUILD_DIR [CTEST_ARGS...]: runs ctest there under
# scripts/reap.py, with its reports in BUILD_DIR/test-reports, then keeps
# a copy of them in $state/reports/LABEL for the summary (the next run in
# the same tree starts with an empty BUILD_DIR/test-reports).
run_ctest() {
    label=$1 dir=$2
    shift 2
    rm -rf "$dir/test-reports" "$state/reports/$label"
    mkdir -p "$dir/test-reports" "$state/reports"
    echo "$label=$state/reports/$label" >>"$state/runs"
    scripts/reap.py ctest --test-dir "$dir" --output-on-failure \
        --output-junit "$top/$dir/test-reports/ctest.xml" "$@" || failed=1
    cp -R "$dir/test-reports" "$state/reports/$label"
    # A sanitized tree's tests that run Python (through python-sanitized:
    # the Python tests, and the C tests' Python children) log ASan's
    # reports there (SHMKIT_SANITIZER_ENV, CMakeLists.txt); read now,
    # before this tree's next run clears them.
    if [ -x "$dir/python-sanitized" ]; then
        check_sanitizer_reports "no-sanitizer-reports-after-$label" \
            "$dir/test-reports/sanitizer"
    fi
    check_leftovers "$label"
}

# check_sanitizer_reports NAME DIR: python-sanitized writes ASan's reports
# into DIR (cmake/python-sanitized.in); any there, from whichever process
# (a daemon that outlived its test too: reap.py has waited for it), is
# shown and fails the check NAME. (ASan's files are asan.PID: no dotfiles.)
check_sanitizer_reports() {
    if [ -n "$(ls -A "$2" 2>/dev/null)" ]; then
        echo "$1: sanitizer reports in $2 (a failure):"
        for f in "$2"/*; do printf -- '---- %s\n' "$f"; cat "$f"; done
        record failed "$1"
        failed=1
    else
        record passed "$1"
    fi
}

# run_check NAME CMD...: runs CMD under scripts/reap.py as one case.
run_check() {
    name=$1
    shift
    if scripts/reap.py "$@"; then
        record passed "$name"
    else
        record failed "$name"
        failed=1
    fi
    check_leftovers "$name"
}

step "plain build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMKIT_TESTS_REQUIRED=ON >/dev/null
cmake --build build -j"$jobs"
run_ctest plain build

if [ "$quick" -eq 0 ]; then
    step "C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    # The extension too: test_full_shm's Python case and step 3 use it.
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSHMKIT_SANITIZE=ON -DSHMKIT_TESTS_REQUIRED=ON \
          -DSHMKIT_BENCH=OFF -DSHMKIT_PYTHON_MODULE=ON >/dev/null
    cmake --build build-asan -j"$jobs"
    run_ctest asan build-asan -L c

    step "Python tests and examples under AddressSanitizer + UndefinedBehaviorSanitizer"
    run_ctest asan-python build-asan -L python

    step "fuzz targets, short runs (clang, ASan + UBSan)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSHMKIT_FUZZ=ON -DSHMKIT_TESTS_REQUIRED=ON \
          -DSHMKIT_SANITIZE=ON -DSHMKIT_BENCH=OFF >/dev/null
    cmake --build build-fuzz -j"$jobs"
    if ctest --test-dir build-fuzz -N -L fuzz | grep -q 'Total Tests: 0'; then
        echo "no fuzz targets"
    else
        run_ctest fuzz build-fuzz -L fuzz
    fi
fi

: >"$state/inner-done"
if [ "${SHMKIT_TEST_OUTER:-}" = 1 ]; then
    exit "$failed"    # the outer part checks the planted object, summarises
fi
printf '\n==== summary\n'
# shellcheck disable=SC2046
scripts/test-summary.py $(cat "$state/runs") --checks "$state/checks" ||
    failed=1
exit "$failed"
