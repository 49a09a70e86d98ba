#!/usr/bin/env bash
# End-to-end test of `memfit serve` running DINOv2 (tests/fixtures/dinov2/
# vits_tiny.pth): the quick start (a bare model file served under its name),
# POST /v1/embeddings with images as base64 data URLs (one, several in one
# request, float and base64 output) equal to `memfit embed --json` on the
# same images to 1e-6, and a manifest model with max_batch 2 fed 3 images.
source "$(dirname "$0")/lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
IMAGES=("$FX/images/rgb8.png" "$FX/images/baseline420.jpg" "$FX/images/photo211x317.png")

start_server() { # args... ; sets PID, URL
    "$MEMFIT" serve --port 0 "$@" >"$TMP/out" 2>"$TMP/err" &
    PID=$!
    on_exit "kill -9 $PID 2>/dev/null"
    for _ in $(seq 200); do
        grep -q "listening on" "$TMP/out" 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    URL=$(sed -n 's/^listening on //p' "$TMP/out")
    [[ -n $URL ]] || { cat "$TMP/err"; fail "server did not start"; finish; }
}
stop_server() {
    kill -TERM "$PID"
    wait "$PID"
}

# request.json for model $1, encoding $2, images $3...
make_request() {
    local model=$1 enc=$2
    shift 2
    "$PY" - "$model" "$enc" "$@" >"$TMP/req.json" <<'PY'
import base64, json, sys
model, enc, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
def url(p):
    kind = "png" if p.endswith(".png") else "jpeg"
    return "data:image/%s;base64,%s" % (kind, base64.b64encode(open(p, "rb").read()).decode())
inp = [url(p) for p in paths]
print(json.dumps({"model": model, "input": inp[0] if len(inp) == 1 else inp, "encoding_format": enc}))
PY
}
code() { curl -s -o "$TMP/body" -w '%{http_code}' "$@"; }

# The reference: memfit embed --json on each image.
"$MEMFIT" embed --json "$TMP/vits_tiny.pth" "${IMAGES[@]}" >"$TMP/ref.jsonl" ||
    { fail "memfit embed"; finish; }

# Compares the server's answer ($TMP/body) with the reference lines for images $@ (indexes).
same_as_embed() {
    "$PY" - "$TMP/body" "$TMP/ref.jsonl" "$@" <<'PY'
import base64, json, struct, sys
body = json.load(open(sys.argv[1]))
ref = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
idx = [int(a) for a in sys.argv[3:]]
assert body["object"] == "list" and len(body["data"]) == len(idx), body.keys()
assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["total_tokens"] > 0, body["usage"]
for k, i in enumerate(idx):
    d = body["data"][k]
    assert d["object"] == "embedding" and d["index"] == k, d.keys()
    e = d["embedding"]
    if isinstance(e, str):
        raw = base64.b64decode(e)
        e = list(struct.unpack("<%df" % (len(raw) // 4), raw))
    r = ref[i]["embedding"]
    assert len(e) == len(r), (len(e), len(r))
    worst = max(abs(a - b) for a, b in zip(e, r))
    assert worst <= 1e-6, "image %d: max difference %g" % (i, worst)
PY
}

# ---- Quick start: a bare file, family detected from its tensors.
start_server "$TMP/vits_tiny.pth"
check "quick start: model listed under its file name" \
    grep -q '"id":"vits_tiny"' <(curl -s "$URL/v1/models")
make_request vits_tiny float "${IMAGES[0]}"
check "one PNG: 200" test "$(code -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "one PNG: equals memfit embed --json" same_as_embed 0
make_request vits_tiny float "${IMAGES[1]}"
check "one JPEG: 200" test "$(code -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "one JPEG: equals memfit embed --json" same_as_embed 1
make_request vits_tiny base64 "${IMAGES[@]}"
check "three images, base64: 200" test "$(code -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "three images, base64: equal memfit embed --json" same_as_embed 0 1 2
check "model family is dinov2 and ready" "$PY" -c "import json,urllib.request,sys
d=json.load(urllib.request.urlopen(sys.argv[1]+'/api/models'))['data'][0]
assert d['family']=='dinov2' and d['state'] in ('ready','busy') and d['requests']>=3, d" "$URL"
check "metrics count the 200s" grep -q 'memfit_http_requests_total{route="/v1/embeddings",code="200"} 3' <(curl -s "$URL/metrics")
stop_server
check "SIGTERM exits 0" test $? -eq 0

# A file that is not DINOv2: the quick start refuses it with a reason.
printf 'not a model' >"$TMP/junk.gguf"
"$MEMFIT" serve --port 0 "$TMP/junk.gguf" >/dev/null 2>"$TMP/err"
check "quick start of a non-model fails (exit 1)" test $? -eq 1
check "the reason names the file" grep -q "junk.gguf" "$TMP/err"

# ---- Manifest model, planned for 2 images a forward, fed 3 in one request.
cat >"$TMP/m.yaml" <<Y
models:
  - name: dino
    family: dinov2
    sources: [$TMP/vits_tiny.pth]
    limits: {max_batch: 2, max_image_size: 224}
Y
start_server --manifest "$TMP/m.yaml"
make_request dino float "${IMAGES[@]}"
check "batch of 3 through max_batch 2: 200" test "$(code -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "batch of 3: equal memfit embed --json" same_as_embed 0 1 2
stop_server
finish
