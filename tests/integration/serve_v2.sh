#!/usr/bin/env bash
# `memfit serve` speaking KServe's Open Inference Protocol v2 over HTTP, on
# the tiny DINOv2 (tests/fixtures/dinov2/vits_tiny.pth) and Qwen2
# (tests/fixtures/llm/qwen2_gqa.gguf) models: server metadata, health,
# model metadata and readiness, inference (the embedding equal to
# /v1/embeddings' for the same images, to the last digit; the greedy text
# equal to /v1/completions'), the repository extension's index, load and
# unload with their state transitions, HEAD, 405 with Allow, the API key
# (liveness exempt), the /metrics labels, and the errors in the protocol's
# {"error": "..."} shape: unknown model or version 404, bad base64, wrong
# datatype, wrong input name, unknown top-level member (refused by the
# streaming scan), missing inputs, shape mismatch 400, SAM-like families
# pointed elsewhere, a budget refusal 503 with the figures.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$FX/llm/qwen2_gqa.gguf" "$TMP/"
IMAGES=("$FX/images/rgb8.png" "$FX/images/baseline420.jpg")

# json EXPR: asserts EXPR on d, the JSON of $TMP/body.
json() {
    local expr=$1
    shift
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1], encoding='utf-8', errors='replace')); assert $expr, d" "$TMP/body" "$@"
}
# v2_error NEEDLE: $TMP/body is {"error": "..."} (only that member) containing NEEDLE.
v2_error() { json "list(d) == ['error'] and isinstance(d['error'], str) and sys.argv[2] in d['error']" "$1"; }
get() { code "$@"; }

# The v2 request for images $@ (bare base64, as KServe's clients send BYTES), in $TMP/v2.json.
v2_images() {
    "$PY" - "$@" >"$TMP/v2.json" <<'PY'
import base64, json, sys
data = [base64.b64encode(open(p, "rb").read()).decode() for p in sys.argv[1:]]
print(json.dumps({"id": "req-7", "inputs": [{"name": "image", "shape": [len(data)], "datatype": "BYTES",
                  "parameters": {"content_type": "base64"}, "data": data}],
                  "outputs": [{"name": "embedding"}]}))
PY
}

start_server "$TMP/vits_tiny.pth" "$TMP/qwen2_gqa.gguf"

# ---- Server: metadata, health.
check "GET /v2: 200" test "$(get "$URL/v2")" = 200
check "server metadata: name, version, model_repository" json 'd["name"]=="memfit" and d["version"] and "model_repository" in d["extensions"]'
check "GET /v2/health/live: 200 {live: true}" test "$(get "$URL/v2/health/live")" = 200
check "live body" json 'd=={"live": True}'
check "GET /v2/health/ready: 200 {ready: true}" test "$(get "$URL/v2/health/ready")" = 200
check "ready body" json 'd=={"ready": True}'
check "HEAD /v2/health/ready: 200" test "$(code -I "$URL/v2/health/ready")" = 200
check "POST /v2/health/live: 405" test "$(post -D "$TMP/h" -d '{}' "$URL/v2/health/live")" = 405
check "405 has Allow: GET" grep -qi '^Allow: GET' "$TMP/h"
check "405 in the v2 error shape" v2_error "not allowed"

# ---- Model metadata and readiness (ready = loaded; nothing is loaded yet).
check "model metadata: 200" test "$(get "$URL/v2/models/vits_tiny")" = 200
check "DINOv2: BYTES image in, FP32 embedding out" json 'd["name"]=="vits_tiny" and d["platform"]=="memfit-dinov2" and d["versions"]==["1"] and d["inputs"]==[{"name":"image","datatype":"BYTES","shape":[-1]}] and d["outputs"]==[{"name":"embedding","datatype":"FP32","shape":[-1,-1]}]'
check "versioned metadata: 200" test "$(get "$URL/v2/models/qwen2_gqa/versions/1")" = 200
check "Qwen2: BYTES text in, BYTES text_output out" json 'd["platform"]=="memfit-qwen2" and d["inputs"][0]["name"]=="text" and d["outputs"][0]=={"name":"text_output","datatype":"BYTES","shape":[1]}'
check "unknown version: 404" test "$(get "$URL/v2/models/qwen2_gqa/versions/2")" = 404
check "unknown version: named" v2_error "no version '2'"
check "unknown model metadata: 404" test "$(get "$URL/v2/models/nope")" = 404
check "unknown model: v2 error naming it" v2_error "'nope' does not exist"
check "model not loaded: ready 503" test "$(get "$URL/v2/models/vits_tiny/ready")" = 503
check "not ready: says how it loads" v2_error "loads on its first inference request"

# ---- Repository: index, load, unload.
check "index: 200" test "$(post -X POST "$URL/v2/repository/index")" = 200
check "index: both UNAVAILABLE, version 1, with a reason" json 'sorted(m["name"] for m in d)==["qwen2_gqa","vits_tiny"] and all(m["state"]=="UNAVAILABLE" and m["version"]=="1" and m["reason"] for m in d)'
check "index ready only: none" test "$(post -d '{"ready":true}' "$URL/v2/repository/index")" = 200
check "index ready only: empty list" json 'd==[]'
check "load: 200" test "$(post -X POST "$URL/v2/repository/models/vits_tiny/load")" = 200
check "load: READY" json 'd=={"name":"vits_tiny","version":"1","state":"READY","reason":""}'
check "model ready once loaded: 200" test "$(get "$URL/v2/models/vits_tiny/ready")" = 200
check "model ready body" json 'd=={"name":"vits_tiny","ready":True}'
check "index ready only: the loaded model" test "$(post -d '{"ready":true}' "$URL/v2/repository/index")" = 200
check "index ready only: vits_tiny" json '[m["name"] for m in d]==["vits_tiny"]'
check "the same state in /api/models" grep -q '"name":"vits_tiny","family":"dinov2","state":"ready"' <(curl -s "$URL/api/models")
check "unload: 200" test "$(post -d '{"parameters":{}}' "$URL/v2/repository/models/vits_tiny/unload")" = 200
check "unload: UNAVAILABLE" json 'd["state"]=="UNAVAILABLE"'
check "unloaded: ready 503 again" test "$(get "$URL/v2/models/vits_tiny/ready")" = 503
check "load of an unknown model: 404" test "$(post -X POST "$URL/v2/repository/models/nope/load")" = 404
check "load of an unknown model: v2 error" v2_error "nope"
check "load with a config parameter: 400" test "$(post -d '{"parameters":{"config":"{}"}}' "$URL/v2/repository/models/vits_tiny/load")" = 400
check "config refused by name" v2_error "'config' is not supported"
check "index with an unknown member: 400 at its name" test "$(post -d '{"repository_name":"x"}' "$URL/v2/repository/index")" = 400
check "index unknown member named" v2_error "unknown field 'repository_name'"

# ---- Inference: images, equal to /v1/embeddings.
v2_images "${IMAGES[@]}"
check "infer two images: 200" test "$(post -d @"$TMP/v2.json" "$URL/v2/models/vits_tiny/infer")" = 200
cp "$TMP/body" "$TMP/v2_answer.json"
make_request vits_tiny float "${IMAGES[@]}"
check "/v1/embeddings of the same images: 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
"$PY" - "$TMP/v2_answer.json" "$TMP/body" <<'PY'
import json, sys
v2 = json.load(open(sys.argv[1]))
v1 = json.load(open(sys.argv[2]))
assert v2["model_name"] == "vits_tiny" and v2["model_version"] == "1" and v2["id"] == "req-7", v2.keys()
(out,) = v2["outputs"]
n, dim = out["shape"]
assert out["name"] == "embedding" and out["datatype"] == "FP32" and n == 2 and dim == 128, out["shape"]
assert len(out["data"]) == n * dim
ref = [x for e in v1["data"] for x in e["embedding"]]
assert out["data"] == ref, "v2 and v1 embeddings differ"
PY
check "infer: FP32 [2, 128], id echoed, the same floats as /v1/embeddings" test $? -eq 0
check "the model loaded on its first inference" grep -q '"state":"READY"' <(curl -s -XPOST -H 'Content-Type: application/json' "$URL/v2/repository/index")
# A data: URL element and a nested [1, 1] shape are taken too.
"$PY" - "${IMAGES[0]}" >"$TMP/nested.json" <<'PY'
import base64, json, sys
u = "data:image/png;base64," + base64.b64encode(open(sys.argv[1], "rb").read()).decode()
print(json.dumps({"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": [[u]]}]}))
PY
check "infer a data: URL, shape [1, 1]: 200" test "$(post -d @"$TMP/nested.json" "$URL/v2/models/vits_tiny/versions/1/infer")" = 200
check "no id asked, none answered" json '"id" not in d and d["outputs"][0]["shape"]==[1,128]'

# ---- Inference: text, equal to /v1/completions (greedy).
check "infer text: 200" test "$(post -d '{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["Hello, world"]}],"parameters":{"max_tokens":8,"temperature":0}}' "$URL/v2/models/qwen2_gqa/infer")" = 200
cp "$TMP/body" "$TMP/v2_text.json"
check "text_output BYTES [1], usage in parameters" json 'd["outputs"][0]["name"]=="text_output" and d["outputs"][0]["datatype"]=="BYTES" and d["outputs"][0]["shape"]==[1] and d["parameters"]["completion_tokens"]<=8 and d["parameters"]["prompt_tokens"]>0'
check "/v1/completions of the same prompt: 200" test "$(post -d '{"model":"qwen2_gqa","prompt":"Hello, world","max_tokens":8,"temperature":0}' "$URL/v1/completions")" = 200
check "the same text as /v1/completions" "$PY" -c "import json,sys
a=json.load(open(sys.argv[1],encoding='utf-8',errors='replace'))['outputs'][0]['data'][0]
b=json.load(open(sys.argv[2],encoding='utf-8',errors='replace'))['choices'][0]['text']
assert a==b, (a,b)" "$TMP/v2_text.json" "$TMP/body"
check "a base64 prompt: 200" test "$(post -d "{\"inputs\":[{\"name\":\"text\",\"shape\":[1],\"datatype\":\"BYTES\",\"parameters\":{\"content_type\":\"base64\"},\"data\":[\"$(printf 'Hello, world' | base64)\"]}],\"parameters\":{\"max_tokens\":8,\"temperature\":0}}" "$URL/v2/models/qwen2_gqa/infer")" = 200
check "a base64 prompt gives the same text" "$PY" -c "import json,sys
a=json.load(open(sys.argv[1],encoding='utf-8',errors='replace'))['outputs'][0]['data']
b=json.load(open(sys.argv[2],encoding='utf-8',errors='replace'))['outputs'][0]['data']
assert a==b, (a,b)" "$TMP/v2_text.json" "$TMP/body"

# ---- Errors.
infer() { post -d "$1" "$URL/v2/models/${2:-vits_tiny}/infer"; }
check "unknown model: 404" test "$(infer '{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":["AAAA"]}]}' nope)" = 404
check "unknown model: named" v2_error "'nope' does not exist"
check "bad base64: 400" test "$(infer '{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":["AB$$"]}]}')" = 400
check "bad base64: the offset" v2_error "input[0]"
check "wrong datatype: 400" test "$(infer '{"inputs":[{"name":"image","shape":[1],"datatype":"FP32","data":[1.0]}]}')" = 400
check "wrong datatype: named" v2_error "datatype 'FP32'"
check "wrong input name: 400" test "$(infer '{"inputs":[{"name":"input-0","shape":[1],"datatype":"BYTES","data":["AAAA"]}]}')" = 400
check "wrong input name: the right one said" v2_error "its input is 'image'"
check "wrong output name: 400" test "$(infer '{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":["AAAA"]}],"outputs":[{"name":"x"}]}')" = 400
check "unknown top-level member: 400" test "$(infer '{"model":"vits_tiny","inputs":[]}')" = 400
check "unknown member refused at its name" v2_error "unknown field 'model' (expected id, parameters, inputs, outputs)"
check "missing inputs: 400" test "$(infer '{"id":"x"}')" = 400
check "missing inputs: named" v2_error "missing field 'inputs'"
check "shape and data disagree: 400" test "$(infer '{"inputs":[{"name":"image","shape":[3],"datatype":"BYTES","data":["AAAA"]}]}')" = 400
check "shape mismatch: the figures" v2_error "has 1 elements; its shape says 3"
check "generation parameters on an embedding model: 400" test "$(infer '{"parameters":{"max_tokens":3},"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":["AAAA"]}]}')" = 400
check "two prompts to a text model: 400" test "$(infer '{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","data":["a","b"]}]}' qwen2_gqa)" = 400
check "not JSON: 415" test "$(code -X POST -H 'Content-Type: text/plain' -d '{}' "$URL/v2/models/vits_tiny/infer")" = 415
check "GET on infer: 405" test "$(get "$URL/v2/models/vits_tiny/infer")" = 405

# ---- Metrics: the routes' labels.
m=$(curl -s "$URL/metrics")
check "metrics: infer counted by route" grep -q 'memfit_http_requests_total{route="/v2/models/{name}/infer",code="200"} 4' <<<"$m"
check "metrics: repository routes" grep -q 'route="/v2/repository/models/{name}/load",code="200"' <<<"$m"
check "metrics: liveness" grep -q 'route="/v2/health/live",code="200"' <<<"$m"
stop_server
check "SIGTERM exits 0" test $? -eq 0

# ---- API key: liveness needs none, the rest does.
MEMFIT_API_KEY=sekret start_server "$TMP/vits_tiny.pth"
check "key: live without it 200" test "$(get "$URL/v2/health/live")" = 200
check "key: metadata without it 401" test "$(get "$URL/v2")" = 401
check "key: 401 in the v2 shape" v2_error "API key"
check "key: metadata with it 200" test "$(get -H 'Authorization: Bearer sekret' "$URL/v2")" = 200
stop_server

# ---- A budget too small for the model: 503 with the figures.
start_small_budget_server
v2_images "${IMAGES[0]}"
check "budget refusal: 503" test "$(post -d @"$TMP/v2.json" "$URL/v2/models/dino/infer")" = 503
check "budget refusal: the figures" bash -c "grep -Eq '[0-9.]+ ?[kKMG]i?B.*[0-9.]+ ?[kKMG]i?B' '$TMP/body'"
check "budget refusal: v2 shape" v2_error "budget"
check "load refused alike: 503" test "$(post -X POST "$URL/v2/repository/models/dino/load")" = 503
stop_server
finish
