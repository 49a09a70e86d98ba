#!/usr/bin/env bash
# Browser safety of `memfit serve` (docs/server.md): a matrix of Host, Origin
# and Content-Type headers over the routes. Bound to loopback, a Host that is
# not loopback nor --allow-host gets 403 host_not_allowed (DNS rebinding); a
# cross-site Origin not in --allow-origin gets 403 origin_not_allowed; an
# allowed one gets CORS headers and its OPTIONS preflight 204; a POST that is
# not application/json gets 415 (a cross-site form). --require-key with
# --host 0.0.0.0 and no key is a usage error (exit 2); without it, a warning.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
start_server "$TMP/vits_tiny.pth" --allow-host memfit.lan --allow-origin http://app.example:3000
make_request vits_tiny float "$FX/images/rgb8.png"
PORT=${URL##*:}
APP=http://app.example:3000
EVIL=http://evil.example

# The routes, as "METHOD PATH"; POSTs carry a JSON body (an empty one for
# cleanup and unload, the embedding request otherwise).
routes=("GET /health" "GET /api/models" "GET /api/memory" "GET /v1/models" "GET /metrics"
    "POST /api/cleanup" "POST /v1/embeddings" "POST /api/models/vits_tiny/unload")
req() { # METHOD PATH CURL_ARGS...: the status, the body in $TMP/body, headers in $TMP/headers
    local method=$1 path=$2
    shift 2
    local body=()
    if [[ $method == POST ]]; then
        if [[ $path == /v1/embeddings ]]; then body=(--data-binary @"$TMP/req.json"); else body=(--data-binary ''); fi
    fi
    code -D "$TMP/headers" -X "$method" "${body[@]}" "$@" "$URL$path"
}
json=(-H 'Content-Type: application/json')
for r in "${routes[@]}"; do
    read -r m p <<<"$r"
    ok=200
    check "$r: plain 200" test "$(req "$m" "$p" "${json[@]}")" = $ok
    check "$r: no CORS header without Origin" bash -c "! grep -qi '^Access-Control-Allow-Origin' '$TMP/headers'"
    for h in "localhost:$PORT" "127.0.0.1:$PORT" "127.3.2.1" "[::1]:$PORT" "LOCALHOST" "memfit.lan:8080" "memfit.lan"; do
        check "$r: Host $h 200" test "$(req "$m" "$p" "${json[@]}" -H "Host: $h")" = $ok
    done
    for h in "evil.example:8080" "evil.example" "localhost.evil.example" "128.0.0.1" "[::2]:$PORT" "localhost:x"; do
        check "$r: Host $h 403" test "$(req "$m" "$p" "${json[@]}" -H "Host: $h")" = 403
        check "$r: Host $h host_not_allowed" is_error host_not_allowed
    done
    check "$r: the error names the host" grep -q "evil.example" <(req "$m" "$p" "${json[@]}" -H "Host: evil.example:8080" >/dev/null; cat "$TMP/body")
    for o in "$EVIL" "null" "http://localhost:$PORT.evil.example" "https://127.0.0.1:$PORT" "http://app.example:3001"; do
        check "$r: Origin $o 403" test "$(req "$m" "$p" "${json[@]}" -H "Origin: $o")" = 403
        check "$r: Origin $o origin_not_allowed" is_error origin_not_allowed
    done
    check "$r: same origin 200" test "$(req "$m" "$p" "${json[@]}" -H "Origin: $URL")" = $ok
    check "$r: same origin, no CORS header" bash -c "! grep -qi '^Access-Control-Allow-Origin' '$TMP/headers'"
    check "$r: allowed origin 200" test "$(req "$m" "$p" "${json[@]}" -H "Origin: $APP")" = $ok
    check "$r: allowed origin echoed" grep -qi "^Access-Control-Allow-Origin: $APP" "$TMP/headers"
    check "$r: Vary: Origin" grep -qi "^Vary: Origin" "$TMP/headers"
    check "$r: preflight 204" test "$(code -D "$TMP/headers" -X OPTIONS -H "Origin: $APP" -H "Access-Control-Request-Method: $m" "$URL$p")" = 204
    check "$r: preflight methods" grep -qi "^Access-Control-Allow-Methods: .*$m" "$TMP/headers"
    check "$r: preflight headers" grep -qi "^Access-Control-Allow-Headers: Authorization, Content-Type" "$TMP/headers"
    check "$r: preflight max-age" grep -qi "^Access-Control-Max-Age: " "$TMP/headers"
    check "$r: preflight origin" grep -qi "^Access-Control-Allow-Origin: $APP" "$TMP/headers"
    check "$r: evil preflight 403" test "$(code -X OPTIONS -H "Origin: $EVIL" "$URL$p")" = 403
    check "$r: preflight with evil Host 403" test "$(code -X OPTIONS -H "Origin: $APP" -H "Host: evil.example:8080" "$URL$p")" = 403
    if [[ $m == POST ]]; then
        for t in "text/plain" "application/x-www-form-urlencoded" "multipart/form-data; boundary=x" "application/jsonx" ""; do
            check "$r: Content-Type '$t' 415" test "$(req "$m" "$p" -H "Content-Type: $t")" = 415
            check "$r: Content-Type '$t' unsupported_media_type" is_error unsupported_media_type
        done
        check "$r: curl -d (form) 415" test "$(code -d '{}' "$URL$p")" = 415
        for t in "application/json; charset=utf-8" "Application/JSON" "application/json;charset=UTF-8"; do
            check "$r: Content-Type '$t' $ok" test "$(req "$m" "$p" -H "Content-Type: $t")" = $ok
        done
    fi
done

# The attacks issue 15 names, with the exact headers.
for p in /api/cleanup /v1/embeddings; do
    check "$p: Origin $EVIL refused" test "$(req POST "$p" "${json[@]}" -H "Origin: $EVIL")" = 403
    check "$p: Host evil.example:8080 refused" test "$(req POST "$p" "${json[@]}" -H "Host: evil.example:8080")" = 403
    check "$p: text/plain refused" test "$(req POST "$p" -H 'Content-Type: text/plain')" = 415
done
check "unknown route still 404" test "$(code "$URL/nope")" = 404
check "wrong method still 405" test "$(post -X POST "$URL/health")" = 405
check "memfit cleanup sends JSON" bash -c "'$MEMFIT' cleanup --url '$URL' >/dev/null"
check "graceful stop" stop_server

# Environment lists; "*" allows any origin.
MEMFIT_ALLOW_HOSTS="a.lan, b.lan" MEMFIT_ALLOW_ORIGINS="http://x.example,http://y.example" start_server
check "MEMFIT_ALLOW_HOSTS b.lan" test "$(code -H 'Host: b.lan:1' "$URL/api/models")" = 200
check "MEMFIT_ALLOW_HOSTS: c.lan 403" test "$(code -H 'Host: c.lan' "$URL/api/models")" = 403
check "MEMFIT_ALLOW_ORIGINS y" test "$(code -D "$TMP/headers" -H 'Origin: http://y.example' "$URL/api/models")" = 200
check "MEMFIT_ALLOW_ORIGINS y echoed" grep -qi "^Access-Control-Allow-Origin: http://y.example" "$TMP/headers"
check "MEMFIT_ALLOW_ORIGINS: z 403" test "$(code -H 'Origin: http://z.example' "$URL/api/models")" = 403
stop_server
start_server --allow-origin '*'
check "--allow-origin '*'" test "$(code -D "$TMP/headers" -H "Origin: $EVIL" "$URL/api/models")" = 200
check "--allow-origin '*' echoes the origin" grep -qi "^Access-Control-Allow-Origin: $EVIL" "$TMP/headers"
stop_server

# Not loopback: no Host check (any name may reach it), Origin still checked, a warning at start.
start_server --host 0.0.0.0
check "0.0.0.0: warning names the risk" grep -q "anyone who can reach 0.0.0.0:${URL##*:} can run and unload models" "$TMP/err"
check "0.0.0.0: any Host" test "$(code -H 'Host: memfit.example.com' "$URL/api/models")" = 200
check "0.0.0.0: evil Origin 403" test "$(code -H "Origin: $EVIL" "$URL/api/models")" = 403
stop_server
MEMFIT_API_KEY=k start_server --host 0.0.0.0 --require-key
check "0.0.0.0 with a key: no warning" bash -c "! grep -q 'anyone who can reach' '$TMP/err'"
check "0.0.0.0 with a key: key needed" test "$(code "$URL/api/models")" = 401
check "0.0.0.0 with a key: key works" test "$(code -H 'Authorization: Bearer k' "$URL/api/models")" = 200
stop_server
rc=0
"$MEMFIT" serve --port 0 --host 0.0.0.0 --require-key >"$TMP/rk.out" 2>"$TMP/rk.err" || rc=$?
check "--require-key without a key: exit 2" test "$rc" = 2
check "--require-key: the message" grep -q "0.0.0.0 is not a loopback address and MEMFIT_API_KEY is not set" "$TMP/rk.err"
rc=0
timeout 5 "$MEMFIT" serve --port 0 --host 127.0.0.1 --require-key >"$TMP/rk.out" 2>"$TMP/rk.err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/rk.out" && break; sleep 0.05; done
check "--require-key on loopback starts" grep -q "listening on" "$TMP/rk.out"
kill -TERM $pid 2>/dev/null
wait $pid || true
finish
