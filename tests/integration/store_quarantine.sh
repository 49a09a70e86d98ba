#!/usr/bin/env bash
# The quarantine is bounded: downloads whose sha256 does not match (served
# by the fault-injecting server) go to quarantine/, the oldest are deleted
# when a bound (MEMFIT_QUARANTINE_MAX_FILES / _MAX_SIZE) is exceeded, a file
# larger than the byte bound is not kept at all; `memfit cache ls` shows
# the quarantine and `memfit cache gc` empties it.
source "$(dirname "$0")/store_lib.bash"
start_faulty
for f in a b c d; do make_file $f.bin 600K; done
make_file e.bin 1M
make_file huge.bin 3M
export MEMFIT_LOG_LEVEL=info MEMFIT_QUARANTINE_MAX_FILES=3 MEMFIT_QUARANTINE_MAX_SIZE=2500000
wrong=$(printf 'e%.0s' {1..64})
q="$MEMFIT_CACHE_DIR/quarantine"
q_files() { find "$q" -maxdepth 1 -type f ! -name '.*' | wc -l; }
q_bytes() { find "$q" -maxdepth 1 -type f ! -name '.*' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
mismatch() {
    if pull --sha256 "$wrong" "$FAULTY/plain/$1" 2>"$T/err"; then fail "$1: accepted"; fi
    grep -q "expected $wrong" "$T/err" || fail "$1: message $(cat "$T/err")"
    ((0 + $(q_files) <= 3)) || fail "$1: $(q_files) files in quarantine"
    ((0 + $(q_bytes) <= 2500000)) || fail "$1: $(q_bytes) bytes in quarantine"
}

echo "== the count bound: the oldest goes"
for f in a b c; do mismatch $f.bin; done
[[ $(q_files) -eq 3 ]] || fail "three should be kept"
mismatch d.bin
grep -q "quarantine: deleted .*$(sha "$T/www/a.bin")-.* (614400 bytes), the oldest" "$T/err" ||
    fail "count: log $(cat "$T/err")"
ls "$q/$(sha "$T/www/d.bin")"-* >/dev/null || fail "d not kept"
if ls "$q/$(sha "$T/www/a.bin")"-* 2>/dev/null; then fail "a kept"; fi

echo "== the byte bound: the oldest goes"
mismatch e.bin
[[ $(q_files) -eq 3 && $(q_bytes) -eq $((2 * 614400 + 1048576)) ]] ||
    fail "bytes: $(q_files) files, $(q_bytes) bytes"
if ls "$q/$(sha "$T/www/b.bin")"-* 2>/dev/null; then fail "b kept"; fi

echo "== larger than the bound: not kept"
mismatch huge.bin
grep -q "not keeping the file with sha256 $(sha "$T/www/huge.bin") from $FAULTY/plain/huge.bin" \
    "$T/err" || fail "huge: log $(cat "$T/err")"
grep -q "not kept" "$T/err" || fail "huge: message $(cat "$T/err")"
[[ $(q_files) -eq 3 ]] || fail "huge: the others should stay"
[[ -z $(ls -A "$MEMFIT_CACHE_DIR/partial") ]] || fail "huge: left in partial/"

echo "== cache ls shows it, cache gc empties it"
"$MEMFIT_BIN" cache ls | tee "$T/ls.out"
grep -q "^quarantine: 3 files, 2.17 MiB (bound 3 files, 2.38 MiB)" "$T/ls.out" || fail "ls: summary"
grep -q "$(sha "$T/www/e.bin")" "$T/ls.out" || fail "ls: e not listed"
[[ $(grep -c " ago  $q/" "$T/ls.out") -eq 3 ]] || fail "ls: files"
"$MEMFIT_BIN" cache gc | tee "$T/gc.out"
grep -q "removed 3 quarantined files" "$T/gc.out" || fail "gc: summary"
[[ $(q_files) -eq 0 ]] || fail "gc left files in quarantine"
"$MEMFIT_BIN" cache ls | grep -q "^quarantine: 0 files" || fail "ls after gc"
echo "PASS"
