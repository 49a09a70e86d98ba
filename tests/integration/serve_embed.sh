#!/usr/bin/env bash
# End-to-end test of `memfit serve` running DINOv2 (tests/fixtures/dinov2/
# vits_tiny.pth): the quick start (a bare model file served under its name),
# POST /v1/embeddings with images as base64 data URLs (one, several in one
# request, float and base64 output) equal to `memfit embed --json` on the
# same images to 1e-6, and a manifest model with max_batch 2 fed 3 images.
# Error paths: bad base64 (400), an image that does not decode (400 with the
# decoder's message), unknown model (404), too many pixels in one request (400), a full queue (429, Retry-After),
# a budget too small for the model (503 with the manager's figures), and a
# client that leaves mid-request (its work cancelled: metric and log).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
IMAGES=("$FX/images/rgb8.png" "$FX/images/baseline420.jpg" "$FX/images/photo211x317.png")

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
check "one PNG: 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "one PNG: equals memfit embed --json" same_as_embed 0
make_request vits_tiny float "${IMAGES[1]}"
check "one JPEG: 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "one JPEG: equals memfit embed --json" same_as_embed 1
make_request vits_tiny base64 "${IMAGES[@]}"
check "three images, base64: 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
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
check "batch of 3 through max_batch 2: 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "batch of 3: equal memfit embed --json" same_as_embed 0 1 2

# ---- Error paths.
check "bad base64: 400" test "$(post -d '{"model":"dino","input":"data:image/png;base64,AB$$"}' "$URL/v1/embeddings")" = 400
check "bad base64: code invalid_base64" is_error invalid_base64
check "not an image URL: 400" test "$(post -d '{"model":"dino","input":"hello"}' "$URL/v1/embeddings")" = 400
check "not an image URL: code invalid_image_url" is_error invalid_image_url
check "undecodable image: 400" test "$(post -d '{"model":"dino","input":"data:image/png;base64,iVBORw0KGgoAAAAA"}' "$URL/v1/embeddings")" = 400
check "undecodable image: code invalid_image" is_error invalid_image
check "undecodable image: the decoder's message" grep -q 'input\[0\]' "$TMP/body"
check "unknown model: 404" test "$(post -d '{"model":"nope","input":"data:image/png;base64,AAAA"}' "$URL/v1/embeddings")" = 404
check "unknown model: code model_not_found" is_error model_not_found
stop_server

# ---- Pixels per request: 200 photos of 0.7 Mpx are past the default 64 Mpx.
"$PY" - "$FX/images/photo1000x700.jpg" >"$TMP/big.json" <<'PY'
import base64, json, sys
u = "data:image/jpeg;base64," + base64.b64encode(open(sys.argv[1], "rb").read()).decode()
print(json.dumps({"model": "dino", "input": [u] * 200}))
PY
start_server --manifest "$TMP/m.yaml"
check "too many pixels: 400" test "$(post -d @"$TMP/big.json" "$URL/v1/embeddings")" = 400
check "too many pixels: code too_many_pixels" is_error too_many_pixels
check "too many pixels: names the limit" grep -q "64000000 pixels" "$TMP/body"
stop_server

# ---- 429 when the queue is full; a client that leaves is cancelled.
MEMFIT_LOG_LEVEL=info start_server --manifest "$TMP/m.yaml" --max-queue 1 --max-pixels 200000000
curl -s -H 'Content-Type: application/json' -o /dev/null -d @"$TMP/big.json" "$URL/v1/embeddings" &
SLOW=$!
for _ in $(seq 100); do [[ $(metric memfit_queue_running) != 0 || $(metric 'memfit_queue_depth ') != 0 ]] && break; sleep 0.02; done
curl -s -H 'Content-Type: application/json' -D "$TMP/headers" -o "$TMP/body" -d '{"model":"dino","input":"data:image/png;base64,AAAA"}' "$URL/v1/embeddings" >/dev/null
check "queue full: 429" grep -q '^HTTP/1.1 429' "$TMP/headers"
check "queue full: Retry-After" grep -qi '^Retry-After: [0-9]' "$TMP/headers"
check "queue full: code queue_full" is_error queue_full
wait "$SLOW"
check "queue full counted" test "$(metric memfit_queue_rejected_total)" -ge 1
# The client leaves once its request is in (the body read: a second after it shows).
curl -s -H 'Content-Type: application/json' -o /dev/null -d @"$TMP/big.json" "$URL/v1/embeddings" &
SLOW=$!
for _ in $(seq 100); do [[ $(metric memfit_http_requests_in_progress) -ge 2 ]] && break; sleep 0.05; done
sleep 1
kill "$SLOW"
wait "$SLOW" 2>/dev/null
for _ in $(seq 400); do grep -q "cancelled while" "$TMP/err" && break; sleep 0.05; done
for _ in $(seq 100); do [[ $(metric 'memfit_http_requests_cancelled_total{route="/v1/embeddings"}') != 0 ]] && break; sleep 0.05; done
check "client gone: request counted cancelled" test "$(metric 'memfit_http_requests_cancelled_total{route="/v1/embeddings"}')" = 1
check "client gone: work cancelled (log)" grep -q "cancelled while .*the client went away" "$TMP/err"
for _ in $(seq 100); do [[ $(metric memfit_queue_running) == 0 ]] && break; sleep 0.05; done
check "client gone: nothing left running" test "$(metric memfit_queue_running)" = 0
stop_server

# ---- A budget smaller than the model: 503 model_too_large with the figures, no Retry-After.
start_small_budget_server
make_request dino float "${IMAGES[0]}"
check "budget refusal: 503" test "$(post -D "$TMP/headers" -d @"$TMP/req.json" "$URL/v1/embeddings")" = 503
check "budget refusal: code model_too_large" is_error model_too_large
check "budget refusal: no Retry-After (it can never fit)" bash -c "! grep -qi '^Retry-After' '$TMP/headers'"
check "budget refusal: the figures" grep -Eq '[0-9.]+ ?[kKMG]i?B.*[0-9.]+ ?[kKMG]i?B' "$TMP/body"
check "budget refusal counted" test "$(metric memfit_budget_refusals_total)" -ge 1
stop_server
finish
