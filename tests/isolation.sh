#!/bin/sh
# isolation.sh - run by ctest inside test.sh's private /dev/shm: the object
# test.sh planted in the host's /dev/shm (SHMKIT_PLANTED) must not be
# visible here. test.sh checks afterwards that it survived untouched.
# Exit 77 (skip) when not run from test.sh, or in prefix mode, where the
# suite shares the host's /dev/shm by design.
if [ -z "${SHMKIT_PLANTED:-}" ]; then
    echo "SKIP: SHMKIT_PLANTED not set (run through ./test.sh)"
    exit 77
fi
if [ "${SHMKIT_PRIVATE_SHM:-}" != 1 ]; then
    echo "SKIP: prefix mode: the suite shares the host's /dev/shm"
    exit 77
fi
if [ -e "/dev/shm/$SHMKIT_PLANTED" ]; then
    echo "FAIL: /dev/shm/$SHMKIT_PLANTED, planted outside, is visible inside"
    exit 1
fi
n=$(find /dev/shm -mindepth 1 -maxdepth 1 -name 'psm_planted_*' | wc -l)
if [ "$n" -ne 0 ]; then
    echo "FAIL: $n planted object(s) visible inside"
    exit 1
fi
echo "ok: $SHMKIT_PLANTED not visible in the private /dev/shm"
