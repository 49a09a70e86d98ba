#!/usr/bin/env bash
# `memfit ps`, `memfit load MODEL` and `memfit stop MODEL` against a running
# `memfit serve` (Ollama's habits): the table and --json, a load then an
# unload seen in both, errors (unknown model, no server, bad option), the API
# key and MEMFIT_URL; `memfit cleanup` through the same client; `memfit
# health [--ready]` alive, ready, not ready while draining, and unreachable.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
cd "$TMP" || exit 1

cat >"$TMP/m.yaml" <<Y
budget: 256MB
models:
  - name: dino
    family: dinov2
    sources: [$MEMFIT_FIXTURES/dinov2/vits_tiny.pth]
  - name: gone
    family: dinov2
    sources: [/nonexistent/gone.gguf]
Y
export MEMFIT_API_KEY=sekrit
start_server --manifest "$TMP/m.yaml"

"$MEMFIT" ps --url "$URL" >"$TMP/ps1"
check "ps: exit 0" test $? -eq 0
check "ps: a header row" grep -q "^NAME  *FAMILY  *STATE  *MEMORY" "$TMP/ps1"
check "ps: dino is listed unloaded" grep -Eq "^dino +dinov2 +unloaded" "$TMP/ps1"
check "ps: the budget line" grep -Eq "^budget 244 MiB: .* reserved, .* free" "$TMP/ps1"

"$MEMFIT" load dino --url "$URL" >"$TMP/load"
check "load dino: exit 0" test $? -eq 0
check "load dino: says ready with its memory" grep -Eq "^dino: ready, [0-9.]+ [KM]iB reserved" "$TMP/load"
"$MEMFIT" ps --url "$URL" >"$TMP/ps2"
check "ps after load: dino is ready with memory" grep -Eq "^dino +dinov2 +ready +[0-9.]+ [KM]iB" "$TMP/ps2"
MEMFIT_URL=$URL "$MEMFIT" ps --json >"$TMP/ps.json"
check "ps --json (via MEMFIT_URL): the server's list, dino ready" \
    $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); m={x["name"]: x for x in d["data"]}; assert m["dino"]["state"] == "ready" and m["dino"]["bytes"] > 0 and d["budget"]["reserved_bytes"] >= m["dino"]["bytes"]' "$TMP/ps.json"

"$MEMFIT" stop dino --url "$URL" >"$TMP/stop"
check "stop dino: exit 0, unloaded" grep -q "^dino: unloaded" "$TMP/stop"
"$MEMFIT" ps --url "$URL" >"$TMP/ps3"
check "ps after stop: dino is unloaded" grep -Eq "^dino +dinov2 +unloaded" "$TMP/ps3"

"$MEMFIT" load nosuch --url "$URL" >/dev/null 2>"$TMP/err1"
check "load of an unknown model: exit 1" test $? -eq 1
check "load of an unknown model: the server's reason" grep -q "nosuch" "$TMP/err1"
"$MEMFIT" load gone --url "$URL" >/dev/null 2>"$TMP/err2"
check "load of a model whose file is missing: exit 1" test $? -eq 1
check "load of a model whose file is missing: names the path" grep -q "/nonexistent/gone.gguf" "$TMP/err2"
MEMFIT_API_KEY=wrong "$MEMFIT" ps --url "$URL" >/dev/null 2>"$TMP/err3"
check "a wrong API key: exit 1" test $? -eq 1
check "a wrong API key: 401 said" grep -q "answered 401" "$TMP/err3"
check "cleanup through the shared client" bash -c "'$MEMFIT' cleanup --url '$URL' | grep -q '{'"

"$MEMFIT" load --url "$URL" >/dev/null 2>"$TMP/err4"
check "load without a model: usage error (exit 2)" test $? -eq 2
"$MEMFIT" ps --bogus >/dev/null 2>&1
check "ps --bogus: usage error (exit 2)" test $? -eq 2
"$MEMFIT" ps --url ftp://x >/dev/null 2>"$TMP/err5"
check "ps --url ftp://x: usage error (exit 2)" test $? -eq 2

"$MEMFIT" health "$URL" >"$TMP/h1"
check "health URL: exit 0" test $? -eq 0
check "health: prints ok" test "$(cat "$TMP/h1")" = ok
MEMFIT_URL=$URL "$MEMFIT" health --ready >"$TMP/h2"
check "health --ready (via MEMFIT_URL): exit 0" test $? -eq 0
check "health --ready: prints ready" test "$(cat "$TMP/h2")" = ready
"$MEMFIT" health --url "$URL" --json >"$TMP/h3"
check "health --json: the server's answer" \
    $PY -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"status": "ok"}' "$TMP/h3"
"$MEMFIT" health "$URL" extra >/dev/null 2>&1
check "health with two URLs: usage error (exit 2)" test $? -eq 2
"$MEMFIT" health --help >"$TMP/hhelp"
check "health --help: exit 0, the exit statuses" grep -q "2 unreachable" "$TMP/hhelp"
check "health is in memfit --help" bash -c "'$MEMFIT' --help | grep -Eq '^  health +'"
stop_server

# Draining (SIGTERM with --drain-delay): alive, yet not ready, with the reason.
start_server --manifest "$TMP/m.yaml" --drain-delay 5s
kill -TERM "$PID"
for _ in $(seq 100); do [[ $(code -H "Authorization: Bearer $MEMFIT_API_KEY" "$URL/ready") == 503 ]] && break; sleep 0.05; done
"$MEMFIT" health --ready "$URL" >"$TMP/h4" 2>"$TMP/h4.err"
check "health --ready while draining: exit 1" test $? -eq 1
check "health --ready while draining: the reason" grep -q "shutting down" "$TMP/h4"
"$MEMFIT" health "$URL" >"$TMP/h5"
check "health while draining: still alive (exit 0)" test $? -eq 0
"$MEMFIT" health --ready --json "$URL" >"$TMP/h6"
check "health --ready --json while draining: exit 1" test $? -eq 1
check "health --ready --json while draining: the error answer" \
    $PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["error"]["message"]' "$TMP/h6"
wait "$PID"
"$MEMFIT" health "$URL" >"$TMP/h7" 2>"$TMP/h7.err"
check "health without a server: exit 2" test $? -eq 2
check "health without a server: says so on stderr, nothing on stdout" \
    bash -c "grep -q 'is \`memfit serve\` running?' '$TMP/h7.err' && test ! -s '$TMP/h7'"
"$MEMFIT" ps --url "$URL" >/dev/null 2>"$TMP/err6"
check "no server: exit 1" test $? -eq 1
check "no server: says so" grep -q "is \`memfit serve\` running?" "$TMP/err6"
finish
