#!/bin/bash
# A manifest model whose source is remote (HTTP on loopback): its plan is
# known from a HEAD request before anything is downloaded (this server
# ignores Range, so the `.pth`'s header cannot be read by range: see
# manager_remote_header.sh for the exact plan against nginx); `memfit run`
# fetches it through the store into the manifest's cache_dir, verifies it
# against the manifest's sha256 and gives the embedding the local file
# gives; once cached, planning makes no request at all; and a budget too
# small for the file refuses the model without downloading it.
source "$(dirname "$0")/lib.bash"
FIX=${MEMFIT_FIXTURES:?}
IMG=$FIX/images/baseline420.jpg

mkdir -p "$TMP/www"
cp "$FIX/dinov2/vits_tiny.pth" "$TMP/www/dino.pth"
size=$(stat -c %s "$TMP/www/dino.pth")
sha=$(sha256sum "$TMP/www/dino.pth" | cut -d' ' -f1)
"$PY" -c 'import http.server' 2>/dev/null || skip "no python3 for the loopback HTTP server"
( cd "$TMP/www" && exec "$PY" -m http.server 0 --bind 127.0.0.1 ) >"$TMP/http.out" 2>"$TMP/http.log" &
server=$!
on_exit "kill $server 2>/dev/null"
for _ in $(seq 50); do
    port=$(grep -oE 'port [0-9]+' "$TMP/http.out" | grep -oE '[0-9]+')
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n ${port:-} ]] || skip "the loopback HTTP server did not start"
url=http://127.0.0.1:$port/dino.pth

manifest() { # budget cache_dir
    cat <<YAML
budget: $1
cache_dir: $2
models:
  - name: dino
    family: dinov2
    sources: [$url]
    sha256: $sha
    options: {threads: 1}
YAML
}
manifest 64MiB "$TMP/cache" >"$TMP/m.yaml"

"$MEMFIT" models "$TMP/m.yaml" --json >"$TMP/plan1.json" 2>"$TMP/plan1.err"
check "models plans the remote model" [ $? -eq 0 ]
check "provisional plan = file size as weights" \
    [ "$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['models'][0]['planned']['weights'])" "$TMP/plan1.json")" = "$size" ]
check "a server ignoring Range: a .pth is planned from its size" \
    [ "$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['models'][0]['plan_source'])" "$TMP/plan1.json")" = head-size ]
check "planning sent a HEAD" grep -q '"HEAD /dino.pth' "$TMP/http.log"
check "planning downloaded nothing" [ "$(find "$TMP/cache" -type f -path '*blobs*' | wc -l)" -eq 0 ]

"$MEMFIT" run "$TMP/m.yaml" dino "$IMG" --json >"$TMP/run.json" 2>"$TMP/run.err"
rc=$?
cat "$TMP/run.err"
check "run fetches and embeds" [ $rc -eq 0 ]
check "the download cached one file" [ "$(find "$TMP/cache" -type f -path '*blobs*' | wc -l)" -eq 1 ]
"$MEMFIT" embed "$FIX/dinov2/vits_tiny.pth" "$IMG" --json --threads 1 >"$TMP/embed.json"
check "same embedding as the local file" cmp -s "$TMP/run.json" "$TMP/embed.json"

requests=$(wc -l <"$TMP/http.log")
"$MEMFIT" models "$TMP/m.yaml" --json >"$TMP/plan2.json" 2>/dev/null
check "cached: exact plan with a workspace" \
    [ "$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['models'][0]['planned']['workspace'] > 0)" "$TMP/plan2.json")" = True ]
check "cached: planning makes no request" [ "$(wc -l <"$TMP/http.log")" -eq "$requests" ]

manifest 100KiB "$TMP/cache2" >"$TMP/small.yaml"
"$MEMFIT" run "$TMP/small.yaml" dino "$IMG" >/dev/null 2>"$TMP/small.err"
rc=$?
cat "$TMP/small.err"
check "too small a budget: refused" [ $rc -ne 0 ]
check "the refusal gives the figures" grep -q "budget" "$TMP/small.err"
check "nothing downloaded for it" [ "$(find "$TMP/cache2" -type f -path '*blobs*' 2>/dev/null | wc -l)" -eq 0 ]
finish
