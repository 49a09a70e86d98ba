# Shared by tests/integration/store_*.sh (not a test itself: CTest runs *.sh).
# A temp directory, a private cache, and servers on loopback that are always
# stopped on exit (trap EXIT): nginx, the fault-injecting server, and those of
# remote_lib.bash (s3rver, a loopback Hub, a plain origin).
set -euo pipefail
: "${MEMFIT_BIN:?MEMFIT_BIN must name the memfit binary}"
: "${MEMFIT_SOURCE:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${MEMFIT_BUILD:=$(dirname "$MEMFIT_BIN")}"
HERE="$MEMFIT_SOURCE/tests/integration"

T=$(mktemp -d /tmp/memfit-store-test.XXXXXX)
chmod 755 "$T"
mkdir -p "$T/www"
server_pids=()
cleanup() {
    local p
    for p in "${server_pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    chmod -R u+w "$T" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

export MEMFIT_CACHE_DIR="$T/cache"
unset LOCAL_CACHE_DIR MEMFIT_OFFLINE HF_HUB_OFFLINE MEMFIT_CACHE_MAX_GB HF_TOKEN HF_ENDPOINT
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION
unset AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SHARED_CREDENTIALS_FILE
export HOME="$T/home"
mkdir -p "$HOME"

# Servers written against the standard library run on the system Python when there is one.
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3

fail() {
    echo "FAIL: $*"
    exit 1
}
skip() {
    echo "SKIPPED: $*"
    exit 77
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
# free_port, wait_for, and the S3 server, Hub and origin helpers (after the trap above).
source "$HERE/remote_lib.bash"

# Makes a file of SIZE (e.g. 1M) of random bytes under www/.
make_file() { head -c "$2" /dev/urandom >"$T/www/$1"; }

# The fault-injecting server: sets FAULTY=http://127.0.0.1:PORT; log in $T/faulty.log.
start_faulty() {
    "$PY" "$HERE/faulty_server.py" --root "$T/www" --log "$T/faulty.log" \
        --port-file "$T/faulty.port" &
    server_pids+=($!)
    wait_for test -s "$T/faulty.port" || fail "faulty_server did not start"
    FAULTY="http://127.0.0.1:$(cat "$T/faulty.port")"
    touch "$T/faulty.log"
}

# nginx in the foreground with its files in $T/nginx: sets NGINX=http://127.0.0.1:PORT.
# /slow/F is F at 3 MB/s (full speed for Range requests); /rate/F is F at 100 MB/s;
# /norange/F is F from a server that ignores Range (200 with the whole file).
start_nginx() {
    local nginx
    nginx=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x "$nginx" ]] || skip "nginx is not installed (scripts/install-deps)"
    local port user_line=""
    port=$(free_port)
    [[ $(id -u) -eq 0 ]] && user_line="user root;"
    mkdir -p "$T/nginx"
    cat >"$T/nginx/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 128; }
http {
    log_format t '\$request_method \$uri \$status range=\$http_range if_range=\$http_if_range sent=\$body_bytes_sent';
    access_log $T/nginx/access.log t;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$port;
        root $T/www;
        location /slow/ {
            alias $T/www/;
            set \$limit_rate 3m;
            if (\$http_range) { set \$limit_rate 0; }
        }
        location /rate/ {
            alias $T/www/;
            limit_rate 100m;
        }
        location /norange/ {
            alias $T/www/;
            max_ranges 0;
        }
    }
}
CONF
    "$nginx" -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" &
    server_pids+=($!)
    NGINX="http://127.0.0.1:$port"
    echo ok >"$T/www/ping"
    wait_for curl -sf -o /dev/null "$NGINX/ping" ||
        fail "nginx did not start: $(cat "$T/nginx/error.log" 2>/dev/null)"
}

pull() { "$MEMFIT_BIN" pull "$@"; }
