#!/usr/bin/env bash
# Cache size limit: gc evicts least recently used files first, never one a
# running process has mapped; MEMFIT_CACHE_MAX_GB evicts after a pull; and
# `memfit cache` ls / info / verify / rm on the result.
source "$(dirname "$0")/store_lib.bash"
for f in a b c d e; do make_file $f.bin 3M; done
path() { pull "$T/www/$1.bin"; }
pa=$(path a)
pb=$(path b)
pc=$(path c)
path a >/dev/null # a is now the most recently used; b the least

echo "== a mapped blob survives gc"
"$MEMFIT_BUILD/map_file" "$pb" >"$T/map.out" &
server_pids+=($!)
wait_for grep -q mapped "$T/map.out" || fail "map_file did not start"
"$MEMFIT_BIN" cache ls | grep "$(basename "$pb" | cut -c1-12)" | grep -q yes || fail "ls: in use"
"$MEMFIT_BIN" cache gc --max-size 7MB | tee "$T/gc.out"
grep -q "removed 1 files.*kept 1 in use" "$T/gc.out" || fail "gc output"
[[ -f "$pb" ]] || fail "the mapped blob was evicted"
[[ ! -e "$pc" ]] || fail "the least recently used unmapped blob was kept"
[[ -f "$pa" ]] || fail "the most recently used blob was evicted"
if "$MEMFIT_BIN" cache rm "$T/www/b.bin" 2>"$T/err"; then fail "rm of a mapped blob"; fi
grep -q "in use" "$T/err" || fail "rm message: $(cat "$T/err")"

echo "== unmapped, it can go"
kill "${server_pids[-1]}"
wait "${server_pids[-1]}" 2>/dev/null || true
"$MEMFIT_BIN" cache gc --max-size 4MB | grep -q "removed 1 files" || fail "gc after unmap"
[[ ! -e "$pb" ]] || fail "b kept"
[[ -f "$pa" ]] || fail "a evicted before b"

echo "== MEMFIT_CACHE_MAX_GB evicts after a pull"
export MEMFIT_CACHE_MAX_GB=0.007
pd=$(path d)
pe=$(path e)
[[ -f "$pe" && -f "$pd" ]] || fail "d and e should fit with a evicted"
[[ ! -e "$pa" ]] || fail "a should have been evicted"
unset MEMFIT_CACHE_MAX_GB

echo "== ls, info, verify, rm"
"$MEMFIT_BIN" cache ls | tee "$T/ls.out"
grep -q "$T/www/d.bin" "$T/ls.out" || fail "ls"
"$MEMFIT_BIN" cache info "$(basename "$pd" | cut -c1-10)" | grep -q "path:      $pd" || fail "info"
"$MEMFIT_BIN" cache verify | grep -q "2 ok, 0 bad" || fail "verify"
"$MEMFIT_BIN" cache rm "$T/www/d.bin" | grep -q removed || fail "rm"
[[ ! -e "$pd" ]] || fail "rm kept the blob"
if "$MEMFIT_BIN" cache info nothing 2>/dev/null; then fail "info of nothing"; fi
"$MEMFIT_BIN" cache bogus 2>/dev/null && fail "bad action accepted"
[[ $? -eq 2 ]] || fail "usage exit code"
echo "PASS"
