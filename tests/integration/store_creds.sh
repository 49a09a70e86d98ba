#!/usr/bin/env bash
# Where credentials come from, end to end: real `memfit pull`s from s3rver
# (which checks SigV4 signatures) with temporary keys handed out by loopback
# stand-ins of the container endpoint (ECS / EKS Pod Identity, the
# Authorization token from a file and from the environment) and of STS
# AssumeRoleWithWebIdentity (EKS IRSA; the stand-in checks Action, Version,
# RoleArn, RoleSessionName and the token file's content); keys, region and
# endpoint from ~/.aws/config ([profile NAME], a [services] section); one
# credentials fetch for all attempts of a pull; refusals named with their
# source; the Hub token read from $HF_HOME/token and HF_TOKEN_PATH; and no
# secret in any output. s3rver does not check session tokens: that the token
# is sent (and signed) is checked on a capturing server.
source "$(dirname "$0")/store_lib.bash"
export MEMFIT_LOG_LEVEL=trace
unset AWS_CONFIG_FILE AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME
unset AWS_ENDPOINT_URL_STS AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI
unset AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE HF_TOKEN_PATH HF_HOME
unset XDG_CACHE_HOME AWS_IGNORE_CONFIGURED_ENDPOINT_URLS

c_key=ASIACONTAINER c_secret='cOnTaInEr/secret+1' token='IQoJb3JpZ2luX2VjEJr//temporary=='
w_key=ASIAWEBIDENTITY w_secret='wEb/IdEnTiTy+secret2'
auth='container-auth-Zx9'
role='arn:aws:iam::123456789012:role/memfit-reader'
printf '%s\n' "$auth" >"$T/container-token"
printf 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZW1maXQifQ.c2lnbmF0dXJl\n' >"$T/web-token"
secrets=("$c_secret" "$w_secret" "$token" "$auth" "eyJhbGciOiJSUzI1NiJ9" "cOnFiG/secret" "hf_FileTokenSecret")

"$PY" "$HERE/creds_server.py" --port-file "$T/creds.port" --log "$T/creds.log" \
    --access-key $c_key --secret "$c_secret" --sts-access-key $w_key --sts-secret "$w_secret" \
    --token "$token" --container-auth "$auth" --role-arn "$role" --web-token-file "$T/web-token" &
server_pids+=($!)
wait_for test -s "$T/creds.port" || fail "credentials stand-in did not start"
CREDS="http://127.0.0.1:$(cat "$T/creds.port")"
touch "$T/creds.log"

S3_EXTRA_KEYS="$c_key:$c_secret $w_key:$w_secret cfgkey:cOnFiG/secret" start_s3 models
make_file model.bin 1M
s3_put models m/model.bin "$T/www/model.bin"
# start_s3 exports its own key pair: every step below says where its keys come from.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
requests() { grep -c "$1" "$T/creds.log" || true; }
fresh() { "$MEMFIT_BIN" cache rm "s3://models/m/model.bin" >/dev/null 2>&1 || true; }

echo "== container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI, token file)"
export AWS_CONTAINER_CREDENTIALS_FULL_URI="$CREDS/container/creds"
export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$T/container-token"
out=$(pull "s3://models/m/model.bin" 2>"$T/err") || fail "pull with container credentials: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content (container)"
[[ $(requests "GET /container/creds ok") -eq 1 ]] || fail "container endpoint: $(cat "$T/creds.log")"
grep -q "AWS credentials from the container endpoint, valid for" "$T/err" || fail "no log line"
cat "$T/err" >>"$T/all.err"

echo "== the token from AWS_CONTAINER_AUTHORIZATION_TOKEN; a wrong one is refused"
unset AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
fresh
AWS_CONTAINER_AUTHORIZATION_TOKEN="$auth" pull "s3://models/m/model.bin" >/dev/null 2>"$T/err" ||
    fail "pull with the token in the environment: $(cat "$T/err")"
cat "$T/err" >>"$T/all.err"
fresh
if AWS_CONTAINER_AUTHORIZATION_TOKEN="wrong-token" pull "s3://models/m/model.bin" >/dev/null 2>"$T/err"; then
    fail "a wrong container token was accepted"
fi
grep -q "AWS credentials from the container endpoint $CREDS/container/creds (AWS_CONTAINER_CREDENTIALS_FULL_URI): HTTP 401: AccessDenied: bad token" "$T/err" ||
    fail "refusal message: $(cat "$T/err")"
grep -q "refused: bad Authorization" "$T/creds.log" || fail "the stand-in saw no wrong token"
cat "$T/err" >>"$T/all.err"

echo "== one credentials fetch for every attempt of a pull"
export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$T/container-token"
before=$(requests "GET /container/creds ok")
if AWS_ENDPOINT_URL_S3="http://127.0.0.1:$(free_port)" \
    pull --attempts 3 "s3://models/m/model.bin" >/dev/null 2>"$T/err"; then
    fail "a pull from a closed port worked"
fi
[[ $(grep -c "attempt [12] of 3" "$T/err") -eq 2 ]] || fail "expected 3 attempts: $(cat "$T/err")"
[[ $(requests "GET /container/creds ok") -eq $((before + 1)) ]] ||
    fail "credentials fetched more than once: $(cat "$T/creds.log")"
cat "$T/err" >>"$T/all.err"

echo "== the session token is sent and signed (capturing server)"
"$PY" "$HERE/sigv4_capture.py" --out "$T/capture.jsonl" --port-file "$T/sig.port" &
server_pids+=($!)
wait_for test -s "$T/sig.port" || fail "capture server did not start"
AWS_ENDPOINT_URL_S3="http://127.0.0.1:$(cat "$T/sig.port")" pull "s3://bkt/x.bin" >/dev/null 2>"$T/err" ||
    fail "pull from the capture server: $(cat "$T/err")"
cat "$T/err" >>"$T/all.err"
grep -q "\"x-amz-security-token\", \"$token\"" "$T/capture.jsonl" || fail "no session token: $(cat "$T/capture.jsonl")"
grep -q "Credential=$c_key/[0-9]*/us-east-1/s3/aws4_request, SignedHeaders=[^\"]*x-amz-security-token" "$T/capture.jsonl" ||
    fail "token not signed: $(cat "$T/capture.jsonl")"
unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE

echo "== a container endpoint over plain http to another host is refused"
if AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.1/creds" pull --attempts 1 "s3://models/m/other.bin" \
    >/dev/null 2>"$T/err"; then
    fail "http to a non-loopback host was used"
fi
grep -q "AWS_CONTAINER_CREDENTIALS_FULL_URI 'http://192.0.2.1/creds': only https" "$T/err" ||
    fail "message: $(cat "$T/err")"

echo "== web identity (STS AssumeRoleWithWebIdentity)"
export AWS_WEB_IDENTITY_TOKEN_FILE="$T/web-token" AWS_ROLE_ARN="$role" AWS_ENDPOINT_URL_STS="$CREDS"
# Web identity comes before the container endpoint: this one would be refused.
export AWS_CONTAINER_CREDENTIALS_FULL_URI="$CREDS/container/creds"
fresh
out=$(pull "s3://models/m/model.bin" 2>"$T/err") || fail "pull with web identity: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content (web identity)"
grep -q "POST / ok session=memfit-[0-9]*$" "$T/creds.log" || fail "STS stand-in: $(cat "$T/creds.log")"
grep -q "assumed role $role with web identity" "$T/err" || fail "no log line: $(cat "$T/err")"
cat "$T/err" >>"$T/all.err"
fresh
AWS_ROLE_SESSION_NAME=pod-7f9 pull "s3://models/m/model.bin" >/dev/null 2>"$T/err" ||
    fail "pull with a session name: $(cat "$T/err")"
grep -q "POST / ok session=pod-7f9$" "$T/creds.log" || fail "session name: $(cat "$T/creds.log")"
cat "$T/err" >>"$T/all.err"
fresh
if AWS_ROLE_ARN="arn:aws:iam::123456789012:role/other" pull --attempts 1 "s3://models/m/model.bin" \
    >/dev/null 2>"$T/err"; then
    fail "STS refused the role but the pull worked"
fi
grep -q "AWS credentials from web identity (STS $CREDS/ from AWS_ENDPOINT_URL_STS, role arn:aws:iam::123456789012:role/other): HTTP 403: AccessDenied: Not authorized" "$T/err" ||
    fail "STS refusal message: $(cat "$T/err")"
cat "$T/err" >>"$T/all.err"
printf 'not-the-token\n' >"$T/web-token2"
if AWS_WEB_IDENTITY_TOKEN_FILE="$T/web-token2" pull --attempts 1 "s3://models/m/model.bin" \
    >/dev/null 2>"$T/err"; then
    fail "STS refused the token but the pull worked"
fi
grep -q "HTTP 400: InvalidIdentityToken" "$T/err" || fail "token refusal: $(cat "$T/err")"
unset AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ENDPOINT_URL_STS AWS_CONTAINER_CREDENTIALS_FULL_URI

echo "== keys, region and endpoint from ~/.aws/config"
unset AWS_ENDPOINT_URL_S3 AWS_REGION
mkdir -p "$HOME/.aws"
cat >"$HOME/.aws/config" <<EOF
[default]
region = us-west-2

[profile   lab]
region = eu-north-1
aws_access_key_id = cfgkey
aws_secret_access_key = cOnFiG/secret
services = lab-s3

[services lab-s3]
s3 =
  endpoint_url = $S3_ENDPOINT
EOF
fresh
out=$(AWS_PROFILE=lab pull "s3://models/m/model.bin" 2>"$T/err") ||
    fail "pull with the config file: $(cat "$T/err")"
cmp "$out" "$T/www/model.bin" || fail "content (config)"
grep -q "AWS credentials from the AWS config file" "$T/err" || fail "origin not logged: $(cat "$T/err")"
cat "$T/err" >>"$T/all.err"
# The region signed with is the profile's.
sed -i "s|endpoint_url = .*|endpoint_url = http://127.0.0.1:$(cat "$T/sig.port")|" "$HOME/.aws/config"
AWS_PROFILE=lab pull "s3://bkt/y.bin" >/dev/null 2>"$T/err" || fail "pull to capture: $(cat "$T/err")"
grep -q "Credential=cfgkey/[0-9]*/eu-north-1/s3/aws4_request" "$T/capture.jsonl" ||
    fail "region from the config file: $(tail -1 "$T/capture.jsonl")"
# The credentials file comes before the config file; the environment before both.
printf '[lab]\naws_access_key_id = wrongkey\naws_secret_access_key = wrong\n' >"$HOME/.aws/credentials"
AWS_PROFILE=lab pull "s3://bkt/z.bin" >/dev/null 2>"$T/err" || fail "pull: $(cat "$T/err")"
grep -q "Credential=wrongkey/" "$T/capture.jsonl" || fail "credentials file first"
AWS_ACCESS_KEY_ID=envkey AWS_SECRET_ACCESS_KEY=envsecret AWS_PROFILE=lab pull "s3://bkt/w.bin" \
    >/dev/null 2>"$T/err" || fail "pull: $(cat "$T/err")"
grep -q "Credential=envkey/" "$T/capture.jsonl" || fail "environment first"
rm -f "$HOME/.aws/credentials" "$HOME/.aws/config"

echo "== the Hub token from \$HF_HOME/token and HF_TOKEN_PATH"
start_hf
make_file w.bin 100K
hf_put org/repo "$T/www/w.bin"
export HF_HOME="$T/hf-home"
mkdir -p "$HF_HOME"
printf 'hf_FileTokenSecret\n' >"$HF_HOME/token"
pull "hf://org/repo/w.bin" >/dev/null 2>"$T/err" || fail "hub pull: $(cat "$T/err")"
grep -q "GET /org/repo/resolve/main/w.bin 200 .*auth=Bearer hf_FileTokenSecret sent" "$REMOTE_DIR/hf/access.log" ||
    fail "token from the file not sent: $(cat "$REMOTE_DIR/hf/access.log")"
cat "$T/err" >>"$T/all.err"
printf 'hf_OtherFile' >"$T/other-token"
"$MEMFIT_BIN" cache rm "hf://org/repo/w.bin" >/dev/null
HF_TOKEN_PATH="$T/other-token" pull "hf://org/repo/w.bin" >/dev/null 2>"$T/err" ||
    fail "hub pull (HF_TOKEN_PATH): $(cat "$T/err")"
grep -q "auth=Bearer hf_OtherFile sent" "$REMOTE_DIR/hf/access.log" || fail "HF_TOKEN_PATH not used"
"$MEMFIT_BIN" cache rm "hf://org/repo/w.bin" >/dev/null
HF_TOKEN=hf_FromEnv pull "hf://org/repo/w.bin" >/dev/null 2>"$T/err" || fail "hub pull (HF_TOKEN)"
grep -q "auth=Bearer hf_FromEnv sent" "$REMOTE_DIR/hf/access.log" || fail "HF_TOKEN does not win"
"$MEMFIT_BIN" cache rm "hf://org/repo/w.bin" >/dev/null
printf 'hf_bad\x1btoken\n' >"$HF_HOME/token"
if pull --attempts 1 "hf://org/repo/w.bin" >/dev/null 2>"$T/err"; then
    fail "a token with a control character was sent"
fi
grep -q "Hugging Face token file: $HF_HOME/token: control character" "$T/err" ||
    fail "message: $(cat "$T/err")"
cat "$T/err" >>"$T/all.err"

echo "== no secret in any output or in the cache"
for s in "${secrets[@]}"; do
    if grep -qF -- "$s" "$T/all.err"; then fail "a secret was printed: ${s:0:6}..."; fi
    if grep -rqF -- "$s" "$MEMFIT_CACHE_DIR"; then fail "a secret was stored: ${s:0:6}..."; fi
done
echo "PASS"
