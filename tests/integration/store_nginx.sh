#!/usr/bin/env bash
# memfit pull against a real nginx on loopback: download and cache hit, HEAD,
# offline mode, --sha256, a pull killed with SIGKILL and resumed with Range,
# and two concurrent pulls of a 200 MB file that download it once.
source "$(dirname "$0")/store_lib.bash"
start_nginx
make_file small.bin 1M
make_file mid.bin 24M
make_file big.bin 200M
log="$T/nginx/access.log"

echo "== download, --quiet silent without a terminal, then a cache hit"
out=$(pull -q "$NGINX/small.bin" 2>"$T/err") || fail "pull: $(cat "$T/err")"
cmp "$out" "$T/www/small.bin" || fail "cached file differs"
[[ ! -s "$T/err" ]] || fail "stderr not quiet: $(cat "$T/err")"
[[ "$out" == "$MEMFIT_CACHE_DIR/blobs/sha256/$(sha "$T/www/small.bin")" ]] || fail "path $out"
out2=$(pull "$NGINX/small.bin") || fail "second pull"
[[ "$out2" == "$out" ]] || fail "second pull gave $out2"
[[ $(grep -c "GET /small.bin " "$log") -eq 1 ]] || fail "cache hit made a request"

echo "== progress without a terminal: plain lines at the interval, and a last one"
make_file prog.bin 2M # at 2 MB/s: about 1 s
out=$(MEMFIT_DOWNLOAD_MAX_RATE=2MB MEMFIT_PROGRESS_INTERVAL=100ms pull "$NGINX/prog.bin" 2>"$T/err") ||
    fail "pull: $(cat "$T/err")"
cat "$T/err"
cmp "$out" "$T/www/prog.bin" || fail "cached file differs"
n=$(grep -cE '^memfit pull: prog\.bin [0-9.]+ [KM]iB of 2\.00 MiB \([0-9]+ %\), [0-9.]+ [KM]iB/s$' "$T/err" || true)
[[ $n -ge 2 && $n -le 20 ]] || fail "$n progress lines at 100 ms over ~1 s"
tail -n 1 "$T/err" | grep -qE '^memfit pull: prog\.bin 2\.00 MiB of 2\.00 MiB \(100 %\), [0-9.]+ [KM]iB/s, done in [0-9.]+ s$' ||
    fail "no last line"
if grep -q $'\r' "$T/err"; then fail "carriage returns in a log"; fi
make_file prog2.bin 1M
out=$(MEMFIT_DOWNLOAD_MAX_RATE=2MB pull "$NGINX/prog2.bin" 2>"$T/err") || fail "pull: $(cat "$T/err")"
[[ $(wc -l <"$T/err") -eq 1 ]] || fail "a short pull prints one line at 5 s: $(cat "$T/err")"
make_file prog3.bin 1M
out=$(MEMFIT_DOWNLOAD_MAX_RATE=2MB MEMFIT_PROGRESS_INTERVAL=100ms pull --quiet "$NGINX/prog3.bin" 2>"$T/err") ||
    fail "pull"
[[ ! -s "$T/err" ]] || fail "--quiet printed: $(cat "$T/err")"

echo "== HEAD"
size=$("$MEMFIT_BUILD/store_head" "$NGINX/mid.bin") || fail "store_head"
[[ "$size" == $((24 * 1024 * 1024)) ]] || fail "head size $size"
grep -q "HEAD /mid.bin 200" "$log" || fail "no HEAD request"

echo "== offline"
MEMFIT_OFFLINE=1 pull "$NGINX/small.bin" >/dev/null || fail "offline cache hit"
if HF_HUB_OFFLINE=1 pull "$NGINX/mid.bin" 2>"$T/err" >/dev/null; then fail "offline download"; fi
grep -q "offline" "$T/err" || fail "offline message: $(cat "$T/err")"
if pull --offline "$NGINX/mid.bin" 2>/dev/null; then fail "--offline download"; fi
[[ $(grep -c "GET /mid.bin " "$log") -eq 0 ]] || fail "offline mode made a request"

echo "== --sha256 and --name"
want=$(sha "$T/www/mid.bin")
if pull --sha256 "$(printf 'a%.0s' {1..64})" "$NGINX/mid.bin" 2>"$T/err"; then
    fail "wrong sha256 accepted"
fi
grep -q "expected aaaa" "$T/err" || fail "mismatch message: $(cat "$T/err")"
ls "$MEMFIT_CACHE_DIR/quarantine/$want"-* >/dev/null || fail "mismatch not quarantined"
out=$(pull --sha256 "$want" --name mid "$NGINX/mid.bin") || fail "pull with sha256"
[[ $(basename "$out") == "$want" ]] || fail "digest"
"$MEMFIT_BIN" cache info mid | grep -q "sha256:$want" || fail "cache info"

echo "== SIGKILL mid-way, then resume with Range"
"$MEMFIT_BIN" pull "$NGINX/slow/big.bin" >/dev/null 2>&1 &
victim=$!
partial_size() { find "$MEMFIT_CACHE_DIR/partial" -type f -regex '.*/[0-9a-f]*' -printf '%s\n' | sort -n | tail -1; }
partial_grew() { [[ $(partial_size) -gt 2000000 ]]; }
wait_for partial_grew || fail "no partial download grew"
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
have=$(partial_size)
ls "$MEMFIT_CACHE_DIR"/partial/*.lock >/dev/null || fail "the killed pull left no lock to recover"
echo "killed after $have bytes"
out=$(pull "$NGINX/slow/big.bin") || fail "resumed pull"
cmp "$out" "$T/www/big.bin" || fail "resumed file differs"
grep -E "GET /slow/big.bin 206 range=bytes=[0-9]+- if_range=[^-]" "$log" || { cat "$log"; fail "no Range request"; }
"$MEMFIT_BIN" cache verify || fail "verify after resume"
"$MEMFIT_BIN" cache rm "$NGINX/slow/big.bin" >/dev/null || fail "cache rm"

echo "== two concurrent pulls of 200 MB download once"
pull "$NGINX/rate/big.bin" >"$T/a.out" 2>"$T/a.err" &
a=$!
pull "$NGINX/rate/big.bin" >"$T/b.out" 2>"$T/b.err" &
b=$!
wait "$a" || fail "first pull: $(cat "$T/a.err")"
wait "$b" || fail "second pull: $(cat "$T/b.err")"
[[ $(cat "$T/a.out") == $(cat "$T/b.out") ]] || fail "different paths"
cmp "$(cat "$T/a.out")" "$T/www/big.bin" || fail "content"
n=$(grep -c "GET /rate/big.bin " "$log")
[[ $n -eq 1 ]] || fail "$n downloads of the same file"

"$MEMFIT_BIN" cache ls
echo "PASS"
