#!/usr/bin/env bash
# Slow clients cannot starve others (issue 15), against a server with the
# default limits: 100 slowloris connections from 127.0.0.1 (each sends
# "GET / HTTP/1.1" then one header line every 2 s, and reconnects when cut)
# for about 32 s, while a well-behaved client on 127.0.0.2 asks for an
# embedding or the model list every second: each of its requests is answered
# 200 within 2 s, and /health, asked from the flooding address itself, is
# answered 200 throughout. Every slowloris connection is cut by the head
# deadline (10 s, 2 s for those beyond the 64 connections an address may
# hold), none gets an answer, and the log names each cut. Then one address
# opens 70 connections and completes a request on each: 64 are answered
# 200, 6 get 429 too_many_connections with Retry-After and Connection:
# close. Then a body trickled past --request-timeout is cut, while an event
# stream longer than it is not. About 45 s in all.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
SANITIZED=${MEMFIT_SANITIZED:-OFF}
LIMIT=2 # seconds for a well-behaved request; sanitized builds run 3-10x slower
[[ $SANITIZED == ON ]] && LIMIT=6
DURATION=32

cp "$MEMFIT_FIXTURES/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
start_server "$TMP/vits_tiny.pth"
HOSTPORT=${URL#http://}
make_request vits_tiny float "$MEMFIT_FIXTURES/images/rgb8.png"
check "warm-up embedding from 127.0.0.2: 200" \
    test "$(post --interface 127.0.0.2 -m 60 -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200

# slowloris.py HOST:PORT N SECONDS: N connections from 127.0.0.1 trickling
# their heads; prints JSON: opened, cut, answered, the longest life of a cut one.
cat >"$TMP/slowloris.py" <<'PY'
import json, selectors, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
n, seconds = int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
stats = {"opened": 0, "cut": 0, "answered": 0, "longest_s": 0.0, "connect_errors": 0}
def connect():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        s.connect((host, int(port)))
        s.sendall(b"GET / HTTP/1.1\r\n")
    except OSError:
        stats["connect_errors"] += 1
        s.close()
        return
    stats["opened"] += 1
    sel.register(s, selectors.EVENT_READ, {"born": time.monotonic(), "next": time.monotonic() + 2, "line": 0})
for _ in range(n):
    connect()
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.1):
        s, st = key.fileobj, key.data
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data:
            stats["answered"] += 1
        else:
            stats["cut"] += 1
            stats["longest_s"] = max(stats["longest_s"], time.monotonic() - st["born"])
        sel.unregister(s)
        s.close()
        connect()
    now = time.monotonic()
    for key in list(sel.get_map().values()):
        st = key.data
        if now >= st["next"]:
            st["line"] += 1
            st["next"] = now + 2
            try:
                key.fileobj.sendall(b"X-Slow-%d: x\r\n" % st["line"])
            except OSError:
                pass  # cut: the read side reports it
print(json.dumps(stats))
PY
"$PY" "$TMP/slowloris.py" "$HOSTPORT" 100 "$DURATION" >"$TMP/slowloris.json" &
SLOW=$!
on_exit "kill $SLOW 2>/dev/null"
sleep 1 # the 100 connections are open

# One request a second from 127.0.0.2 (an embedding or the model list in
# turn) and /health from 127.0.0.1, each line: what, status, seconds.
: >"$TMP/good"
for ((i = 0; i < DURATION - 3; i++)); do
    t0=$(date +%s.%N)
    if ((i % 2)); then
        echo "models $(curl -s -o /dev/null -m 30 --interface 127.0.0.2 -w '%{http_code} %{time_total}' "$URL/v1/models")" >>"$TMP/good"
    else
        echo "embed $(curl -s -o /dev/null -m 30 --interface 127.0.0.2 -w '%{http_code} %{time_total}' \
            -H 'Content-Type: application/json' -d @"$TMP/req.json" "$URL/v1/embeddings")" >>"$TMP/good"
    fi
    echo "health $(curl -s -o /dev/null -m 30 --interface 127.0.0.1 -w '%{http_code} %{time_total}' "$URL/health")" >>"$TMP/good"
    sleep "$(awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN {d = 1 - (now - t0); print (d > 0 ? d : 0)}')"
done
wait "$SLOW"
echo "well-behaved requests: $(grep -c . "$TMP/good"); slowest $(sort -k3 -g "$TMP/good" | tail -1)"
echo "slowloris: $(cat "$TMP/slowloris.json")"
check "well-behaved: $((2 * (DURATION - 3))) requests made" test "$(grep -c . "$TMP/good")" -eq $((2 * (DURATION - 3)))
check "well-behaved: every answer 200" bash -c "! awk '\$2 != 200' '$TMP/good' | grep -q ."
check "well-behaved: every answer within $LIMIT s" \
    bash -c "! awk -v l=$LIMIT '\$3 > l' '$TMP/good' | grep -q ."
check "/health from the flooding address: 200 throughout" \
    bash -c "test \$(grep -c '^health 200 ' '$TMP/good') -eq $((DURATION - 3))"
slow() { jq_py "$TMP/slowloris.json" "d[0]['$1']"; }
check "slowloris: 100 connections opened, reopened when cut" test "$(slow opened)" -ge 100
check "slowloris: no connection got an answer" test "$(slow answered)" -eq 0
check "slowloris: none failed to connect" test "$(slow connect_errors)" -eq 0
# In 32 s the 64 connections the address may hold are cut about 3 times
# each (10 s), the 36 beyond it every 2 s.
check "slowloris: 200+ cuts" test "$(slow cut)" -ge 200
check "slowloris: cut by the head deadline (10 s + the watchdog's 0.25 s)" \
    "$PY" -c "import sys; sys.exit(not 9.5 <= float(sys.argv[1]) <= 11.5 + 2 * ('$SANITIZED' == 'ON'))" "$(slow longest_s)"
check "the log names the cuts (header_timeout_s): the first 64 at least" \
    test "$(grep -c 'connection from 127.0.0.1 cut: no complete request head within 10 s (header_timeout_s)' "$TMP/err")" -ge 64
CUTS=$(metric 'memfit_http_connections_cut_total{deadline="header"}')
check "/metrics counts the cuts ($CUTS)" test "$CUTS" -ge "$(slow cut)"
check "the log names the cuts beyond the client's limit" \
    grep -q 'connection from 127.0.0.1 cut: no complete request head within 2 s (the deadline of a connection beyond max_client_connections 64)' "$TMP/err"

# Per-client limit: 70 connections from 127.0.0.3, then a request on each.
cat >"$TMP/perclient.py" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
socks = []
for _ in range(70):
    s = socket.socket()
    s.bind(("127.0.0.3", 0))
    s.connect((host, int(port)))
    s.settimeout(20)
    socks.append(s)
for s in socks:
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n")
for s in socks:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n")[0].decode().lower()
    status = head.split(" ")[1] if head else "none"
    extra = ""
    if status == "429":
        body = data
        while b"too_many_connections" not in body and len(body) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        extra = " code=%s retry-after=%s close=%s" % (
            "too_many_connections" if b"too_many_connections" in body else "?",
            "retry-after: 1" in head, "connection: close" in head)
    print(status + extra)
PY
"$PY" "$TMP/perclient.py" "$HOSTPORT" >"$TMP/perclient" 2>&1
sort "$TMP/perclient" | uniq -c
check "one address, 70 connections: 64 answered 200" test "$(grep -c '^200' "$TMP/perclient")" -eq 64
check "one address, 70 connections: 6 answered 429 too_many_connections, Retry-After, Connection: close" \
    test "$(grep -c '^429 code=too_many_connections retry-after=True close=True' "$TMP/perclient")" -eq 6
check "alive after the flood" test "$(code "$URL/health")" = 200
stop_server
check "SIGTERM exits 0" test $? -eq 0
check "the refusals are counted in the log (one line per 10 s)" \
    grep -q '6 request(s) answered 429 too_many_connections (over max_client_connections 64)' "$TMP/err"

# The body's deadline: a body trickled a byte every 0.5 s is cut at
# --request-timeout; an answer that streams longer than it is not.
start_server --header-timeout 2 --request-timeout 3
cat >"$TMP/slowbody.py" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
t0 = time.monotonic()
s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
          b"Content-Length: 100\r\n\r\n")
try:
    for _ in range(100):
        time.sleep(0.5)
        s.sendall(b" ")
    print("not cut")
except OSError:
    print("cut after %.1f s" % (time.monotonic() - t0))
PY
SLOWBODY=$("$PY" "$TMP/slowbody.py" "${URL#http://}")
echo "slow body: $SLOWBODY"
check "a trickled body is cut at the request deadline (3 s)" \
    "$PY" -c "import sys; w = sys.argv[1].split(); sys.exit(not (w[0] == 'cut' and 2.9 <= float(w[2]) <= 5))" "$SLOWBODY"
check "the log names it" grep -q 'cut: its request (head and body) was not complete within 3 s (request_timeout_s)' "$TMP/err"
rc=0
curl -s -N -m 5 -o "$TMP/events" "$URL/api/events" || rc=$?
check "an event stream outlives the deadlines (curl's own 5 s limit ends it)" test "$rc" = 28
check "it streamed samples all along" test "$(grep -c '^event: sample' "$TMP/events")" -ge 4
stop_server
check "SIGTERM exits 0" test $? -eq 0
finish
