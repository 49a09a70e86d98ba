#!/usr/bin/env bash
# End-to-end test of POST /api/segment with the tiny SAM model
# (tests/fixtures/sam/sam_tiny.pth, image size 128): the quick start (served
# under the file's stem), prompts in each output mode (uncompressed RLE, COCO
# RLE, PNG) giving the same masks, areas, boxes and scores as `memfit segment
# --json`, automatic masks (points_per_side 4, points_per_batch auto) equal
# to the CLI's, the embedding cache (embedding_cached on the same image
# again), the low-res round trip through mask_input, a manifest model
# (family sam, limits, points_per_batch and embedding_cache options) whose
# planned batch serves a request that names none, every client error with
# its code, a full queue (429), a budget refusal with the figures (503),
# /v1/embeddings asked of SAM and /api/segment of DINOv2 (400
# model_not_supported naming the right route), /metrics counting the route,
# and the model served from an HTTP origin through a manifest.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
export MEMFIT_CACHE_DIR=$TMP/cache
unset MEMFIT_MAX_MEMORY_MB MAX_MEMORY_USAGE_MB
cp "$FX/sam/sam_tiny.pth" "$TMP/sam_tiny.pth"
cp "$FX/dinov2/vits_tiny.pth" "$TMP/dino.pth"
IMG=$FX/images/photo211x317.png
IMG2=$FX/images/rgb8.png
AMG=(--points-per-side 4 --pred-iou-thresh -10 --stability-score-thresh 0)

# The CLI's answers for the same prompts.
"$MEMFIT" segment "$TMP/sam_tiny.pth" "$IMG" --point 100,150 --json \
    --output-mode uncompressed_rle >"$TMP/cli_point.jsonl" 2>/dev/null || { fail "memfit segment --point"; finish; }
"$MEMFIT" segment "$TMP/sam_tiny.pth" "$IMG" --point 100,150 --point 20,30,0 --box 10,20,180,300 \
    --json --output-mode coco_rle >"$TMP/cli_box.jsonl" 2>/dev/null || { fail "memfit segment --box"; finish; }
"$MEMFIT" segment "$TMP/sam_tiny.pth" "$IMG" --auto "${AMG[@]}" --points-per-batch auto --json \
    --output-mode uncompressed_rle >"$TMP/cli_auto.json" 2>/dev/null || { fail "memfit segment --auto"; finish; }

# seg_request OUT IMAGE JSON-FIELDS: a request body with the image as a data URL.
seg_request() {
    "$PY" - "$1" "$2" "$3" <<'PY'
import base64, json, sys
out, path, fields = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
kind = "png" if path.endswith(".png") else "jpeg"
body = {"image": "data:image/%s;base64,%s" % (kind, base64.b64encode(open(path, "rb").read()).decode())}
body.update(fields)
json.dump(body, open(out, "w"))
PY
}
segment() { # FIELDS [IMAGE]: POST /api/segment, the status printed, the answer in $TMP/body
    seg_request "$TMP/req.json" "${2:-$IMG}" "$1"
    post -d @"$TMP/req.json" "$URL/api/segment"
}

# same_as_cli REF MODE: $TMP/body's prompt masks equal the CLI's lines.
same_as_cli() {
    "$PY" - "$TMP/body" "$1" "$2" <<'PY'
import base64, json, struct, sys, zlib
body = json.load(open(sys.argv[1]))
ref = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
mode = sys.argv[3]

def png_gray(url):
    """A grayscale 8-bit PNG (as the server writes it) as rows of bytes."""
    assert url.startswith("data:image/png;base64,"), url[:40]
    data = base64.b64decode(url.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour == 0, (depth, colour)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw, rows, prev = zlib.decompress(idat), [], bytearray(w)
    for y in range(h):
        f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            p = a + b - c
            pred = [0, a, b, (a + b) // 2,
                    a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c][f]
            line[x] = (line[x] + pred) & 255
        rows.append(line)
        prev = line
    return w, h, rows

assert body["width"] == 211 and body["height"] == 317, body
assert len(body["masks"]) == len(ref), (len(body["masks"]), len(ref))
for m, r in zip(body["masks"], ref):
    assert m["area"] == r["area"] and m["bbox"] == r["bbox"], (m["area"], r["area"], m["bbox"], r["bbox"])
    assert abs(m["predicted_iou"] - r["predicted_iou"]) <= 1e-5 * max(1, abs(r["predicted_iou"])), (m["predicted_iou"], r["predicted_iou"])
    seg = m["segmentation"]
    if mode == "png":
        w, h, rows = png_gray(seg)
        assert (w, h) == (211, 317)
        assert all(v in (0, 255) for row in rows for v in row)
        # The CLI's uncompressed RLE (column-major runs) decoded to compare pixel by pixel.
        counts, flat, val = r["segmentation"]["counts"], [], 0
        for c in counts:
            flat += [val] * c
            val ^= 1
        assert len(flat) == w * h
        for x in range(w):
            for y in range(h):
                assert (rows[y][x] == 255) == bool(flat[x * h + y]), (x, y)
        assert sum(v == 255 for row in rows for v in row) == m["area"]
    else:
        assert seg["size"] == [317, 211] and seg == r["segmentation"], (seg["size"], mode)
        if mode == "uncompressed_rle":
            assert sum(seg["counts"][1::2]) == m["area"]
PY
}

# ---- Quick start: the file served under its stem, family detected.
start_server "$TMP/sam_tiny.pth"
check "quick start: listed as sam_tiny" grep -q '"id":"sam_tiny"' <(curl -s "$URL/v1/models")
check "one point: 200" test "$(segment '{"model":"sam_tiny","points":[[100,150]]}')" = 200
check "one point: three masks (multimask default), as memfit segment --json" same_as_cli "$TMP/cli_point.jsonl" uncompressed_rle
check "first request: embedding not cached" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['embedding_cached'] is False and d['model']=='sam_tiny' and d['timing']['decode_s']>=0" "$TMP/body"
check "one point, png: 200" test "$(segment '{"model":"sam_tiny","points":[[100,150]],"output_mode":"png"}')" = 200
check "png masks: 0/255 grayscale, the CLI's pixels" same_as_cli "$TMP/cli_point.jsonl" png
check "the same image again: embedding_cached" "$PY" -c "import json,sys; assert json.load(open(sys.argv[1]))['embedding_cached'] is True" "$TMP/body"
check "points, labels and a box, coco_rle: 200" test "$(segment '{"model":"sam_tiny","points":[[100,150],[20,30]],"labels":[1,0],"box":[10,20,180,300],"output_mode":"coco_rle"}')" = 200
check "coco_rle: one mask, as memfit segment --json" same_as_cli "$TMP/cli_box.jsonl" coco_rle

# The low-res round trip: an answer's low_res_masks fed back as mask_input.
check "return_low_res: 200" test "$(segment '{"model":"sam_tiny","points":[[100,150]],"multimask_output":false,"return_low_res":true}')" = 200
"$PY" - "$TMP/body" >"$TMP/lowres.json" <<'PY'
import base64, json, sys
d = json.load(open(sys.argv[1]))
ms, raw = d["mask_size"], base64.b64decode(d["low_res_masks"])
assert len(d["masks"]) == 1 and len(raw) == 4 * ms * ms, (len(raw), ms)
print(json.dumps({"model": "sam_tiny", "points": [[100, 150]], "multimask_output": False,
                  "mask_input": base64.b64encode(raw).decode(), "return_low_res": True}))
PY
check "low_res_masks: mask_size^2 float32 per mask" test -s "$TMP/lowres.json"
check "mask_input from low_res_masks: 200" test "$(segment "$(cat "$TMP/lowres.json")")" = 200
check "mask_input: one mask, embedding cached" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['masks'])==1 and d['embedding_cached'] is True and d['masks'][0]['segmentation']['size']==[317,211]" "$TMP/body"
check "mask_input of the wrong size: 400" test "$(segment '{"model":"sam_tiny","points":[[1,2]],"mask_input":"AACAPwAAAMA="}')" = 400
check "mask_input of the wrong size: invalid_value naming mask_input" bash -c "$(declare -f is_error); PY=$PY TMP=$TMP is_error invalid_value && grep -q mask_input '$TMP/body'"

# Automatic masks: points_per_batch auto, as memfit segment --auto.
check "auto: 200" test "$(segment '{"model":"sam_tiny","auto":true,"points_per_side":4,"points_per_batch":"auto","pred_iou_thresh":-10,"stability_score_thresh":0}')" = 200
check "auto: the CLI's records" "$PY" - "$TMP/body" "$TMP/cli_auto.json" <<'PY'
import json, sys
d, ref = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert d["points_per_batch"] >= 1 and len(d["masks"]) == len(ref) >= 1, (d["points_per_batch"], len(d["masks"]), len(ref))
for m, r in zip(d["masks"], ref):
    for k in ("segmentation", "area", "bbox", "crop_box"):
        assert m[k] == r[k], k
    for k in ("predicted_iou", "stability_score"):
        assert abs(m[k] - r[k]) <= 1e-5, (k, m[k], r[k])
    assert len(m["point_coords"]) == 1 and all(abs(a - b) <= 1e-4 for a, b in zip(m["point_coords"][0], r["point_coords"][0]))
    assert m["segmentation"]["size"] == [317, 211] and sum(m["segmentation"]["counts"][1::2]) == m["area"]
PY
check "auto, png, another image: 200" test "$(segment '{"model":"sam_tiny","auto":true,"points_per_side":4,"pred_iou_thresh":-10,"stability_score_thresh":0,"output_mode":"png"}' "$IMG2")" = 200
check "auto png: data URLs" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['masks'] and all(m['segmentation'].startswith('data:image/png;base64,') for m in d['masks']) and d['embedding_cached'] is False" "$TMP/body"

# ---- Client errors.
err_case() { # WHAT STATUS CODE NEEDLE FIELDS: one request, its status, code and message
    local what=$1 want=$2 ecode=$3 needle=$4 got
    got=$(segment "$5")
    check "$what: $want" test "$got" = "$want"
    check "$what: code $ecode" is_error "$ecode"
    [[ -z $needle ]] || check "$what: names $needle" grep -q -- "$needle" "$TMP/body"
}
err_case "unknown field" 400 invalid_value frobnicate '{"model":"sam_tiny","points":[[1,2]],"frobnicate":1}'
err_case "wrong type" 400 invalid_type points '{"model":"sam_tiny","points":"1,2"}'
err_case "labels and points mismatch" 400 invalid_value labels '{"model":"sam_tiny","points":[[1,2]],"labels":[1,0]}'
err_case "prompts and auto" 400 invalid_value points '{"model":"sam_tiny","points":[[1,2]],"auto":true}'
err_case "no prompt" 400 missing_field points '{"model":"sam_tiny"}'
err_case "bad output_mode" 400 invalid_value output_mode '{"model":"sam_tiny","box":[0,0,5,5],"output_mode":"binary_mask"}'
err_case "bad points_per_batch" 400 invalid_value points_per_batch '{"model":"sam_tiny","auto":true,"points_per_batch":"lots"}'
err_case "missing model" 400 missing_field model '{"box":[0,0,5,5]}'
err_case "unknown model" 404 model_not_found nope '{"model":"nope","box":[0,0,5,5]}'
check "bad base64: 400" test "$(post -d '{"model":"sam_tiny","image":"AB$$","box":[0,0,5,5]}' "$URL/api/segment")" = 400
check "bad base64: invalid_base64" is_error invalid_base64
check "not an image data URL: 400" test "$(post -d '{"model":"sam_tiny","image":"data:text/plain;base64,AAAA","box":[0,0,5,5]}' "$URL/api/segment")" = 400
check "not an image data URL: invalid_image_url" is_error invalid_image_url
check "undecodable image: 400" test "$(post -d '{"model":"sam_tiny","image":"iVBORw0KGgoAAAAA","box":[0,0,5,5]}' "$URL/api/segment")" = 400
check "undecodable image: invalid_image" is_error invalid_image
check "not JSON: 400 invalid_json" bash -c "test \"\$(curl -s -H 'Content-Type: application/json' -o '$TMP/body' -w '%{http_code}' -d '{' '$URL/api/segment')\" = 400 && grep -q invalid_json '$TMP/body'"
check "GET: 405" test "$(code "$URL/api/segment")" = 405
make_request sam_tiny float "$IMG"
check "/v1/embeddings on SAM: 400" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 400
check "/v1/embeddings on SAM: model_not_supported" is_error model_not_supported
check "/v1/embeddings on SAM: says to use /api/segment" grep -q "use /api/segment" "$TMP/body"
check "metrics count the route" grep -q 'memfit_http_requests_total{route="/api/segment",code="200"} [1-9]' <(curl -s "$URL/metrics")
check "metrics count its errors" grep -q 'memfit_http_requests_total{route="/api/segment",code="400"} [1-9]' <(curl -s "$URL/metrics")
check "/api/models: sam with its bytes" "$PY" -c "import json,urllib.request,sys
d=[m for m in json.load(urllib.request.urlopen(sys.argv[1]+'/api/models'))['data'] if m['name']=='sam_tiny'][0]
assert d['family']=='sam' and d['bytes']>0 and d['workspace_bytes']>0, d" "$URL"
stop_server
check "SIGTERM exits 0" test $? -eq 0

# ---- A manifest: family sam with limits and options; DINOv2 beside it.
cat >"$TMP/m.yaml" <<Y
models:
  - name: sam
    family: sam
    sources: [$TMP/sam_tiny.pth]
    limits: {max_image_size: 512}
    options: {points_per_batch: 8, embedding_cache: 2}
  - name: dino
    family: dinov2
    sources: [$TMP/dino.pth]
Y
start_server --manifest "$TMP/m.yaml" --max-queue 1
check "manifest: point, 200" test "$(segment '{"model":"sam","points":[[100,150]]}')" = 200
check "manifest: the CLI's masks" same_as_cli "$TMP/cli_point.jsonl" uncompressed_rle
check "manifest: auto without a batch: the option's 8" test "$(segment '{"model":"sam","auto":true,"points_per_side":4}')" = 200
check "manifest: points_per_batch 8 in the answer" "$PY" -c "import json,sys; assert json.load(open(sys.argv[1]))['points_per_batch']==8" "$TMP/body"
check "manifest: a request's batch wins" test "$(segment '{"model":"sam","auto":true,"points_per_side":4,"points_per_batch":3}')" = 200
check "manifest: points_per_batch 3 in the answer" "$PY" -c "import json,sys; assert json.load(open(sys.argv[1]))['points_per_batch']==3" "$TMP/body"
check "/api/segment on DINOv2: 400" test "$(segment '{"model":"dino","box":[0,0,5,5]}')" = 400
check "/api/segment on DINOv2: model_not_supported" is_error model_not_supported
check "/api/segment on DINOv2: says what it does" grep -q "does not segment images; it makes embeddings" "$TMP/body"
# A full queue: one slow automatic request admitted, the next refused.
seg_request "$TMP/slow.json" "$FX/images/photo1000x700.jpg" '{"model":"sam","auto":true,"points_per_side":48,"crop_n_layers":1}'
curl -s -H 'Content-Type: application/json' -o /dev/null -d @"$TMP/slow.json" "$URL/api/segment" &
SLOW=$!
for _ in $(seq 200); do [[ $(metric memfit_queue_running) != 0 ]] && break; sleep 0.02; done
seg_request "$TMP/req.json" "$IMG" '{"model":"sam","box":[0,0,5,5]}'
curl -s -H 'Content-Type: application/json' -D "$TMP/headers" -o "$TMP/body" -d @"$TMP/req.json" "$URL/api/segment" >/dev/null
check "queue full: 429" grep -q '^HTTP/1.1 429' "$TMP/headers"
check "queue full: queue_full, Retry-After" bash -c "grep -qi '^Retry-After: [0-9]' '$TMP/headers' && grep -q queue_full '$TMP/body'"
kill "$SLOW" 2>/dev/null
wait "$SLOW" 2>/dev/null
stop_server

# ---- A budget the model cannot fit: 503 with the figures.
start_server --budget 1MB "$TMP/sam_tiny.pth"
check "tiny budget: 503" test "$(segment '{"model":"sam_tiny","points":[[100,150]]}')" = 503
check "tiny budget: model_too_large" is_error model_too_large
check "tiny budget: the figures" grep -Eq '[0-9.]+ ?[kKMG]i?B.*[0-9.]+ ?[kKMG]i?B' "$TMP/body"
stop_server

# ---- The model on an HTTP origin, through a manifest.
if command -v nginx >/dev/null; then
    source "$(dirname "$0")/remote_lib.bash"
    start_origin
    origin_put "$TMP/sam_tiny.pth"
    cat >"$TMP/remote.yaml" <<Y
models:
  - name: sam-http
    family: sam
    sources: [$ORIGIN/sam_tiny.pth]
Y
    start_server --manifest "$TMP/remote.yaml"
    check "remote: point, 200" test "$(segment '{"model":"sam-http","points":[[100,150]]}')" = 200
    check "remote: the local file's masks" same_as_cli "$TMP/cli_point.jsonl" uncompressed_rle
    check "remote: fetched from the origin" grep -q "sam_tiny.pth" "$REMOTE_DIR/origin/access.log"
    stop_server
else
    echo "note: nginx is not installed: the remote source is not tried"
fi
finish
