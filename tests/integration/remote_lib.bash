# Remote peers for integration tests (sourced, not a test itself: CTest runs
# *.sh), usable after store_lib.bash or lib.bash: an S3 server that checks
# SigV4 signatures, a loopback "Hugging Face Hub" and a plain HTTP origin, all
# on 127.0.0.1 with free ports, all stopped when the test exits.
#
#   start_s3 [BUCKET...]       s3rver (tools/npm, from scripts/install-deps --browser)
#                              with the key S3_KEY / secret S3_SECRET and the
#                              buckets (default: models); exports AWS_ENDPOINT_URL_S3,
#                              AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION;
#                              sets S3_ENDPOINT and S3_LOG. Skips (77) without it.
#                              S3_EXTRA_KEYS="KEY:SECRET ..." adds key pairs it accepts
#                              (e.g. the temporary ones a credentials stand-in hands out).
#   s3_put BUCKET KEY FILE     a SigV4-signed PUT (curl --aws-sigv4)
#   stop_s3                    SIGKILL of the S3 server (e.g. mid-download)
#   start_s3_slow RATE         a rate-limited proxy in front of it (a file smaller
#                              than the socket buffers is sent whole before a
#                              kill of the server could cut it); stop_s3_slow
#   start_hf                   nginx serving /ORG/REPO/resolve/REV/PATH (Range,
#                              ETag); exports HF_ENDPOINT. Skips without nginx.
#   hf_put ORG/REPO FILE [REV] FILE as PATH=basename (REV default main)
#   start_origin               nginx serving files; sets ORIGIN=http://127.0.0.1:PORT
#   origin_put FILE [NAME]     FILE as $ORIGIN/NAME (default basename)
#   free_port, wait_for CMD... (retries for up to 10 s)
# Logs: $REMOTE_DIR/s3rver.log, $REMOTE_DIR/{hf,origin}/access.log.

: "${MEMFIT_SOURCE:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
REMOTE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/memfit-remote.XXXXXX")
chmod 755 "$REMOTE_DIR"
_remote_pids=()
_remote_py=/usr/bin/python3
[[ -x $_remote_py ]] || _remote_py=python3

_remote_cleanup() {
    local p
    # TERM: an nginx master stops its workers (KILL would orphan them).
    for p in "${_remote_pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$REMOTE_DIR"
}
# Runs before the trap the test library installed (which removes its own directory).
_remote_prev_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
# shellcheck disable=SC2064
trap "_remote_cleanup; $_remote_prev_trap" EXIT

_remote_skip() {
    echo "SKIPPED: $*"
    exit 77
}
_remote_fail() {
    echo "FAIL: $*"
    exit 1
}
# A free TCP port on loopback.
free_port() {
    "$_remote_py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for CMD... : retries for up to 10 s.
wait_for() {
    local _
    for _ in $(seq 1 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# ---- S3 ----------------------------------------------------------------------

: "${S3_KEY:=AKIAMEMFITTEST}"
: "${S3_SECRET:=wJalr/XUtnFEMI+K7MDENG/remote}"
_s3_pid=

start_s3() {
    local mod="${MEMFIT_NPM_DIR:-$MEMFIT_SOURCE/tools/npm}/node_modules/@20minutes/s3rver"
    local node
    node=$(command -v node || command -v nodejs || true)
    [[ -n $node ]] || _remote_skip "node is not installed: the S3 server s3rver needs it (scripts/install-deps --browser)"
    [[ -f $mod/package.json ]] ||
        _remote_skip "s3rver is not installed in tools/npm (scripts/install-deps --browser installs it)"
    local buckets=("$@")
    [[ ${#buckets[@]} -gt 0 ]] || buckets=(models)
    mkdir -p "$REMOTE_DIR/s3"
    S3_LOG=$REMOTE_DIR/s3rver.log
    rm -f "$REMOTE_DIR/s3.port"
    # The only key pair s3rver knows is ours (its built-in S3RVER one is revoked),
    # so a request signed with anything else gets 403.
    "$node" -e '
const [mod, dir, portFile, key, secret, ...buckets] = process.argv.slice(1);
const S3rver = require(mod);
const account = require(mod + "/lib/models/account");
account.DUMMY_ACCOUNT.revokeAccessKey("S3RVER");
account.DUMMY_ACCOUNT.createKeyPair(key, secret);
for (const pair of (process.env.S3_EXTRA_KEYS || "").split(" ").filter(Boolean)) {
    const i = pair.indexOf(":");
    account.DUMMY_ACCOUNT.createKeyPair(pair.slice(0, i), pair.slice(i + 1));
}
const server = new S3rver({address: "127.0.0.1", port: 0, directory: dir, silent: false,
    vhostBuckets: false, configureBuckets: buckets.map((name) => ({name, configs: []}))});
server.run((err, addr) => {
    if (err) { console.error(err); process.exit(1); }
    require("fs").writeFileSync(portFile + ".tmp", String(addr.port));
    require("fs").renameSync(portFile + ".tmp", portFile);
});' "$mod" "$REMOTE_DIR/s3" "$REMOTE_DIR/s3.port" "$S3_KEY" "$S3_SECRET" "${buckets[@]}" \
        >"$S3_LOG" 2>&1 &
    _s3_pid=$!
    _remote_pids+=("$_s3_pid")
    wait_for test -s "$REMOTE_DIR/s3.port" || _remote_fail "s3rver did not start: $(cat "$S3_LOG")"
    S3_ENDPOINT="http://127.0.0.1:$(cat "$REMOTE_DIR/s3.port")"
    export AWS_ENDPOINT_URL_S3=$S3_ENDPOINT
    export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET
    export AWS_REGION=${AWS_REGION:-us-east-1}
}

s3_put() {
    local bucket=$1 key=$2 file=$3 path hash
    [[ -n $_s3_pid ]] || _remote_fail "s3_put before start_s3"
    path=$("$_remote_py" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/~"))' "$key")
    hash=$(sha256sum "$file" | cut -d' ' -f1)
    curl -sS --fail-with-body -o "$REMOTE_DIR/s3_put.out" \
        --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$S3_KEY:$S3_SECRET" \
        -H "x-amz-content-sha256: $hash" -T "$file" "$S3_ENDPOINT/$bucket/$path" ||
        _remote_fail "s3_put $bucket/$key: $(cat "$REMOTE_DIR/s3_put.out" 2>/dev/null)"
}

stop_s3() {
    [[ -n $_s3_pid ]] || return 0
    kill -KILL "$_s3_pid" 2>/dev/null || true
    wait "$_s3_pid" 2>/dev/null || true
    _s3_pid=
}

# ---- nginx (the Hub and the origin) ------------------------------------------

# _remote_nginx NAME ROOT [DIRECTIVES [single]]: nginx serving ROOT (DIRECTIVES
# added to its server block; "single": one process, no master, so one SIGKILL
# stops it); sets _remote_port and _remote_pid. Access log:
# $REMOTE_DIR/NAME/access.log ("METHOD URI STATUS range=... sent=...").
_remote_nginx() {
    local name=$1 root=$2 extra=${3:-} procs="worker_processes 1;" nginx port user_line="" conf
    [[ ${4:-} == single ]] && procs="master_process off;"
    nginx=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $nginx ]] || _remote_skip "nginx is not installed (scripts/install-deps)"
    port=$(free_port)
    [[ $(id -u) -eq 0 ]] && user_line="user root;"
    conf=$REMOTE_DIR/$name
    mkdir -p "$conf" "$root"
    cat >"$conf/nginx.conf" <<CONF
$user_line
$procs
daemon off;
pid $conf/nginx.pid;
error_log $conf/error.log;
events { worker_connections 128; }
http {
    log_format t '\$request_method \$uri \$status range=\$http_range if_range=\$http_if_range auth=\$http_authorization sent=\$body_bytes_sent';
    access_log $conf/access.log t;
    client_body_temp_path $conf/body;
    proxy_temp_path $conf/proxy;
    fastcgi_temp_path $conf/fastcgi;
    uwsgi_temp_path $conf/uwsgi;
    scgi_temp_path $conf/scgi;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port;
        root $root;
        location = /.ping { return 200 ok; }
        $extra
    }
}
CONF
    "$nginx" -p "$conf" -c "$conf/nginx.conf" -e "$conf/error.log" &
    _remote_pid=$!
    _remote_pids+=($!)
    wait_for curl -sf -o /dev/null "http://127.0.0.1:$port/.ping" ||
        _remote_fail "nginx ($name) did not start: $(cat "$conf/error.log" 2>/dev/null)"
    _remote_port=$port
}

# start_s3_slow RATE: a proxy in front of the S3 server (start_s3 first) that
# sends at most RATE (nginx's limit_rate: 100k, 1m) a second and can be
# killed mid-transfer with stop_s3_slow (one process: no worker survives it);
# AWS_ENDPOINT_URL_S3 points at it. The Host header passes through, so
# signatures still verify at the S3 server.
_s3_slow_pid=
start_s3_slow() {
    [[ -n $_s3_pid ]] || _remote_fail "start_s3_slow before start_s3"
    _remote_nginx s3-slow "$REMOTE_DIR/s3-slow-root" "location / { proxy_pass $S3_ENDPOINT; \
proxy_set_header Host \$http_host; limit_rate $1; }" single
    _s3_slow_pid=$_remote_pid
    export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$_remote_port"
}

stop_s3_slow() {
    [[ -n $_s3_slow_pid ]] || return 0
    kill -KILL "$_s3_slow_pid" 2>/dev/null || true
    wait "$_s3_slow_pid" 2>/dev/null || true
    _s3_slow_pid=
}

start_hf() {
    _remote_nginx hf "$REMOTE_DIR/hf-root"
    export HF_ENDPOINT="http://127.0.0.1:$_remote_port"
}

hf_put() {
    local repo=$1 file=$2 rev=${3:-main}
    [[ $repo == */* ]] || _remote_fail "hf_put: ORG/REPO expected, got '$repo'"
    local dir="$REMOTE_DIR/hf-root/$repo/resolve/$rev"
    mkdir -p "$dir"
    cp "$file" "$dir/$(basename "$file")"
}

start_origin() {
    _remote_nginx origin "$REMOTE_DIR/origin-root"
    # shellcheck disable=SC2034 # for the test that sources this
    ORIGIN="http://127.0.0.1:$_remote_port"
}

origin_put() {
    local file=$1 name=${2:-$(basename "$1")}
    mkdir -p "$(dirname "$REMOTE_DIR/origin-root/$name")"
    cp "$file" "$REMOTE_DIR/origin-root/$name"
}
