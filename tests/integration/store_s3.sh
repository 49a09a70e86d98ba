#!/usr/bin/env bash
# s3:// sources: SigV4 signatures checked independently (a capturing server
# on loopback, the signature recomputed with botocore), then real downloads
# from moto_server with credentials from the environment and from
# ~/.aws/credentials with AWS_PROFILE, path-style addressing on the
# endpoint override, a missing key, and no secret in any output.
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

echo "== moto_server"
command -v moto_server >/dev/null || skip "moto_server is not on PATH (pip install 'moto[server]')"
port=$(free_port)
moto_server -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
server_pids+=($!)
ep="http://127.0.0.1:$port"
wait_for curl -sf -o /dev/null "$ep/" || fail "moto did not start: $(cat "$T/moto.log")"
make_file model.bin 3M
python3 -c 'import botocore' 2>/dev/null || skip "botocore is needed to upload to moto"
python3 - "$ep" "$T/www/model.bin" <<'PY' || fail "upload to moto"
import sys
import botocore.session
client = botocore.session.get_session().create_client(
    "s3", region_name="us-east-1", endpoint_url=sys.argv[1],
    aws_access_key_id="x", aws_secret_access_key="y")
client.create_bucket(Bucket="models")
client.put_object(Bucket="models", Key="qwen/model.bin", Body=open(sys.argv[2], "rb").read())
PY
export AWS_ENDPOINT_URL_S3="$ep"

out=$(AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret pull "s3://models/qwen/model.bin" \
    2>"$T/err") || fail "pull from moto: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content"
AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret "$MEMFIT_BUILD/store_range" \
    "s3://models/qwen/model.bin" 4096 1000 >"$T/range" 2>"$T/err" || fail "range: $(cat "$T/err")"
cmp "$T/range" <(tail -c +4097 "$T/www/model.bin" | head -c 1000) || fail "range content"
AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret "$MEMFIT_BUILD/store_range" \
    "s3://models/qwen/model.bin" -512 >"$T/range" 2>"$T/err" || fail "tail: $(cat "$T/err")"
cmp "$T/range" <(tail -c 512 "$T/www/model.bin") || fail "tail content"
size=$("$MEMFIT_BUILD/store_head" "s3://models/qwen/model.bin") || fail "head (cached)"
[[ $size -eq $((3 * 1024 * 1024)) ]] || fail "size $size"

echo "== credentials from ~/.aws/credentials with AWS_PROFILE"
mkdir -p "$HOME/.aws"
printf '[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[test]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' \
    "$key" "$secret" "$token" >"$HOME/.aws/credentials"
"$MEMFIT_BIN" cache rm "s3://models/qwen/model.bin" >/dev/null
out=$(AWS_PROFILE=test pull --name qwen "s3://models/qwen/model.bin" 2>>"$T/err") ||
    fail "pull with profile: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content (profile)"

echo "== missing key"
if pull --attempts 2 "s3://models/qwen/missing.bin" 2>"$T/err2"; then fail "missing key"; fi
grep -q "not found" "$T/err2" || fail "missing message: $(cat "$T/err2")"
cat "$T/err2" >>"$T/err"
for s in "$secret" "$token"; do
    if grep -qF "$s" "$T/err"; then fail "secret printed"; fi
    if grep -rqF "$s" "$MEMFIT_CACHE_DIR"; then fail "secret stored"; fi
done
echo "PASS"
