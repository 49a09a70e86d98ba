#!/usr/bin/env bash
# s3:// sources: SigV4 signatures checked independently (a capturing server
# on loopback, the signature recomputed with botocore), then real downloads
# from s3rver, which checks signatures too, with credentials from the
# environment and from ~/.aws/credentials with AWS_PROFILE, path-style
# addressing on the endpoint override, a missing key, a wrong secret refused
# by the server, and no secret in any output.
source "$(dirname "$0")/store_lib.bash"
export AWS_REGION=eu-central-1 MEMFIT_LOG_LEVEL=trace
key=AKIAMEMFITTEST secret='wJalr/XUtnFEMI+K7MDENG' token='FwoGZXIvYXdzEJr//session=='

echo "== SigV4 signature, recomputed with botocore"
# botocore from the Python on PATH, or Debian's python3-botocore.
boto_py=
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import botocore' 2>/dev/null; then boto_py=$p; break; fi
done
if [[ -z $boto_py ]]; then
    fail "botocore is not installed (scripts/install-deps installs python3-botocore)"
else
    "$PY" "$HERE/sigv4_capture.py" --out "$T/capture.jsonl" --port-file "$T/sig.port" &
    server_pids+=($!)
    wait_for test -s "$T/sig.port" || fail "capture server did not start"
    ep="http://127.0.0.1:$(cat "$T/sig.port")"
    AWS_ENDPOINT_URL_S3="$ep" AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret \
        AWS_SESSION_TOKEN=$token pull "s3://my-bucket/dir/model v1+x.bin" >"$T/out" 2>"$T/err" ||
        fail "signed pull: $(cat "$T/err")"
    AWS_ENDPOINT_URL="$ep" AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret \
        AWS_SESSION_TOKEN=$token "$MEMFIT_BUILD/store_head" "s3://my-bucket/a/b.gguf" >/dev/null ||
        fail "signed HEAD"
    # A header read before download: a signed Range GET (the capture server
    # answers 200, so it reads as "Range ignored", exit 3).
    rc=0
    AWS_ENDPOINT_URL_S3="$ep" AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret \
        AWS_SESSION_TOKEN=$token "$MEMFIT_BUILD/store_range" "s3://my-bucket/a/c.gguf" 0 4096 >/dev/null 2>"$T/rerr" || rc=$?
    [[ $rc -eq 0 || $rc -eq 3 ]] || fail "signed range: $(cat "$T/rerr")"
    "$boto_py" "$HERE/sigv4_verify.py" "$T/capture.jsonl" "$ep" $key "$secret" "$token" \
        $AWS_REGION || fail "signature check"
    grep -q '"/my-bucket/dir/model%20v1%2Bx.bin"' "$T/capture.jsonl" || fail "path-style URL"
    for s in "$secret" "$token"; do
        if grep -qF "$s" "$T/err" "$T/out"; then fail "secret printed"; fi
    done
fi

echo "== s3rver (checks SigV4 signatures)"
S3_KEY=$key S3_SECRET=$secret
start_s3 models
make_file model.bin 3M
s3_put models qwen/model.bin "$T/www/model.bin"
# start_s3 exports the key and secret; each step below says what it uses.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
with_key() { AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_SESSION_TOKEN=$token "$@"; }

out=$(with_key pull "s3://models/qwen/model.bin" 2>"$T/err") || fail "pull from s3rver: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content"
# s3rver logs each request: the upload, then our signed GET.
[[ $(grep -c "qwen/model.bin 200" "$S3_LOG") -ge 2 ]] || fail "s3rver saw no GET: $(cat "$S3_LOG")"
with_key "$MEMFIT_BUILD/store_range" "s3://models/qwen/model.bin" 4096 1000 >"$T/range" \
    2>>"$T/err" || fail "range: $(cat "$T/err")"
cmp "$T/range" <(tail -c +4097 "$T/www/model.bin" | head -c 1000) || fail "range content"
with_key "$MEMFIT_BUILD/store_range" "s3://models/qwen/model.bin" -512 >"$T/range" 2>>"$T/err" ||
    fail "tail: $(cat "$T/err")"
cmp "$T/range" <(tail -c 512 "$T/www/model.bin") || fail "tail content"
size=$("$MEMFIT_BUILD/store_head" "s3://models/qwen/model.bin") || fail "head (cached)"
[[ $size -eq $((3 * 1024 * 1024)) ]] || fail "size $size"
size=$(with_key "$MEMFIT_BUILD/store_head" "s3://models/qwen/other.bin" 2>&1) && fail "head of a missing key: $size"

echo "== a wrong secret is refused by the server"
# Not from the cache: the server must see the request.
"$MEMFIT_BIN" cache rm "s3://models/qwen/model.bin" >/dev/null
if AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY="${secret}x" pull --attempts 1 \
    "s3://models/qwen/model.bin" >/dev/null 2>"$T/err2"; then
    fail "a wrong secret was accepted"
fi
grep -q "HTTP 403 (access denied; check the AWS credentials)" "$T/err2" ||
    fail "wrong secret message: $(cat "$T/err2")"
grep -q "qwen/model.bin 403" "$S3_LOG" || fail "s3rver did not refuse: $(cat "$S3_LOG")"
cat "$T/err2" >>"$T/err"

echo "== credentials from ~/.aws/credentials with AWS_PROFILE"
mkdir -p "$HOME/.aws"
printf '[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[test]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' \
    "$key" "$secret" "$token" >"$HOME/.aws/credentials"
if pull --attempts 1 "s3://models/qwen/model.bin" >/dev/null 2>"$T/err2"; then
    fail "the [default] profile's wrong key was accepted"
fi
cat "$T/err2" >>"$T/err"
out=$(AWS_PROFILE=test pull --name qwen "s3://models/qwen/model.bin" 2>>"$T/err") ||
    fail "pull with profile: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content (profile)"

echo "== missing key"
if AWS_PROFILE=test pull --attempts 2 "s3://models/qwen/missing.bin" 2>"$T/err2"; then
    fail "missing key"
fi
grep -q "not found" "$T/err2" || fail "missing message: $(cat "$T/err2")"
cat "$T/err2" >>"$T/err"
for s in "$secret" "$token"; do
    if grep -qF "$s" "$T/err"; then fail "secret printed"; fi
    if grep -rqF "$s" "$MEMFIT_CACHE_DIR"; then fail "secret stored"; fi
done
echo "PASS"
