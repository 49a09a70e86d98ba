#!/usr/bin/env bash
# Container conventions of `memfit serve`: PORT (Render, Cloud Run, Heroku)
# binds 0.0.0.0 on that port; MEMFIT_HOST/MEMFIT_PORT win over PORT, flags
# over both; MEMFIT_LOG_FORMAT=json gives one JSON object per log line.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
cd "$TMP" || exit 1

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts serve with the given environment (no --port); sets PID and URL.
start_env() { # VAR=value... -- serve args...
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    rm -f "$TMP/out"
    env "${envs[@]}" "$MEMFIT" serve "$@" >"$TMP/out" 2>"$TMP/err" &
    PID=$!
    wait_listening
}

p=$(free_port)
start_env PORT="$p" --
check "PORT=$p: listens on 0.0.0.0:$p" test "$URL" = "http://0.0.0.0:$p"
check "PORT: /health answers on 127.0.0.1:$p" test "$(code "http://127.0.0.1:$p/health")" = 200
check "PORT: the log warns that no API key guards a public address" grep -q "without an API key" "$TMP/err"
stop_server

p2=$(free_port)
start_env PORT="$p" MEMFIT_PORT="$p2" MEMFIT_HOST=127.0.0.1 --
check "MEMFIT_HOST/MEMFIT_PORT win over PORT" test "$URL" = "http://127.0.0.1:$p2"
stop_server

start_env PORT="$p" MEMFIT_HOST=127.0.0.1 --
check "MEMFIT_HOST with PORT: PORT's port on MEMFIT_HOST's address" test "$URL" = "http://127.0.0.1:$p"
stop_server

start_env MEMFIT_PORT="$p2" -- --port 0
check "--port wins over MEMFIT_PORT" bash -c "[[ '$URL' == http://127.0.0.1:* && '$URL' != *:$p2 ]]"
stop_server

start_env MEMFIT_PORT=0 --
check "text log: stdout's first line is plain \"listening on URL\"" \
    bash -c "head -1 '$TMP/out' | grep -qx 'listening on http://127.0.0.1:[0-9]*'"
stop_server

start_env MEMFIT_LOG_FORMAT=json MEMFIT_PORT=0 --
check "json log: the server starts" test -n "$URL"
check "json log: stdout is JSON log records, \"listening on\" one of them" $PY -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert lines and all(set(o) == {"time", "level", "pid", "msg"} for o in lines), lines
assert lines[0]["level"] == "info" and lines[0]["msg"] == "listening on " + sys.argv[2], lines
' "$TMP/out" "$URL"
code "$URL/v1/models" >/dev/null
stop_server
check "json log: every line on stderr is one JSON object with time, level, pid and msg" \
    $PY -c '
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no log lines"
for l in lines:
    o = json.loads(l)
    assert set(o) == {"time", "level", "pid", "msg"}, o
    assert o["time"].endswith("Z") and o["level"] in ("error", "warn", "info", "debug", "trace")
assert any("budget" in json.loads(l)["msg"] for l in lines)
' "$TMP/err"

MEMFIT_LOG_FORMAT=xml "$MEMFIT" report >/dev/null 2>"$TMP/bad"
check "MEMFIT_LOG_FORMAT=xml: usage error (exit 2)" test $? -eq 2
check "MEMFIT_LOG_FORMAT=xml: the message names it" grep -q "MEMFIT_LOG_FORMAT: unknown format 'xml'" "$TMP/bad"
PORT=http "$MEMFIT" serve >/dev/null 2>"$TMP/bad"
check "PORT=http: usage error (exit 2)" test $? -eq 2
check "PORT=http: the message names PORT" grep -q "PORT (environment): invalid number 'http'" "$TMP/bad"
MEMFIT_PORT=70000 "$MEMFIT" serve >/dev/null 2>"$TMP/bad"
check "MEMFIT_PORT=70000: usage error (exit 2)" test $? -eq 2
finish
