#!/usr/bin/env bash
# A remote model's exact plan before its download (issue 6): against a real
# nginx on loopback, the store reads byte ranges (and a suffix range) of a
# file; `memfit models` plans a GGUF, a safetensors and a `.pth` DINOv2
# from their headers (a `.pth`'s from its tail and data.pkl record), read
# with Range requests only, and the plan equals the one made
# from the downloaded file; a model whose workspace does not fit the budget
# (while its file alone would) is refused before any download; and a server
# that ignores Range gives the provisional plan from the size.
source "$(dirname "$0")/store_lib.bash"
FIX=${MEMFIT_FIXTURES:?}
IMG=$FIX/images/baseline420.jpg
start_nginx
log="$T/nginx/access.log"
for fmt in gguf safetensors; do
    "$MEMFIT_BIN" convert "$FIX/dinov2/vits_tiny.pth" "$T/www/dino.$fmt" >/dev/null ||
        fail "convert to $fmt"
done
cp "$FIX/dinov2/vits_tiny.pth" "$T/www/dino.pth"
jget() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1]))['models'][0]; print($2)" "$1"; }
manifest() { # budget cache_dir url file
    cat <<YAML
budget: $1
cache_dir: $2
models:
  - name: dino
    family: dinov2
    sources: [$3]
    sha256: $(sha "$4")
    options: {threads: 1}
YAML
}
blobs() { find "$1/blobs" -type f 2>/dev/null | wc -l; }

echo "== ranges"
f="$T/www/dino.gguf"
size=$(stat -c %s "$f")
"$MEMFIT_BUILD/store_range" "$NGINX/dino.gguf" 1000 5000 >"$T/r1" 2>"$T/r1.err" || fail "range: $(cat "$T/r1.err")"
cmp "$T/r1" <(tail -c +1001 "$f" | head -c 5000) || fail "range bytes differ"
grep -q "size=$size" "$T/r1.err" || fail "range size: $(cat "$T/r1.err")"
grep -q "GET /dino.gguf 206 range=bytes=1000-5999 .* sent=5000" "$log" || fail "range request: $(tail -2 "$log")"
"$MEMFIT_BUILD/store_range" "$NGINX/dino.gguf" -3000 >"$T/r2" 2>"$T/r2.err" || fail "tail: $(cat "$T/r2.err")"
cmp "$T/r2" <(tail -c 3000 "$f") || fail "tail bytes differ"
grep -q "offset=$((size - 3000)) size=$size" "$T/r2.err" || fail "tail offset: $(cat "$T/r2.err")"
"$MEMFIT_BUILD/store_range" "$NGINX/dino.gguf" $((size - 10)) 100 >"$T/r3" 2>/dev/null || fail "range at the end"
[[ $(stat -c %s "$T/r3") -eq 10 ]] || fail "range at the end: $(stat -c %s "$T/r3") bytes"
if "$MEMFIT_BUILD/store_range" "$NGINX/dino.gguf" "$size" 10 >/dev/null 2>"$T/r4.err"; then
    fail "range past the end"
fi
rc=0
"$MEMFIT_BUILD/store_range" "$NGINX/norange/dino.gguf" 0 1000 >/dev/null 2>"$T/r5.err" || rc=$?
[[ $rc -eq 3 ]] || fail "a server ignoring Range: exit $rc, $(cat "$T/r5.err")"
grep -q "ignores Range" "$T/r5.err" || fail "message: $(cat "$T/r5.err")"

for fmt in gguf safetensors pth; do
    echo "== $fmt: exact plan from the header, before the download"
    f="$T/www/dino.$fmt"
    size=$(stat -c %s "$f")
    cache="$T/cache-$fmt"
    manifest 64MiB "$cache" "$NGINX/dino.$fmt" "$f" >"$T/m.yaml"
    : >"$log"
    MEMFIT_LOG_LEVEL=info "$MEMFIT_BIN" models "$T/m.yaml" --json >"$T/before.json" \
        2>"$T/before.err" || fail "models: $(cat "$T/before.err")"
    grep "header read before download" "$T/before.err" || fail "no log line: $(cat "$T/before.err")"
    [[ $(jget "$T/before.json" "d['plan_source']") == header ]] || fail "plan source: $(cat "$T/before.json")"
    [[ $(jget "$T/before.json" "d['planned']['workspace'] > 0") == True ]] || fail "no workspace planned"
    [[ $(blobs "$cache") -eq 0 ]] || fail "planning downloaded the file"
    grep -q "/dino.$fmt" "$log" || fail "no request for the header"
    if grep "/dino.$fmt" "$log" | grep -qv " 206 range=bytes="; then
        fail "a request that was not a range: $(cat "$log")"
    fi
    sent=$(grep "/dino.$fmt" "$log" | sed 's/.*sent=//' | awk '{n += $1} END {print n + 0}')
    echo "header read: $sent of $size bytes in $(grep -c "/dino.$fmt" "$log") range request(s)"
    [[ $sent -lt $size ]] || fail "read $sent bytes of a $size-byte file"

    "$MEMFIT_BIN" run "$T/m.yaml" dino "$IMG" --json >"$T/run.json" 2>"$T/run.err" ||
        fail "run: $(cat "$T/run.err")"
    [[ $(blobs "$cache") -eq 1 ]] || fail "run did not cache the file"
    "$MEMFIT_BIN" models "$T/m.yaml" --json >"$T/after.json" 2>/dev/null || fail "models after"
    [[ $(jget "$T/after.json" "d['plan_source']") == file ]] || fail "after: $(cat "$T/after.json")"
    for k in planned total_bytes max_batch max_image_size file_bytes; do
        [[ $(jget "$T/before.json" "d['$k']") == $(jget "$T/after.json" "d['$k']") ]] ||
            fail "$k before the download $(jget "$T/before.json" "d['$k']") != after $(jget "$T/after.json" "d['$k']")"
    done

    echo "== $fmt: a workspace that cannot fit is refused before any download"
    total=$(jget "$T/before.json" "d['total_bytes']")
    work=$(jget "$T/before.json" "d['planned']['workspace']")
    budget=$((total - work / 2))
    [[ $budget -gt $size ]] || fail "test setup: the file alone ($size) must fit $budget"
    cache2="$T/cache2-$fmt"
    manifest "$budget" "$cache2" "$NGINX/dino.$fmt" "$f" >"$T/small.yaml"
    : >"$log"
    if "$MEMFIT_BIN" run "$T/small.yaml" dino "$IMG" >/dev/null 2>"$T/small.err"; then
        fail "a model over the budget ran"
    fi
    cat "$T/small.err"
    grep -q "budget" "$T/small.err" || fail "refusal without the figures: $(cat "$T/small.err")"
    grep -q "$total" "$T/small.err" || grep -qi "workspace" "$T/small.err" ||
        fail "refusal does not give the planned size: $(cat "$T/small.err")"
    [[ $(blobs "$cache2") -eq 0 ]] || fail "the refused model was downloaded"
    if grep "/dino.$fmt" "$log" | grep -qv " 206 range=bytes="; then
        fail "a request that was not a range: $(cat "$log")"
    fi
done

echo "== a server that ignores Range: the provisional plan from the size"
f="$T/www/dino.gguf"
manifest 64MiB "$T/cache3" "$NGINX/norange/dino.gguf" "$f" >"$T/nr.yaml"
MEMFIT_LOG_LEVEL=info "$MEMFIT_BIN" models "$T/nr.yaml" --json >"$T/nr.json" 2>"$T/nr.err" ||
    fail "models: $(cat "$T/nr.err")"
grep "planned from its size" "$T/nr.err" || fail "no log line: $(cat "$T/nr.err")"
[[ $(jget "$T/nr.json" "d['plan_source']") == head-size ]] || fail "plan source: $(cat "$T/nr.json")"
[[ $(jget "$T/nr.json" "d['planned']['weights']") == $(stat -c %s "$f") ]] || fail "provisional weights"
[[ $(blobs "$T/cache3") -eq 0 ]] || fail "planning downloaded the file"
"$MEMFIT_BIN" run "$T/nr.yaml" dino "$IMG" --json >"$T/nr-run.json" 2>"$T/nr-run.err" ||
    fail "run through the server without Range: $(cat "$T/nr-run.err")"
echo "ok"
