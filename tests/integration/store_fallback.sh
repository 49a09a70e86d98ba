#!/usr/bin/env bash
# Falling back between sources mid-download, and what the log says: a 20 MB
# file in s3rver and on an nginx origin, pulled with MEMFIT_DOWNLOAD_MAX_RATE
# at 4 MB/s; s3rver is killed a second into the transfer, the pull finishes
# from the origin with the right digest, and the log (INFO) has the start,
# progress, retry, fallback and done lines. Then presigned URLs, redacted in
# the log, and hf:// from a loopback Hub.
source "$(dirname "$0")/store_lib.bash"
start_s3 models
start_origin
make_file x.bin 20M
s3_put models x.bin "$T/www/x.bin"
origin_put "$T/www/x.bin"
want=$(sha "$T/www/x.bin")

echo "== a bad MEMFIT_DOWNLOAD_MAX_RATE is refused"
if MEMFIT_DOWNLOAD_MAX_RATE=fast pull "$ORIGIN/x.bin" >/dev/null 2>"$T/err"; then
    fail "MEMFIT_DOWNLOAD_MAX_RATE=fast accepted"
fi
grep -q "MEMFIT_DOWNLOAD_MAX_RATE" "$T/err" || fail "message: $(cat "$T/err")"

echo "== s3rver killed mid-download at 4 MB/s: the origin finishes the file"
MEMFIT_LOG_LEVEL=info MEMFIT_DOWNLOAD_MAX_RATE=4MB pull --attempts 2 "s3://models/x.bin" \
    "$ORIGIN/x.bin" >"$T/out" 2>"$T/log" &
puller=$!
partial_size() { find "$MEMFIT_CACHE_DIR/partial" -type f -regex '.*/[0-9a-f]*' -printf '%s\n' | sort -n | tail -1; }
partial_grew() { [[ $(partial_size) -gt 2000000 ]]; }
wait_for partial_grew || fail "the S3 download did not start: $(cat "$T/log")"
stop_s3
echo "s3rver killed after $(partial_size) bytes"
wait "$puller" || fail "pull: $(cat "$T/log")"
cat "$T/log"
[[ $(basename "$(cat "$T/out")") == "$want" ]] || fail "digest: $(cat "$T/out")"
[[ $(sha "$(cat "$T/out")") == "$want" ]] || fail "the cached file's sha256 differs"

s3=s3://models/x.bin
grep -qF "fetch x.bin from $s3: started (20.0 MiB)" "$T/log" || fail "no start line for S3"
grep -qE "^memfit: warn: $s3: .*\(attempt 1 of 2; retrying in [0-9]+ ms\)$" "$T/log" ||
    fail "no retry line"
grep -qE "^memfit: warn: $s3: .*; trying the next source, $ORIGIN/x.bin$" "$T/log" ||
    fail "no fallback line naming the origin"
grep -qF "fetch x.bin from $ORIGIN/x.bin: started (20.0 MiB)" "$T/log" || fail "no origin start line"
n=$(grep -cE "fetch x.bin from $ORIGIN/x.bin: [0-9]+% \([0-9.]+ MiB of 20.0 MiB, [0-9.]+ [KM]iB/s\)$" "$T/log" || true)
[[ $n -ge 3 ]] || fail "$n progress lines for the origin"
done_line=$(grep -E "fetch x.bin from $ORIGIN/x.bin: done, 20.0 MiB in [0-9.]+ s \([0-9.]+ MiB/s\)$" "$T/log") ||
    fail "no done line"
secs=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<<"$done_line")
# 20 MB at 4 MB/s: about 5 s (the cap holds on loopback, which gives far more).
awk -v s="$secs" 'BEGIN { exit !(s >= 3.5 && s < 30) }' || fail "the cap did not hold: $secs s"
if grep -qF "$AWS_SECRET_ACCESS_KEY" "$T/log"; then fail "secret in the log"; fi

echo "== signed query strings stay out of the log"
make_file q.bin 64K
origin_put "$T/www/q.bin"
MEMFIT_LOG_LEVEL=info pull "$ORIGIN/missing.bin?X-Amz-Signature=SEKRIT1&token=SEKRIT2" \
    "$ORIGIN/q.bin?X-Amz-Credential=SEKRIT3&X-Amz-Signature=SEKRIT4" >/dev/null 2>"$T/log" ||
    fail "presigned pull: $(cat "$T/log")"
grep -q "trying the next source, $ORIGIN/q.bin?X-Amz-Credential=REDACTED" "$T/log" ||
    fail "fallback line: $(cat "$T/log")"
grep -q "fetch q.bin from $ORIGIN/q.bin?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED: done" \
    "$T/log" || fail "done line: $(cat "$T/log")"
if grep -q SEKRIT "$T/log"; then fail "a signature in the log: $(cat "$T/log")"; fi

echo "== hf:// from a loopback Hub"
start_hf
make_file small.bin 1M
make_file small2.bin 1M
hf_put org/repo "$T/www/small.bin"
cp "$T/www/small2.bin" "$T/small.bin"
hf_put org/repo "$T/small.bin" v2
out=$(MEMFIT_LOG_LEVEL=info pull "hf://org/repo/small.bin" 2>"$T/log") || fail "hf pull: $(cat "$T/log")"
cmp "$out" "$T/www/small.bin" || fail "hf content"
grep -qF "fetch small.bin from hf://org/repo/small.bin: done, 1.00 MiB in" "$T/log" ||
    fail "hf done line: $(cat "$T/log")"
out=$(pull "hf://org/repo/small.bin@v2") || fail "hf pull @v2"
cmp "$out" "$T/www/small2.bin" || fail "hf content @v2"
grep -q "GET /org/repo/resolve/v2/small.bin 200" "$REMOTE_DIR/hf/access.log" || fail "no resolve URL"
echo "PASS"
