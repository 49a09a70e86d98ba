#!/usr/bin/env bash
# memfit as a KServe ModelMesh serving runtime: the official Node gRPC client
# (@grpc/grpc-js + @grpc/proto-loader, tests/integration/modelmesh_player.js)
# plays ModelMesh against two `memfit serve --grpc-port` replicas on
# loopback, each in its own memory cgroup. It reads each replica's capacity
# (runtimeStatus), places three DINOv2 ViT-B/14 Q8_0 models (random weights,
# ~92 MiB each) by the sizes memfit predicts (predictModelSize), two on the
# first replica and the one beyond its capacity on the second; checks that
# predictModelSize = loadModel's sizeInBytes = modelSize, and that each size
# equals the memory the model really takes (RSS growth after a ModelInfer
# that touches every weight) within 5 %; a load past the capacity is refused
# RESOURCE_EXHAUSTED with the figures; a load cancelled mid-way (waiting for
# room) followed by unloadModel leaves nothing (reservations back to the two
# models, no entry); the LLM path (the tiny Qwen2 fixture: text in, text
# out); a remote model whose download stalls half-way (a loopback server),
# its loadModel cancelled mid-download then unloaded: no blob, no partial
# file, no cache lock held, nothing reserved; the gRPC and ModelMesh counters in /metrics;
# everything unloads (budget at 0, RSS back) with zero OOM kills. Skipped without node and the npm packages (scripts/install-deps
# --browser), libgrpc29, a memory cgroup, or in a sanitized build.
source "$(dirname "$0")/lib.bash"
SRC=${MEMFIT_SOURCE:?MEMFIT_SOURCE not set}
NPM=${MEMFIT_NPM_DIR:-$SRC/tools/npm}/node_modules
[[ ${MEMFIT_SANITIZED:-OFF} == OFF ]] || skip "sanitized build: RSS figures include shadow memory"
command -v node >/dev/null || skip "node not installed (scripts/install-deps --browser)"
[[ -d $NPM/@grpc/grpc-js && -d $NPM/@grpc/proto-loader ]] ||
    skip "@grpc/grpc-js or @grpc/proto-loader not in $NPM (scripts/install-deps --browser)"
[[ $(ldconfig -p 2>/dev/null) == *"libgrpc.so.29 "* ]] || skip "libgrpc29 not installed"
command -v curl >/dev/null || skip "curl is needed"
GEN=$BUILD/make_random_model
[[ -x $GEN ]] || skip "helper $GEN not built"
export NODE_PATH=$NPM
MiB=$((1024 * 1024))
LIMIT=$((420 * MiB))
CG_A=$(make_cgroup "memfit-mm-a-$$" $LIMIT) || skip "$(make_cgroup "memfit-mm-x-$$" 1 2>&1 >/dev/null)"
on_exit "remove_cgroup '$CG_A'"
CG_B=$(make_cgroup "memfit-mm-b-$$" $LIMIT) || skip "second cgroup: $(make_cgroup "memfit-mm-y-$$" 1 2>&1 >/dev/null)"
on_exit "remove_cgroup '$CG_B'"
oom_kills() { # cgroup
    if [[ -f $1/memory.oom_control ]]; then
        awk '/^oom_kill /{print $2}' "$1/memory.oom_control"
    else
        awk '/^oom_kill /{print $2}' "$1/memory.events"
    fi
}
cg_usage() { cat "$1/memory.usage_in_bytes" 2>/dev/null || cat "$1/memory.current"; }

for i in 1 2 3; do
    "$GEN" dinov2-vit-b14 "$TMP/m$i.gguf" --type q8_0 --seed "$i" >/dev/null ||
        { fail "make_random_model $i"; finish; }
done
# Their pages out of the page cache, so that each replica's cgroup is charged
# for what it maps (the files were written from this test's cgroup).
"$PY" -c '
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$TMP"/m?.gguf

# Two replicas: a 230 MiB budget holds two of the models, not three.
printf 'budget: 230MiB\nadmission_timeout: 2s\nmodels: []\n' >"$TMP/replica.yaml"
export MEMFIT_CACHE_DIR=$TMP/cache
start_replica() { # name cgroup: sets PID_<name>, HTTP_<name>, GRPC_<name>
    local name=$1 cg=$2 pid
    bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$MEMFIT" serve --port 0 \
        --grpc-port 0 --manifest "$TMP/replica.yaml" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    pid=$!
    on_exit "kill -9 $pid 2>/dev/null"
    for _ in $(seq 200); do
        grep -q '^grpc on' "$TMP/$name.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    printf -v "PID_$name" %s "$pid"
    printf -v "HTTP_$name" %s "$(sed -n 's/^listening on //p' "$TMP/$name.out")"
    printf -v "GRPC_$name" %s "$(sed -n 's/^grpc on //p' "$TMP/$name.out")"
}
start_replica A "$CG_A"
start_replica B "$CG_B"
[[ -n $GRPC_A && -n $GRPC_B ]] || { cat "$TMP/A.err" "$TMP/B.err"; fail "replicas did not start"; finish; }
oom_a=$(oom_kills "$CG_A")
oom_b=$(oom_kills "$CG_B")

mm() { node "$SRC/tests/integration/modelmesh_player.js" "$SRC/proto" call "$@"; }
field() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get(sys.argv[2], ""))' "$@"; }
rss() { awk '/^VmRSS:/{print $2 * 1024}' "/proc/$1/status"; }
reserved() { curl -s "$1/api/models" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["budget"]["reserved_bytes"])'; }

# ---- ModelMesh starts: each replica's status and capacity.
declare -A CAP
for r in A B; do
    g=GRPC_$r
    s=$(mm "${!g}" runtimeStatus '{}')
    check "replica $r: runtimeStatus READY" [ "$(field "$s" status)" = READY ]
    CAP[$r]=$(field "$s" capacityInBytes)
    check "replica $r: capacity = the budget, 230 MiB" [ "${CAP[$r]}" -eq $((230 * MiB)) ]
    check "replica $r: ModelInfer is in methodInfos with the name's path" "$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["methodInfos"]["inference.GRPCInferenceService/ModelInfer"]["idInjectionPath"] == [1], d' "$s"
done

# ---- Placement by predicted size, as ModelMesh does: the first replica with room.
IMG=$(base64 -w0 "$MEMFIT_FIXTURES/images/rgb8.png")
declare -A FREE=([A]=${CAP[A]} [B]=${CAP[B]}) WHERE SIZE
echo "model  replica  predicted  loaded  modelSize  RSS growth  cgroup growth  (bytes)"
for i in 1 2 3; do
    id=m$i
    req="{\"modelId\":\"$id\",\"modelType\":\"dinov2\",\"modelPath\":\"$TMP/$id.gguf\"}"
    p=$(mm "$GRPC_A" predictModelSize "$req")
    predicted=$(field "$p" sizeInBytes)
    r=A
    [[ $predicted -le ${FREE[A]} ]] || r=B
    WHERE[$id]=$r
    g=GRPC_$r h=HTTP_$r pv=PID_$r cgv=CG_$r
    rss0=$(rss "${!pv}")
    cg0=$(cg_usage "${!cgv}")
    l=$(mm "${!g}" loadModel "$req")
    loaded=$(field "$l" sizeInBytes)
    # One inference touches every weight (the model's real footprint), with
    # the model id in ModelMesh's header rather than the request.
    inf=$(mm "${!g}" ModelInfer "{\"__metadata\":{\"mm-model-id\":\"$id\"},\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"contents\":{\"bytes_contents\":[\"$IMG\"]}}]}")
    check "$id: ModelInfer via mm-model-id: FP32 [1, 768] in raw_output_contents" "$PY" -c '
import base64, json, sys
d = json.loads(sys.argv[1])
assert d["outputs"][0]["datatype"] == "FP32" and d["outputs"][0]["shape"] == ["1", "768"], d
assert len(base64.b64decode(d["raw_output_contents"][0])) == 768 * 4, d' "$inf"
    sz=$(field "$(mm "${!g}" modelSize "{\"modelId\":\"$id\"}")" sizeInBytes)
    grow=$(($(rss "${!pv}") - rss0))
    cgrow=$(($(cg_usage "${!cgv}") - cg0))
    SIZE[$id]=$loaded
    FREE[$r]=$((FREE[$r] - loaded))
    echo "$id     $r        $predicted  $loaded  $sz  $grow  $cgrow"
    check "$id: predictModelSize = loadModel's size = modelSize" \
        [ "$predicted" = "$loaded" -a "$loaded" = "$sz" -a -n "$loaded" ]
    check "$id: size within 5 % of the RSS growth ($loaded vs $grow)" \
        "$PY" -c 'import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); sys.exit(abs(a - b) > 0.05 * a)' \
        "$loaded" "$grow"
done
check "placement: m1 and m2 on A, m3 (beyond A's capacity) on B" \
    [ "${WHERE[m1]}${WHERE[m2]}${WHERE[m3]}" = AAB ]

# ---- A load past the capacity is refused, with the figures.
over=$(mm "$GRPC_A" loadModel "{\"modelId\":\"m3\",\"modelType\":\"dinov2\",\"modelPath\":\"$TMP/m3.gguf\"}")
echo "over capacity: $over"
check "A: a third model is refused RESOURCE_EXHAUSTED with the figures" "$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
assert d.get("error") == "RESOURCE_EXHAUSTED" and "MiB" in d["details"] and "free" in d["details"], d' "$over"

# ---- ModelMesh cancels a load mid-way (waiting for room), then unloads it at once.
c=$(mm "$GRPC_A" loadModel "{\"modelId\":\"m3\",\"modelType\":\"dinov2\",\"modelPath\":\"$TMP/m3.gguf\"}" 500)
check "A: the load is cancelled" [ "$(field "$c" error)" = CANCELLED ]
u=$(mm "$GRPC_A" unloadModel '{"modelId":"m3"}')
check "A: unloadModel after the cancel: OK" [ -z "$(field "$u" error)" ]
check "A: nothing left of m3: reservations are m1 + m2 exactly" \
    [ "$(reserved "$HTTP_A")" -eq $((SIZE[m1] + SIZE[m2])) ]
check "A: no m3 in the model table" bash -c "! curl -s '$HTTP_A/api/models' | grep -q '\"m3\"'"
check "A: no mapping of m3 and no file of it open" \
    bash -c "! grep -q m3.gguf /proc/$PID_A/maps && ! ls -l /proc/$PID_A/fd | grep -q m3.gguf"

# ---- The LLM path on B: a prompt in, a completion out (BYTES both ways).
LLM=$MEMFIT_FIXTURES/llm/qwen2_gqa.gguf
l=$(mm "$GRPC_B" loadModel "{\"modelId\":\"qwen\",\"modelType\":\"\",\"modelPath\":\"$LLM\"}")
check "qwen: loadModel (family detected) OK with a size" \
    [ -z "$(field "$l" error)" -a -n "$(field "$l" sizeInBytes)" ]
PROMPT=$(printf 'Hello, world' | base64 -w0)
t=$(mm "$GRPC_B" ModelInfer "{\"model_name\":\"qwen\",\"parameters\":{\"max_tokens\":{\"int64_param\":8},\"temperature\":{\"double_param\":0}},\"inputs\":[{\"name\":\"text\",\"datatype\":\"BYTES\",\"shape\":[1],\"contents\":{\"bytes_contents\":[\"$PROMPT\"]}}]}")
echo "qwen: $t"
check "qwen: ModelInfer: text_output BYTES [1], a completion of at most 8 tokens" "$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
o = d["outputs"][0]
assert o["name"] == "text_output" and o["datatype"] == "BYTES" and o["shape"] == ["1"], d
text = o["contents"]["bytes_contents"][0]
assert isinstance(text, str) and text, d
p = d["parameters"]
assert 0 < int(p["completion_tokens"]["int64_param"]) <= 8, p' "$t"
t2=$(mm "$GRPC_B" ModelInfer "{\"model_name\":\"qwen\",\"parameters\":{\"max_tokens\":{\"int64_param\":8},\"temperature\":{\"double_param\":0}},\"inputs\":[{\"name\":\"text\",\"datatype\":\"BYTES\",\"shape\":[1],\"contents\":{\"bytes_contents\":[\"$PROMPT\"]}}]}")
check "qwen: the same prompt at temperature 0 gives the same text" "$PY" -c '
import json, sys
a, b = (json.loads(x)["outputs"][0]["contents"]["bytes_contents"] for x in sys.argv[1:])
assert a == b, (a, b)' "$t" "$t2"
check "qwen: unloadModel OK" [ -z "$(field "$(mm "$GRPC_B" unloadModel '{"modelId":"qwen"}')" error)" ]

# ---- A remote model whose download stalls half-way: ModelMesh cancels the
# load mid-download, then unloads it. Nothing stays: no blob, no partial
# file, no cache lock held, nothing reserved.
mkdir -p "$TMP/www"
cp "$LLM" "$TMP/www/remote.gguf"
"$PY" "$SRC/tests/integration/faulty_server.py" --root "$TMP/www" --log "$TMP/www.log" \
    --port-file "$TMP/www.port" &
on_exit "kill $! 2>/dev/null"
for _ in $(seq 100); do [[ -s $TMP/www.port ]] && break; sleep 0.05; done
before_b=$(reserved "$HTTP_B")
c=$(mm "$GRPC_B" loadModel "{\"modelId\":\"remote\",\"modelType\":\"\",\"modelPath\":\"http://127.0.0.1:$(cat "$TMP/www.port")/stall/remote.gguf\"}" 1500)
echo "remote: $c; the server saw:"
cat "$TMP/www.log"
check "remote: the load is cancelled" [ "$(field "$c" error)" = CANCELLED ]
check "remote: cancelled mid-download (the whole-file GET had begun)" \
    grep -q "^GET /stall/remote.gguf status=200" "$TMP/www.log"
u=$(mm "$GRPC_B" unloadModel '{"modelId":"remote"}')
check "remote: unloadModel after the cancel: OK" [ -z "$(field "$u" error)" ]
echo "cache after the cancel:"
find "$MEMFIT_CACHE_DIR" -type f 2>/dev/null | sed "s|$MEMFIT_CACHE_DIR/||"
# A cancelled download keeps nothing: no blob, no partial file, no .meta
# (only lock files, which hold no data and no lock).
check "remote: no file of the download is left in the cache" bash -c "
[ \$(find '$MEMFIT_CACHE_DIR' -type f ! -name '*.lock' -size +0 | wc -l) -eq 0 ]"
check "remote: no cache lock held" bash -c "
for l in \$(find '$MEMFIT_CACHE_DIR' -name '*.lock' 2>/dev/null); do flock -n \"\$l\" true || exit 1; done"
check "remote: nothing reserved for it" [ "$(reserved "$HTTP_B")" -eq "$before_b" ]
check "remote: no entry in the model table" bash -c "! curl -s '$HTTP_B/api/models' | grep -q '\"remote\"'"

# ---- gRPC and ModelMesh counters in /metrics.
curl -s "$HTTP_A/metrics" >"$TMP/metrics_a"
curl -s "$HTTP_B/metrics" >"$TMP/metrics_b"
grep -E '^memfit_(grpc_requests_total|modelmesh)' "$TMP/metrics_a"
sample() { awk -v k="$2" 'index($0, k) == 1 {print $NF; f = 1; exit} END {if (!f) print 0}' "$1"; }
check "A: loadModel OK counted (2)" \
    [ "$(sample "$TMP/metrics_a" 'memfit_grpc_requests_total{method="mmesh.ModelRuntime/loadModel",code="OK"}')" = 2 ]
check "A: the refused and the cancelled loads counted" [ \
    "$(sample "$TMP/metrics_a" 'memfit_grpc_requests_total{method="mmesh.ModelRuntime/loadModel",code="RESOURCE_EXHAUSTED"}')" = 1 -a \
    "$(sample "$TMP/metrics_a" 'memfit_modelmesh_loads_total{result="cancelled"}')" = 1 ]
check "A: ModelMesh loads ok 2, unloads ok 1" [ \
    "$(sample "$TMP/metrics_a" 'memfit_modelmesh_loads_total{result="ok"}')" = 2 -a \
    "$(sample "$TMP/metrics_a" 'memfit_modelmesh_unloads_total{result="ok"}')" = 1 ]
check "B: ModelInfer latency histogram (3 calls: m3 and qwen twice)" \
    [ "$(sample "$TMP/metrics_b" 'memfit_grpc_request_duration_seconds_count{method="inference.GRPCInferenceService/ModelInfer",code="OK"}')" = 3 ]
check "B: the cancelled download counted" \
    [ "$(sample "$TMP/metrics_b" 'memfit_modelmesh_loads_total{result="cancelled"}')" = 1 ]

# ---- Everything unloads: budgets at 0, memory back.
for i in 1 2 3; do
    id=m$i r=${WHERE[m$i]}
    g=GRPC_$r
    u=$(mm "${!g}" unloadModel "{\"modelId\":\"$id\"}")
    check "$id: unloadModel OK" [ -z "$(field "$u" error)" ]
done
check "unknown id: unloadModel OK" [ -z "$(field "$(mm "$GRPC_B" unloadModel '{"modelId":"nope"}')" error)" ]
for r in A B; do
    h=HTTP_$r pv=PID_$r
    check "replica $r: nothing reserved" [ "$(reserved "${!h}")" -eq 0 ]
    echo "replica $r: RSS after unloading everything: $(($(rss "${!pv}") / MiB)) MiB"
    check "replica $r: RSS back under 60 MiB" [ "$(rss "${!pv}")" -lt $((60 * MiB)) ]
    check "replica $r: ModelReady for an unloaded model is NOT_FOUND" \
        [ "$(field "$(mm "$(eval echo \$GRPC_$r)" ModelReady '{"name":"m1"}')" error)" = NOT_FOUND ]
done

for r in A B; do
    pv=PID_$r
    kill -TERM "${!pv}"
    wait "${!pv}"
    check "replica $r: SIGTERM: exit 0" [ $? -eq 0 ]
done
check "no OOM kill in A (${oom_a:-0} -> $(oom_kills "$CG_A"))" [ "$(oom_kills "$CG_A")" -eq "${oom_a:-0}" ]
check "no OOM kill in B (${oom_b:-0} -> $(oom_kills "$CG_B"))" [ "$(oom_kills "$CG_B")" -eq "${oom_b:-0}" ]
finish
