#!/usr/bin/env bash
# A download the cache's disk cannot hold is refused before it starts: the
# message states what it needs, the margin the cache keeps free and what the
# disk has, and nothing is left behind (no empty partial file, no .meta).
# The cache lives on a 70 MiB tmpfs, so this needs root (mount); skipped
# otherwise.
source "$(dirname "$0")/lib.bash"

[[ $(id -u) -eq 0 ]] || skip "mounting a small tmpfs needs root"
mnt=$TMP/small
mkdir -p "$mnt"
mount -t tmpfs -o size=70m tmpfs "$mnt" 2>/dev/null || skip "cannot mount a tmpfs here"
on_exit "umount '$mnt'"
head -c 20000000 /dev/urandom >"$TMP/blob.bin"

MEMFIT_CACHE_DIR=$mnt/cache "$MEMFIT" pull "$TMP/blob.bin" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "refused (exit $rc)" [ "$rc" -eq 1 ]
check "the message states the need, the margin and what is free: $(cat "$TMP/err")" \
    grep -qE 'needs 19\.1 MiB more, and the cache keeps 64\.0 MiB free, but .* has only [0-9.]+ MiB free' \
    "$TMP/err"
left=$(find "$mnt/cache" -type f ! -name '*.lock' 2>/dev/null | wc -l)
check "nothing left in the cache ($left files: $(find "$mnt/cache" -type f | tr '\n' ' '))" \
    [ "$left" -eq 0 ]
# With room (the margin included) the same pull succeeds.
MEMFIT_CACHE_DIR=$TMP/cache "$MEMFIT" pull "$TMP/blob.bin" >"$TMP/out" 2>"$TMP/err"
check "with room the pull succeeds" [ $? -eq 0 ]
finish
