#!/usr/bin/env bash
# Hostile request bodies against `memfit serve` with a 40 MiB budget, inside
# a 128 MiB memory cgroup where one can be made: 10 MB and 30 MB bodies
# whose unknown member is a long array (refused at its name: 400), whose
# known member is millions of numbers (refused once the scan's estimate
# passes the budget: 413), sent with a length or chunked, one nested too
# deeply (400), a long string that would not fit (413 with figures), a
# small PNG that decodes to 48 MB (503: no room for its pixels), and a
# chat request whose unknown members are skipped unread. Checks: each
# answer, zero OOM kills, the daemon alive, and its RSS back within 5 MB of
# where it was after a normal request. Without a cgroup the same runs
# outside one (said so); under sanitizers the RSS and the cgroup are left
# out (their shadow memory does not fit, their allocator keeps memory).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
SANITIZED=${MEMFIT_SANITIZED:-OFF}

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"

"$PY" - "$TMP" <<'PY'
import sys
d = sys.argv[1]
def write(name, head, item, size, tail):
    with open(f"{d}/{name}", "w") as f:
        f.write(head)
        n = len(head)
        chunk = item * 65536
        while n < size:
            f.write(chunk)
            n += len(chunk)
        f.write(tail)
for mb in (10, 30):
    size = mb * 1000 * 1000
    write(f"unknown{mb}.json", '{"model":"vits_tiny","junk":[', "1,", size, '1],"input":"x"}')
    write(f"numbers{mb}.json", '{"model":"vits_tiny","input":[', "1,", size, '1]}')
write("string10.json", '{"model":"vits_tiny","input":"', "x", 10 * 1000 * 1000, '"}')
write("chat_skip.json", '{"model":"vits_tiny","messages":[{"role":"user","content":"hi"}],"junk":[',
      "[1],", 2 * 1000 * 1000, '[1]]}')
import base64, struct, zlib
def png(w, h):
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = zlib.compress((b"\0" + b"\x80" * (3 * w)) * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
with open(f"{d}/big_image.json", "w") as f:
    f.write('{"model":"vits_tiny","input":"data:image/png;base64,%s"}'
            % base64.b64encode(png(4000, 4000)).decode())
with open(f"{d}/deep.json", "w") as f:
    f.write('{"model":"vits_tiny","input":' + "[" * 100 + "]" * 100 + "}")
PY

CG=
if [[ $SANITIZED == OFF ]]; then
    CG=$(make_cgroup "memfit-bodies-$$" $((128 * 1024 * 1024)) 2>"$TMP/cg.err") || CG=
    if [[ -n $CG ]]; then
        on_exit "remove_cgroup '$CG'"
        if [[ -f $CG/memory.limit_in_bytes ]]; then
            oom_kills() { awk '/^oom_kill /{print $2}' "$CG/memory.oom_control"; }
        else
            oom_kills() { awk '/^oom_kill /{print $2}' "$CG/memory.events"; }
        fi
    else
        echo "no memory cgroup ($(cat "$TMP/cg.err")): running without one, OOM kills not counted"
    fi
else
    echo "sanitized build: no cgroup and no RSS check"
fi
start_server_in "$CG" --budget 40MiB "$TMP/vits_tiny.pth"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

make_request vits_tiny float "$FX/images/rgb8.png"
check "a normal request is served" [ "$(post "$URL/v1/embeddings" --data @"$TMP/req.json")" = 200 ]
post "$URL/v1/embeddings" --data @"$TMP/req.json" >/dev/null
RSS0=$(rss_kb)
[[ -n $CG ]] && OOM0=$(oom_kills)

# send FILE [curl args]: POSTs the file to /v1/embeddings; prints the status.
send() {
    local file=$1
    shift
    post "$URL/v1/embeddings" --data-binary @"$TMP/$file" "$@"
}
expect() { # expect STATUS CODE FILE [curl args]
    local want=$1 err=$2 file=$3
    shift 3
    local got
    got=$(send "$file" "$@")
    check "$file $*: $want $err" [ "$got" = "$want" ] || { echo "got $got: $(head -c 300 "$TMP/body")"; return; }
    check "$file: error code $err" is_error "$err"
    echo "  $(head -c 240 "$TMP/body")"
}
for mb in 10 30; do
    expect 400 invalid_value "unknown$mb.json"
    expect 413 request_too_large "numbers$mb.json"
    expect 413 request_too_large "numbers$mb.json" -H 'Transfer-Encoding: chunked'
done
expect 400 invalid_json deep.json
# A small body whose image decodes to 48 MB: refused on its header, before
# the pixels are allocated, since the budget has no room for them.
expect 503 insufficient_memory big_image.json
expect 413 request_too_large string10.json
check "the 413 names the budget" grep -q "memory budget is 40.0 MiB" "$TMP/body"

# Completions and chat skip unknown members without building them: the
# request reaches the model (an image model: it cannot chat).
c=$(post "$URL/v1/chat/completions" --data-binary @"$TMP/chat_skip.json")
check "chat with a 2 MB unknown member reaches the model (not 413): $c" [ "$c" != 413 ] && [ "$c" != 500 ]
echo "  $c $(head -c 200 "$TMP/body")"

check "the daemon is alive" kill -0 "$PID"
check "a normal request is still served" [ "$(post "$URL/v1/embeddings" --data @"$TMP/req.json")" = 200 ]
budget=$(curl -s "$URL/api/memory" | "$PY" -c 'import json,sys; b=json.load(sys.stdin)["budget"]; print(b["reserved_bytes"])')
check "no request memory is left reserved ($budget bytes reserved: the model's)" \
    [ "$budget" -lt $((20 * 1024 * 1024)) ]
if [[ $SANITIZED == OFF ]]; then
    RSS1=$(rss_kb)
    echo "RSS after a normal request ${RSS0} kB, after the hostile bodies ${RSS1} kB"
    check "RSS back within 5 MB" [ $((RSS1 - RSS0)) -lt 5120 ]
fi
if [[ -n $CG ]]; then
    check "zero OOM kills" [ "$(oom_kills)" = "$OOM0" ]
fi
finish
