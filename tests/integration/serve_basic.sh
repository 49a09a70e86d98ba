#!/usr/bin/env bash
# Integration test of `memfit serve` without running a model: --port 0 and the
# "listening on" line, every route's answer and status, OpenAI-style errors
# (malformed JSON, wrong types, unknown model, body too large, unknown route,
# wrong method), the API key (on every route but /health), models of a family
# whose file is missing (listed, refused on use with the path), an unknown
# family (refused at start, naming the families), SIGHUP reload (model added/removed),
# a malformed-request corpus over a raw socket, and SIGTERM -> exit 0.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

for cmd in serve models; do
    "$MEMFIT" "$cmd" --help >"$TMP/help"
    for fam in dinov2 qwen2 llama; do
        check "$cmd --help names family $fam" grep -q "^  $fam " "$TMP/help"
    done
done
cat >"$TMP/bad.yaml" <<'Y'
models:
  - name: dino
    family: clip
    sources: [/nonexistent/dino.gguf]
Y
rc=0
"$MEMFIT" serve --port 0 --manifest "$TMP/bad.yaml" >"$TMP/bad.out" 2>"$TMP/bad.err" || rc=$?
check "unknown family: no start" test "$rc" = 1
check "unknown family: named with the families" grep -q "unknown family 'clip' (families: dinov2" "$TMP/bad.err"
cat >"$TMP/m.yaml" <<'Y'
budget: 64MB
models:
  - name: dino
    family: dinov2
    sources: [/nonexistent/dino.gguf]
Y
cp "$MEMFIT_FIXTURES/dinov2/vits_tiny.pth" "$TMP/extra.pth"
start_server --manifest "$TMP/m.yaml" "$TMP/extra.pth"
check "GET /health 200" test "$(code "$URL/health")" = 200
check "GET /ready 200" test "$(code "$URL/ready")" = 200
check "GET /v1/models lists both" test "$(code "$URL/v1/models")" = 200
check "/v1/models ids" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert sorted(m['id'] for m in d['data'])==['dino','extra'], d" "$TMP/body"
check "GET /api/models 200" test "$(code "$URL/api/models")" = 200
check "/api/models budget 64MB" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['budget']['size_bytes']==64000000 and d['data'][0]['state']=='unloaded', d" "$TMP/body"
check "GET /api/memory 200" test "$(code "$URL/api/memory")" = 200
check "/api/memory has report and budget" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['summary']['limit_bytes']>0 and d['budget']['size_bytes']==64000000 and d['process']['rss_bytes']>0" "$TMP/body"
check "GET /metrics 200" test "$(code "$URL/metrics")" = 200
check "/metrics has budget and model state" grep -q '^memfit_model_state{model="dino",state="unloaded"} 1$' "$TMP/body"
check "GET / dashboard" test "$(code "$URL/")" = 200
check "POST /api/cleanup 200" test "$(post -X POST "$URL/api/cleanup")" = 200
check "memfit cleanup --url" "$MEMFIT" cleanup --url "$URL" >/dev/null
check "unknown route 404" test "$(code "$URL/nope")" = 404
check "404 is OpenAI-style" is_error not_found
check "wrong method 405" test "$(post -X POST "$URL/health")" = 405
E="$URL/v1/embeddings"
check "malformed JSON 400" test "$(post -d '{"model":' "$E")" = 400
check "malformed JSON code" is_error invalid_json
check "wrong type 400" test "$(post -d '{"model":1,"input":"a"}' "$E")" = 400
check "wrong type code" is_error invalid_type
check "input array of numbers 400" test "$(post -d '{"model":"dino","input":[1,2]}' "$E")" = 400
check "missing input 400" test "$(post -d '{"model":"dino"}' "$E")" = 400
check "unknown model 404" test "$(post -d '{"model":"nope","input":"a"}' "$E")" = 404
check "unknown model code" is_error model_not_found
head -c 40000000 /dev/zero >"$TMP/big"
check "body too large 413" test "$(post --data-binary @"$TMP/big" "$E")" = 413
check "413 code" is_error body_too_large
check "load of a model whose file is missing refused" test "$(post -X POST "$URL/api/models/dino/load")" != 200
check "missing file named" grep -q "/nonexistent/dino.gguf" "$TMP/body"
check "unload unknown 404" test "$(post -X POST "$URL/api/models/nope/unload")" = 404
if command -v promtool >/dev/null; then
    curl -s "$URL/metrics" >"$TMP/metrics"
    check "promtool check metrics" promtool check metrics <"$TMP/metrics"
else
    echo "note: promtool absent (Debian package prometheus): exposition checked by test_server_request only"
fi
check "metrics count the 404s" grep -q 'memfit_http_requests_total{route="/v1/embeddings",code="404"} 1' <(curl -s "$URL/metrics")

# Malformed requests over a raw socket: each gets an answer or a close, none crashes.
"$PY" - "${URL#http://}" <<'PY' || fail "raw corpus"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
corpus = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 100000 + b"\r\n\r\n",
          b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"a\"",
          b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n",
          b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
          b"GET /api/models/%00/load HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\r\n", b"\x00\xff" * 50 + b"\r\n\r\n",
          b"POST /api/models//load HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"]
for c in corpus:
    s = socket.create_connection((host, int(port)), timeout=5)
    try:
        s.sendall(c)
        s.shutdown(socket.SHUT_WR)
        data = s.recv(65536)
        assert data == b"" or data.startswith(b"HTTP/1."), data[:80]
    except OSError:  # reset, broken pipe, or closed before our shutdown (ENOTCONN)
        pass
    s.close()
PY
check "alive after the corpus" test "$(code "$URL/health")" = 200

# SIGHUP: a new manifest adds a model and drops another.
cat >"$TMP/m.yaml" <<'Y'
budget: 64MB
models:
  - name: sam
    family: dinov2
    sources: [/nonexistent/sam.gguf]
Y
kill -HUP "$PID"
for _ in $(seq 50); do curl -s "$URL/v1/models" | grep -q '"sam"' && break; sleep 0.1; done
check "SIGHUP adds sam and removes dino" "$PY" -c "import json,urllib.request,sys; d=json.load(urllib.request.urlopen(sys.argv[1]+'/v1/models')); assert sorted(m['id'] for m in d['data'])==['extra','sam'], d" "$URL"
echo "models: [oops" >"$TMP/m.yaml"
kill -HUP "$PID"
sleep 0.3
check "a bad manifest on SIGHUP keeps serving" test "$(code "$URL/v1/models")" = 200
check "reload failure counted" grep -q 'memfit_manifest_reloads_total{result="error"} 1' <(curl -s "$URL/metrics")

kill -TERM "$PID"
wait "$PID"
check "SIGTERM exits 0" test $? -eq 0

# API key: required everywhere but /health, never logged.
MEMFIT_API_KEY=s3cret-key start_server
check "key: /health open" test "$(code "$URL/health")" = 200
check "key: /metrics 401 without" test "$(code "$URL/metrics")" = 401
check "key: 401 code" is_error invalid_api_key
check "key: wrong key 401" test "$(code -H 'Authorization: Bearer nope' "$URL/api/models")" = 401
check "key: right key 200" test "$(code -H 'Authorization: Bearer s3cret-key' "$URL/api/models")" = 200
check "key: scheme case-insensitive" test "$(code -H 'Authorization: bearer s3cret-key' "$URL/ready")" = 200
kill -INT "$PID"
wait "$PID"
check "SIGINT exits 0" test $? -eq 0
check "key never logged" bash -c "! grep -q s3cret-key '$TMP/err' '$TMP/out'"
check "usage error exits 2" bash -c "'$MEMFIT' serve --port 70000 2>/dev/null; test \$? -eq 2"
finish
