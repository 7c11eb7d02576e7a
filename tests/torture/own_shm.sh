#!/bin/sh
# The torture judges only what it made, even when other tests share the
# private /dev/shm and runtime directory of the run (ctest -j): it works in
# a /dev/shm of its own. Before, another test's objects were counted as
# leaks of killed creators, and its gc removed another test's sidecar.
#
# Here "another test" leaves a psm_ block and a refcount sidecar in the
# shared /dev/shm; the create attack must pass and leave both untouched.
# usage: own_shm.sh TORTURE (inside scripts/private-shm.sh, as ctest runs it)
set -eu
torture=$1
[ "${SHMKIT_PRIVATE_SHM:-}" = 1 ] || { echo "own_shm: needs a private /dev/shm (skipped)"; exit 77; }
tmp=$(mktemp -d)
planted="psm_own_shm_$$ shmkit.ref.own_shm_$$"
trap 'rm -rf "$tmp"; for p in $planted; do rm -f "/dev/shm/$p"; done' EXIT
for p in $planted; do
    head -c 4096 /dev/urandom > "/dev/shm/$p"
    cp "/dev/shm/$p" "$tmp/$p"
done
status=0
"$torture" --only create --scale 0.1 || status=$?
for p in $planted; do
    cmp -s "/dev/shm/$p" "$tmp/$p" ||
        { echo "own_shm: the torture changed or removed $p"; exit 1; }
done
[ "$status" -eq 0 ] || { echo "own_shm: torture exit $status"; exit 1; }
echo "own_shm: the create attack passed beside another test's objects"
