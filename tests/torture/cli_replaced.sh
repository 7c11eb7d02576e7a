#!/bin/sh
# The torture keeps running the CLI it was started with when that file is
# removed or rewritten meanwhile (a rebuild relinks it): every CLI run
# execs the torture's private copy. Without the copy, the runs made while
# the file was missing or half-written failed to exec and were counted as
# wrong answers of the CLI (226 "wrong" in a long mutate run).
#
# Here the CLI is removed as soon as the torture says it has started; the
# CLI rows must still show every image run, none wrong.
# usage: cli_replaced.sh TORTURE CLI
set -eu
torture=$1 cli=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$cli" "$tmp/shmkit"
mkfifo "$tmp/out"
SHMKIT_CLI=$tmp/shmkit SHMKIT_PYTHON='' "$torture" --only mutate --scale 0.1 \
    > "$tmp/out" 2>&1 &
pid=$!
{
    read -r first # "torture: short run, ...": it holds its copy by now
    rm "$tmp/shmkit"
    echo "$first"
    cat
} < "$tmp/out" > "$tmp/log"
status=0
wait "$pid" || status=$?
cat "$tmp/log"
kinds=$(grep -c '^| mutations, every op (C) |' "$tmp/log" || true)
rows=$(grep -c '^| mutations, every op (CLI) |' "$tmp/log" || true)
[ "$kinds" -gt 0 ] && [ "$rows" -eq "$kinds" ] ||
    { echo "cli_replaced: $kinds kinds but $rows CLI rows"; exit 1; }
[ "$status" -eq 0 ] || { echo "cli_replaced: torture exit $status"; exit 1; }
echo "cli_replaced: every CLI run worked after the CLI was removed"
