#!/bin/sh
# private-shm.sh - runs a command in its own world of shared memory: a
# private mount namespace with a fresh tmpfs on /dev/shm, and a private
# runtime directory (SHMKIT_RUNTIME_DIR on a tmpfs of its own), so nothing
# the command does can see or touch another program's objects, trackers or
# managers, and the reverse.
#
#   scripts/private-shm.sh [--size N] CMD [ARG...]
#
# It tries, in order:
#   1. `unshare --mount` (root);
#   2. a user namespace that maps the caller to root inside
#      (`unshare --user --map-root-user --mount`), for anyone else, or for
#      root in a container that refuses a plain mount namespace;
#   3. neither works: "prefix mode". The command runs on the real /dev/shm
#      with only a private runtime directory. Tests then see other programs'
#      objects, so they count and remove only names they made themselves.
# Inside, SHMKIT_PRIVATE_SHM is 1 in a private /dev/shm and 0 in prefix
# mode, so tests can tell; run again inside, the script just runs the
# command. SHMKIT_PRIVATE_SHM_MODE=prefix forces prefix mode (to test it).
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
if [ -n "${SHMKIT_PRIVATE_SHM:-}" ]; then
    exec "$@"
fi

# Can this kind of namespace mount a tmpfs? Tried on a scratch directory,
# so a refusal costs nothing.
ns_works() {
    probe=$(mktemp -d "${TMPDIR:-/tmp}/shmkit-probe.XXXXXX")
    ok=0
    # shellcheck disable=SC2086
    $1 -- sh -c 'mount -t tmpfs -o size=1m shmkit-probe "$0"' "$probe" \
        2>/dev/null || ok=1
    rmdir "$probe" 2>/dev/null || true
    return $ok
}

ns=""
if [ "${SHMKIT_PRIVATE_SHM_MODE:-}" != prefix ]; then
    for cand in "unshare --mount --propagation private" \
                "unshare --user --map-root-user --mount --propagation private"; do
        if ns_works "$cand"; then
            ns=$cand
            break
        fi
    done
fi

rt=$(mktemp -d "${TMPDIR:-/tmp}/shmkit-rt.XXXXXX")
status=0
if [ -n "$ns" ]; then
    # shellcheck disable=SC2086
    $ns -- "$0" --inside "$size" "$rt" "$@" || status=$?
    rmdir "$rt" 2>/dev/null || true
else
    echo "private-shm: no mount namespace here; prefix mode on the real" \
         "/dev/shm" >&2
    mkdir -m 0700 "$rt/run"
    SHMKIT_RUNTIME_DIR=$rt/run SHMKIT_PRIVATE_SHM=0 \
        "$@" || status=$?
    rm -rf "$rt"
fi
exit "$status"
