#!/usr/bin/env bash
# `memfit serve` with remote models, as the 512 MB deployment runs them.
# A manifest whose models live on an HTTP origin (DINOv2 .pth), in S3 (a
# DINOv2 GGUF, s3rver checking SigV4 signatures) and on the Hugging Face Hub
# (a Qwen2 GGUF, a loopback server speaking the Hub's resolve URLs): nothing
# is downloaded at start; each is fetched on first use with progress in the
# log, verified, cached and answered (embeddings equal `memfit embed` of the
# local file; chat answered). The S3 server is killed mid-download and the
# origin takes over. The same three as quick-start arguments. Two models that
# do not fit the budget together, asked for by 4 clients for 30 s: every
# request answered 200 after waiting, none refused while the admission
# timeout has not run out. `memfit models` plans every entry with the
# figures serve reserves. A model that can never fit: warned at start,
# refused without Retry-After.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
source "$(dirname "$0")/remote_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
export MEMFIT_CACHE_DIR=$TMP/cache
unset HF_TOKEN HF_HUB_OFFLINE MEMFIT_OFFLINE MEMFIT_MAX_MEMORY_MB MAX_MEMORY_USAGE_MB
IMG=$FX/images/rgb8.png
cp "$FX/dinov2/vits_tiny.pth" "$TMP/dino.pth"
"$MEMFIT" convert "$TMP/dino.pth" "$TMP/dino.gguf" >/dev/null 2>&1 || { fail "convert to GGUF"; finish; }
cp "$FX/llm/qwen2_gqa.gguf" "$TMP/qwen.gguf"
"$MEMFIT" embed --json "$TMP/dino.pth" "$IMG" >"$TMP/ref.jsonl" || { fail "memfit embed"; finish; }

start_s3 models
s3_put models dino/dino.gguf "$TMP/dino.gguf"
start_origin
origin_put "$TMP/dino.pth"
origin_put "$TMP/dino.gguf"
start_hf
hf_put memfit/qwen-tiny "$TMP/qwen.gguf"

# The server's embedding ($TMP/body) equals memfit embed of the local file.
same_as_local() {
    "$PY" - "$TMP/body" "$TMP/ref.jsonl" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["data"][0]["embedding"]
r = json.loads(open(sys.argv[2]).readline())["embedding"]
assert len(e) == len(r), (len(e), len(r))
worst = max(abs(a - b) for a, b in zip(e, r))
assert worst <= 1e-6, "max difference %g" % worst
PY
}
embed() { # MODEL: the status of an embedding of $IMG
    make_request "$1" float "$IMG"
    post -d @"$TMP/req.json" "$URL/v1/embeddings"
}
chat() { # MODEL: the status of a chat completion
    code -H 'Content-Type: application/json' \
        -d "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4,\"temperature\":0}" \
        "$URL/v1/chat/completions"
}
state() { # MODEL: its state in /api/models
    curl -s "$URL/api/models" | "$PY" -c "import json,sys; print([m['state'] for m in json.load(sys.stdin)['data'] if m['name']==sys.argv[1]][0])" "$1"
}

# ---- A manifest: origin, S3 (dying mid-download, the origin behind it), Hub.
cat >"$TMP/m.yaml" <<Y
budget: 64MB
models:
  - name: dino-http
    family: dinov2
    sources: [$ORIGIN/dino.pth]
  - name: dino-s3
    family: dinov2
    sources: [s3://models/dino/dino.gguf, $ORIGIN/dino.gguf]
    sha256: $(sha256sum "$TMP/dino.gguf" | cut -d' ' -f1)
  - name: qwen-hf
    family: qwen2
    sources: [hf://memfit/qwen-tiny/qwen.gguf]
Y
"$MEMFIT" models --json "$TMP/m.yaml" >"$TMP/models.json" 2>"$TMP/models.err"
check "models: plans all three before any download" "$PY" -c "import json,sys
d=json.load(open(sys.argv[1])); ms={m['name']:m for m in d['models']}
assert set(ms)=={'dino-http','dino-s3','qwen-hf'}, ms.keys()
for m in ms.values(): assert m['total_bytes']>0 and m['plan_source']=='header', m
assert ms['qwen-hf']['planned']['KV cache']>0, ms['qwen-hf']" "$TMP/models.json"
check "models: nothing downloaded" test -z "$(ls "$TMP/cache/blobs/sha256" 2>/dev/null)"

# S3 is reached through a proxy sending 200 KB/s, killed during the download
# (a file this small would sit whole in the socket buffers before a kill of
# the S3 server itself could cut it).
start_s3_slow 200k
MEMFIT_LOG_LEVEL=info start_server --manifest "$TMP/m.yaml"
check "start: nothing fetched" test -z "$(ls "$TMP/cache/blobs/sha256" 2>/dev/null)"
check "origin .pth: 200 on first use" test "$(embed dino-http)" = 200
check "origin .pth: equals memfit embed" same_as_local
check "hub GGUF: chat 200 on first use" test "$(chat qwen-hf)" = 200
check "hub GGUF: an answer" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['choices'][0]['message']['role']=='assistant' and d['usage']['completion_tokens']>0, d" "$TMP/body"
(sleep 2 && stop_s3_slow) &
killer=$!
check "S3 endpoint killed mid-download, origin takes over: 200" test "$(embed dino-s3)" = 200
wait "$killer"
check "S3 -> origin: equals memfit embed" same_as_local
# The fetch lines, for the record.
grep -E "fetch|trying|retry" "$TMP/err" | head -20
check "log: download progress" grep -qiE "fetch.*%" "$TMP/err"
check "log: the fallback to the origin" grep -q "trying the next source, $ORIGIN/dino.gguf" "$TMP/err"
check "plans before download: from the header" grep -q "header read before download" "$TMP/err"
for m in dino-http dino-s3 qwen-hf; do
    check "$m: reserved = planned by memfit models" "$PY" -c "import json,sys,urllib.request
plan={m['name']:m['total_bytes'] for m in json.load(open(sys.argv[1]))['models']}
d={m['name']:m for m in json.load(urllib.request.urlopen(sys.argv[2]+'/api/models'))['data']}
assert d[sys.argv[3]]['bytes']==plan[sys.argv[3]], (d[sys.argv[3]]['bytes'], plan[sys.argv[3]])" "$TMP/models.json" "$URL" "$m"
done
stop_server >/dev/null

# ---- quantize: the copy written into the cache once, the budget charged for it.
cat >"$TMP/q.yaml" <<Y
budget: 64MB
models:
  - name: dq
    family: dinov2
    sources: [$ORIGIN/dino.pth]
    options: {quantize: q8_0}
Y
f32=$("$PY" -c "import json,sys; print([m for m in json.load(open(sys.argv[1]))['models'] if m['name']=='dino-http'][0]['total_bytes'])" "$TMP/models.json")
for round in 1 2; do
    MEMFIT_LOG_LEVEL=info start_server --manifest "$TMP/q.yaml"
    check "quantize round $round: 200" test "$(embed dq)" = 200
    check "quantize round $round: close to F32" "$PY" -c "import json,sys
e=json.load(open(sys.argv[1]))['data'][0]['embedding']; r=json.loads(open(sys.argv[2]).readline())['embedding']
dot=sum(a*b for a,b in zip(e,r)); n=(sum(a*a for a in e)*sum(b*b for b in r))**0.5
assert dot/n > 0.99, dot/n" "$TMP/body" "$TMP/ref.jsonl"
    bytes=$(curl -s "$URL/api/models" | "$PY" -c "import json,sys; print([m for m in json.load(sys.stdin)['data'] if m['name']=='dq'][0]['bytes'])")
    echo "quantize round $round: reserved $bytes bytes (F32 plan $f32)"
    check "quantize round $round: charged less than F32" test "$bytes" -lt "$f32"
    n_written=$(grep -c "copy written" "$TMP/err" || true)
    check "quantize round $round: copy written $((2 - round)) time(s)" test "$n_written" = $((2 - round))
    stop_server >/dev/null
done
check "quantize: one copy in the cache" test "$(ls "$TMP/cache/converted/"*-dinov2-q8_0.gguf | wc -l)" = 1
check "quantize: nothing partial left" test -z "$(ls "$TMP/cache/converted/" | grep partial)"

# ---- Quick start: the three source kinds as arguments, a fresh cache.
rm -rf "$TMP/cache"
start_s3 models
s3_put models dino/dino.gguf "$TMP/dino.gguf"
cp "$TMP/dino.gguf" "$TMP/dino2.gguf"
s3_put models dino/dino2.gguf "$TMP/dino2.gguf"
start_server --budget 64MB "$ORIGIN/dino.pth" s3://models/dino/dino2.gguf hf://memfit/qwen-tiny/qwen.gguf
check "quick start: origin .pth 200" test "$(embed dino)" = 200
check "quick start: origin .pth equals memfit embed" same_as_local
check "quick start: S3 GGUF 200" test "$(embed dino2)" = 200
check "quick start: S3 GGUF equals memfit embed" same_as_local
check "quick start: hub chat 200" test "$(chat qwen)" = 200
check "quick start: families detected" "$PY" -c "import json,urllib.request,sys
d={m['name']:m['family'] for m in json.load(urllib.request.urlopen(sys.argv[1]+'/api/models'))['data']}
assert d=={'dino':'dinov2','dino2':'dinov2','qwen':'qwen2'}, d" "$URL"
stop_server >/dev/null

# ---- Two models that do not fit together, 4 clients for 30 s (less under a
# sanitizer, whose shadow memory makes every request slower).
one=$("$PY" -c "import json,sys; print([m for m in json.load(open(sys.argv[1]))['models'] if m['name']=='dino-http'][0]['total_bytes'])" "$TMP/models.json")
budget=$((one * 3 / 2))
cat >"$TMP/two.yaml" <<Y
budget: $budget
admission_timeout: 60s
models:
  - name: a
    family: dinov2
    sources: [$ORIGIN/dino.pth]
  - name: b
    family: dinov2
    sources: [$TMP/dino.gguf]
Y
start_server --manifest "$TMP/two.yaml"
seconds=30
[[ ${MEMFIT_SANITIZED:-OFF} == ON ]] && seconds=10
make_request a float "$IMG" && cp "$TMP/req.json" "$TMP/a.json"
make_request b float "$IMG" && cp "$TMP/req.json" "$TMP/b.json"
client() { # N: alternate a and b until the time is up; one status a line
    local end=$((SECONDS + seconds)) k=$1
    while ((SECONDS < end)); do
        local m=a
        ((k++ % 2)) && m=b
        curl -s -H 'Content-Type: application/json' -o /dev/null -w '%{http_code}\n' -d @"$TMP/$m.json" "$URL/v1/embeddings"
    done >"$TMP/codes.$1"
}
clients=()
for c in 0 1 2 3; do
    client "$c" &
    clients+=($!)
done
wait "${clients[@]}" # not a bare wait: the test's servers are children too
total=$(cat "$TMP"/codes.* | wc -l)
ok=$(grep -c '^200$' <(cat "$TMP"/codes.*) || true)
echo "4 clients, ${seconds} s: $ok of $total requests answered 200"
check "two models in turn: every request 200" test "$ok" = "$total"
check "two models in turn: many requests" test "$total" -ge 20
check "two models in turn: evictions happened" test "$(metric 'memfit_model_evictions_total{model="a"}')" != 0
stop_server >/dev/null

# ---- A model that can never fit: warned at start, refused without Retry-After.
start_server --budget 1MB "$TMP/dino.gguf"
for _ in $(seq 50); do grep -q "can never load" "$TMP/err" && break; sleep 0.1; done
check "never fits: warned at start" grep -q "model dino can never load" "$TMP/err"
make_request dino float "$IMG"
status=$(curl -s -H 'Content-Type: application/json' -D "$TMP/headers" -o "$TMP/body" -w '%{http_code}' -d @"$TMP/req.json" "$URL/v1/embeddings")
check "never fits: 503" test "$status" = 503
check "never fits: code model_too_large" is_error model_too_large
check "never fits: no Retry-After" bash -c "! grep -qi '^retry-after' '$TMP/headers'"
stop_server >/dev/null
finish
