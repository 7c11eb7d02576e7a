#!/bin/sh
# private-shm.sh - runs a command in its own world of shared memory: a
# private mount namespace with a fresh tmpfs on /dev/shm, and a private
# runtime directory (SHMKIT_RUNTIME_DIR on a tmpfs of its own), so nothing
# the command does can see or touch another program's objects, trackers or
# managers, and the reverse.
#
#   scripts/private-shm.sh [--size N] CMD [ARG...]
#
# As root it uses `unshare --mount`; otherwise a user namespace that maps
# the caller to root inside (`unshare --user --map-root-user --mount`).
# Inside, SHMKIT_PRIVATE_SHM=1 is set, so tests can tell they are isolated;
# run again inside, the script just runs the command.
set -eu

if [ "${1:-}" = "--inside" ]; then
    # Second stage, in the new mount namespace: $2 size, $3 runtime mount.
    size=$2 rt=$3
    shift 3
    mount -t tmpfs -o "size=$size,mode=1777" shmkit-test /dev/shm
    mount -t tmpfs -o "size=64m,mode=0700" shmkit-test-rt "$rt"
    mkdir -m 0700 "$rt/run"
    SHMKIT_RUNTIME_DIR=$rt/run SHMKIT_PRIVATE_SHM=1
    export SHMKIT_RUNTIME_DIR SHMKIT_PRIVATE_SHM
    exec "$@"
fi

size=2g
if [ "${1:-}" = "--size" ]; then
    size=$2
    shift 2
fi
[ $# -ge 1 ] || { echo "usage: $0 [--size N] CMD [ARG...]" >&2; exit 2; }
if [ "${SHMKIT_PRIVATE_SHM:-}" = 1 ]; then
    exec "$@"
fi

rt=$(mktemp -d "${TMPDIR:-/tmp}/shmkit-rt.XXXXXX")
if [ "$(id -u)" -eq 0 ]; then
    ns="unshare --mount --propagation private"
else
    ns="unshare --user --map-root-user --mount --propagation private"
fi
status=0
# shellcheck disable=SC2086
$ns -- "$0" --inside "$size" "$rt" "$@" || status=$?
rmdir "$rt" 2>/dev/null || true
exit "$status"
