#!/usr/bin/env bash
# memfit pull against a fault-injecting server: a connection cut mid-body
# (resumed with Range), a stalled transfer (stall timeout), 503 then success
# (retries), wrong bytes (digest mismatch, quarantine, next source), 404 on
# the first source (fallback), an object changed between attempts (If-Range
# restart), an announced size beyond the free space, the Hugging Face
# resolve URL with its token, and secrets never printed or stored.
source "$(dirname "$0")/store_lib.bash"
start_faulty
flog="$T/faulty.log"
for f in a b c d e f g h; do make_file $f.bin 1M; done
make_file f.bin.v2 1M
mkdir -p "$T/www/org/repo/resolve/v1/sub"
make_file org/repo/resolve/v1/sub/w.bin 300K
export MEMFIT_LOG_LEVEL=info

echo "== connection cut mid-body: resumed"
out=$(pull "$FAULTY/cut/a.bin" 2>"$T/err") || fail "cut: $(cat "$T/err")"
cmp "$out" "$T/www/a.bin" || fail "cut: content"
grep -q "GET /cut/a.bin status=206 range=bytes=524288- if_range=\"" "$flog" || fail "cut: no resume"

echo "== stalled transfer: the stall timeout fires, the next source is used"
start=$(date +%s)
if pull --stall-timeout 1s --attempts 1 "$FAULTY/slow/b.bin" 2>"$T/err"; then fail "stall"; fi
grep -qi "timed out" "$T/err" || fail "stall message: $(cat "$T/err")"
(($(date +%s) - start < 15)) || fail "stall timeout too slow"
out=$(pull --stall-timeout 1s --attempts 1 "$FAULTY/slow/b.bin" "$FAULTY/plain/b.bin" 2>"$T/err") ||
    fail "stall fallback: $(cat "$T/err")"
cmp "$out" "$T/www/b.bin" || fail "stall fallback: content"

echo "== 503 twice, then success"
out=$(pull "$FAULTY/flaky/c.bin" 2>"$T/err") || fail "flaky: $(cat "$T/err")"
cmp "$out" "$T/www/c.bin" || fail "flaky: content"
[[ $(grep -c "GET /flaky/c.bin status=503" "$flog") -eq 2 ]] || fail "flaky: 503 count"
grep -q "retrying in" "$T/err" || fail "flaky: no retry message"

echo "== wrong bytes: digest mismatch, quarantine, next source"
want=$(sha "$T/www/d.bin")
out=$(pull --sha256 "$want" "$FAULTY/wrong/d.bin" "$FAULTY/plain/d.bin" 2>"$T/err") ||
    fail "wrong: $(cat "$T/err")"
cmp "$out" "$T/www/d.bin" || fail "wrong: content"
[[ $(ls "$MEMFIT_CACHE_DIR/quarantine" | wc -l) -eq 1 ]] || fail "wrong: not quarantined"
grep -q "expected $want" "$T/err" || fail "wrong: message"

echo "== 404 on the first source: fallback"
out=$(pull "$FAULTY/plain/nope.bin" "$FAULTY/plain/e.bin" 2>"$T/err") || fail "404: $(cat "$T/err")"
cmp "$out" "$T/www/e.bin" || fail "404: content"
grep -q "not found.*trying the next source" "$T/err" || fail "404: message $(cat "$T/err")"
if pull "$FAULTY/plain/nope.bin" 2>"$T/err"; then fail "404 alone succeeded"; fi
[[ $(grep -c "GET /plain/nope.bin" "$flog") -eq 2 ]] || fail "404 was retried"

echo "== object changed between attempts: If-Range restarts from zero"
out=$(pull "$FAULTY/etag/f.bin" 2>"$T/err") || fail "etag: $(cat "$T/err")"
cmp "$out" "$T/www/f.bin.v2" || fail "etag: expected the new version"
grep -q 'GET /etag/f.bin status=200 range=bytes=524288- if_range="v1"' "$flog" || fail "etag: log"

echo "== announced size beyond the free space"
if pull "$FAULTY/huge/g.bin" 2>"$T/err"; then fail "huge"; fi
grep -q "free" "$T/err" || fail "huge: message $(cat "$T/err")"

echo "== Hugging Face resolve URL with the token"
export HF_ENDPOINT="$FAULTY/plain" HF_TOKEN=hf_SeCrEt_token
out=$(pull "hf://org/repo/sub/w.bin@v1" 2>"$T/err") || fail "hf: $(cat "$T/err")"
cmp "$out" "$T/www/org/repo/resolve/v1/sub/w.bin" || fail "hf: content"
grep -q "GET /plain/org/repo/resolve/v1/sub/w.bin status=200 .* auth=Bearer hf_SeCrEt_token" \
    "$flog" || fail "hf: request"
unset HF_ENDPOINT

echo "== secrets are never printed or stored"
export MEMFIT_LOG_LEVEL=trace AWS_SECRET_ACCESS_KEY=aws_SeCrEt AWS_ACCESS_KEY_ID=AKIA_ID
secret_url="$FAULTY/plain/h.bin?X-Amz-Credential=AKIA_ID%2Fx&X-Amz-Signature=SiGnAtUrE&token=ToKeN"
out=$(pull "$secret_url" 2>"$T/err") || fail "presigned: $(cat "$T/err")"
if pull "$FAULTY/plain/none.bin?X-Amz-Signature=SiGnAtUrE" 2>>"$T/err"; then fail "none"; fi
if pull "http://user:PaSsWoRd@127.0.0.1:1/x" --attempts 1 2>>"$T/err"; then fail "userinfo"; fi
"$MEMFIT_BIN" cache ls >>"$T/err" 2>&1
"$MEMFIT_BIN" cache info "$secret_url" >>"$T/err" 2>&1 || fail "info by presigned URL"
grep -q REDACTED "$T/err" || fail "nothing redacted? $(cat "$T/err")"
for s in SiGnAtUrE ToKeN PaSsWoRd hf_SeCrEt_token aws_SeCrEt; do
    if grep -q "$s" "$T/err"; then fail "$s printed: $(grep "$s" "$T/err")"; fi
    if grep -rq "$s" "$MEMFIT_CACHE_DIR"; then fail "$s stored in the cache"; fi
done

echo "== disk full mid-way: clear error, partial kept"
mkdir -p "$T/small"
if mount -t tmpfs -o size=8m tmpfs "$T/small" 2>/dev/null; then
    make_file big.bin 20M
    if MEMFIT_CACHE_DIR="$T/small/cache" pull "$FAULTY/chunked/big.bin" 2>"$T/err"; then
        umount "$T/small"
        fail "ENOSPC not reported"
    fi
    kept=$(find "$T/small/cache/partial" -type f -regex '.*/[0-9a-f]*' -size +1M | wc -l)
    umount "$T/small"
    grep -q "no space left" "$T/err" || fail "ENOSPC message: $(cat "$T/err")"
    [[ $kept -eq 1 ]] || fail "partial not kept"
else
    echo "(skipping the ENOSPC part: cannot mount a small tmpfs here)"
fi
echo "PASS"
