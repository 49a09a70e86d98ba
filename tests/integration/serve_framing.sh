#!/usr/bin/env bash
# Integration test of `memfit serve`'s request framing over a raw socket: two
# different Content-Length headers and Content-Length with Transfer-Encoding
# are 400 bad_framing, a Transfer-Encoding other than chunked is 501
# unsupported_transfer_encoding; each answer comes at once (under 2 s, where a
# gzip body used to wait 30 s) and closes the connection, so no byte of the
# body is read as a next request. Plain and chunked requests still work.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"

start_server
# raw STATUS CODE REQUEST: sends the bytes (backslash escapes decoded), checks
# the status line, the error code of the JSON body, the time and the close.
cat >"$TMP/raw.py" <<'PY'
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
status, code, req = sys.argv[2], sys.argv[3], sys.argv[4].encode().decode("unicode_escape").encode("latin-1")
s = socket.create_connection((host, int(port)), timeout=10)
t0 = time.monotonic()
s.sendall(req)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    if length and len(body) >= length[0]:
        break
elapsed = time.monotonic() - t0
line = data.split(b"\r\n", 1)[0].decode()
assert line.split(" ")[1] == status, line
assert elapsed < 2.0, elapsed
e = json.loads(data.partition(b"\r\n\r\n")[2])["error"]
assert e["code"] == code and e["message"], e
s.settimeout(2)  # the connection is closed after the answer: nothing else comes
rest = s.recv(65536)
assert rest == b"", rest[:80]
PY
raw() { "$PY" "$TMP/raw.py" "${URL#http://}" "$@"; }
B='{"model":"x","input":"a"}' # 25 bytes
P='POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n'
check "two different Content-Length: 400 bad_framing" \
    raw 400 bad_framing "${P}Content-Length: 25\r\nContent-Length: 30\r\n\r\n$B"
check "Content-Length and chunked: 400 bad_framing" \
    raw 400 bad_framing "${P}Content-Length: 25\r\nTransfer-Encoding: chunked\r\n\r\n19\r\n$B\r\n0\r\n\r\n"
check "Transfer-Encoding then Content-Length: 400 bad_framing" \
    raw 400 bad_framing "${P}Transfer-Encoding: chunked\r\nContent-Length: 25\r\n\r\n19\r\n$B\r\n0\r\n\r\n"
check "Transfer-Encoding gzip: 501 at once" \
    raw 501 unsupported_transfer_encoding "${P}Transfer-Encoding: gzip\r\n\r\n$B"
check "Transfer-Encoding gzip, chunked: 501 at once" \
    raw 501 unsupported_transfer_encoding "${P}Transfer-Encoding: gzip, chunked\r\n\r\n19\r\n$B\r\n0\r\n\r\n"
check "gzip on an unknown route: 501 too" \
    raw 501 unsupported_transfer_encoding 'POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n'
check "two equal Content-Length: read (404 for the model)" \
    raw 404 model_not_found "${P}Content-Length: 25\r\nContent-Length: 25\r\nConnection: close\r\n\r\n$B"
check "chunked body: read (404 for the model)" \
    raw 404 model_not_found "${P}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n19\r\n$B\r\n0\r\n\r\n"
check "framing refusals counted" grep -q 'code="400"} [1-9]' <(curl -s "$URL/metrics")
check "alive after the framing errors" test "$(code "$URL/health")" = 200
stop_server
check "SIGTERM exits 0" test $? -eq 0
finish
