#!/usr/bin/env bash
# The seeds' service: SAM ViT-B and DINOv2 ViT-B/14 (random weights in the
# real shapes, Q8_0, from make_random_model) served by one `memfit serve`
# inside a 512 MiB memory cgroup, the deployment that was OOM-killed. SAM
# lives in S3 (s3rver, SigV4), DINOv2 on an HTTP origin (nginx); the
# manifest names them by those sources, so both are fetched on first use.
# Three clients send 200 requests in all, mixed: automatic masks (POST
# /api/segment, a few distinct images: the embedding cache serves repeats)
# and embeddings (POST /v1/embeddings). It must hold: zero OOM kills, the
# server alive, every answer 200 or a 503 whose message has the figures,
# at least 90 % served. Prints the figures: requests, 200s, 503s, the
# cgroup's peak, the server's peak RSS, wall seconds.
#
# Needs root and a writable memory cgroup, node with s3rver
# (scripts/install-deps --browser) and nginx; skipped otherwise, and under
# sanitizers (their shadow memory does not fit the limit).
# SEEDS_REQUESTS (200) and SEEDS_CLIENTS (3) change the load.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
[[ ${MEMFIT_SANITIZED:-OFF} == OFF ]] ||
    skip "sanitized build: a 512 MiB limit cannot hold the sanitizer's shadow memory"
command -v curl >/dev/null || skip "curl is needed"
GEN=$BUILD/make_random_model
[[ -x $GEN ]] || skip "helper $GEN not built"
LIMIT_MIB=512
N_REQUESTS=${SEEDS_REQUESTS:-200}
N_CLIENTS=${SEEDS_CLIENTS:-3}
FX=$MEMFIT_FIXTURES
unset MEMFIT_MAX_MEMORY_MB MAX_MEMORY_USAGE_MB MEMFIT_OFFLINE

# The cgroup first: without one there is nothing to show.
CG=$(make_cgroup "memfit-seeds-$$" $((LIMIT_MIB * 1024 * 1024)) 2>"$TMP/cg.err") ||
    skip "$(cat "$TMP/cg.err")"
on_exit "remove_cgroup '$CG'"
source "$(dirname "$0")/remote_lib.bash"
if [[ -f $CG/memory.limit_in_bytes ]]; then # v1
    oom_kills() { awk '/^oom_kill /{print $2}' "$CG/memory.oom_control"; }
    under_oom() { awk '/^under_oom /{print $2}' "$CG/memory.oom_control"; }
    peak_bytes() { cat "$CG/memory.max_usage_in_bytes"; }
    failcnt() { cat "$CG/memory.failcnt"; }
else # v2
    oom_kills() { awk '/^oom_kill /{print $2}' "$CG/memory.events"; }
    under_oom() { echo 0; }
    peak_bytes() { cat "$CG/memory.peak" 2>/dev/null || echo 0; }
    failcnt() { awk '/^max /{print $2}' "$CG/memory.events"; }
fi

# ---- The models, where the deployment keeps them ------------------------------------------
SAM=$TMP/sam_vit_b_q8_0.gguf
DINO=$TMP/dinov2_vitb14_q8_0.gguf
"$GEN" sam-vit-b "$SAM" --type q8_0 --seed 1 || { fail "make_random_model sam-vit-b"; finish; }
"$GEN" dinov2-vit-b14 "$DINO" --type q8_0 --seed 2 || { fail "make_random_model dinov2"; finish; }
start_s3 models
s3_put models sam/sam_vit_b_q8_0.gguf "$SAM"
start_origin
origin_put "$DINO" dinov2/dinov2_vitb14_q8_0.gguf
cat >"$TMP/memfit.yaml" <<YAML
# budget: 80 % of the cgroup's limit (the default)
cache_dir: $TMP/cache
admission_timeout: 2m
models:
  - name: sam
    family: sam
    sources: [s3://models/sam/sam_vit_b_q8_0.gguf]
  - name: dino
    family: dinov2
    sources: [$ORIGIN/dinov2/dinov2_vitb14_q8_0.gguf]
YAML
rm -f "$SAM" "$DINO" # only the remote copies from here on

# ---- The requests -----------------------------------------------------------------------
# Automatic masks of 3 distinct images (each encoded once, then from the
# embedding cache), embeddings of 8.
SEG_IMAGES=(photo600x400.jpg photo1000x700.jpg photo317x211.png)
EMB_IMAGES=(baseline420.jpg baseline444.jpg progressive.jpg wide341x256.jpg tall256x300.png
    square256.png photo211x317.png rgb8.png)
mkdir -p "$TMP/req" "$TMP/resp"
"$PY" - "$FX/images" "$TMP/req" "${#SEG_IMAGES[@]}" "${SEG_IMAGES[@]}" "${EMB_IMAGES[@]}" <<'PY'
import base64, json, sys
images, out, n_seg, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def url(name):
    kind = "png" if name.endswith(".png") else "jpeg"
    data = base64.b64encode(open("%s/%s" % (images, name), "rb").read()).decode()
    return "data:image/%s;base64,%s" % (kind, data)
for i, name in enumerate(names[:n_seg]):
    json.dump({"model": "sam", "image": url(name), "auto": True, "points_per_side": 4,
               "points_per_batch": "auto", "pred_iou_thresh": 0, "stability_score_thresh": 0,
               "output_mode": "coco_rle"}, open("%s/seg%d.json" % (out, i), "w"))
for i, name in enumerate(names[n_seg:]):
    json.dump({"model": "dino", "input": url(name), "encoding_format": "float"},
              open("%s/emb%d.json" % (out, i), "w"))
PY

# ---- The server, inside the cgroup ---------------------------------------------------------
before=$(oom_kills)
export MEMFIT_LOG_LEVEL=info # the fetches and loads in $TMP/err
start_server_in "$CG" --manifest "$TMP/memfit.yaml"
grep -m1 '^budget\|budget:' "$TMP/err" || true
# The segmentation route is on branch `server`; a build without it cannot run this test.
c=$(code -H 'Content-Type: application/json' -d '{}' "$URL/api/segment")
[[ $c != 404 ]] || skip "POST /api/segment is not in this build (it answers 404)"

# client C: requests C, C + N_CLIENTS, ...; every 5th is automatic masks.
# One line per request in $TMP/client.C: index, kind, status, seconds.
client() {
    local c=$1 i kind file route line
    for ((i = c; i < N_REQUESTS; i += N_CLIENTS)); do
        if ((i % 5 == 0)); then
            kind=segment
            file=$TMP/req/seg$(((i / 5) % ${#SEG_IMAGES[@]})).json
            route=/api/segment
        else
            kind=embed
            file=$TMP/req/emb$((i % ${#EMB_IMAGES[@]})).json
            route=/v1/embeddings
        fi
        line=$(curl -s -o "$TMP/resp/$i" -w '%{http_code} %{time_total}' --max-time 600 \
            -H 'Content-Type: application/json' --data @"$file" "$URL$route")
        echo "$i $kind $line" >>"$TMP/client.$c"
    done
}
start=$(date +%s.%N)
clients=()
for ((c = 0; c < N_CLIENTS; c++)); do
    client "$c" &
    clients+=($!)
done
# The server's peak RSS (VmHWM) while the clients run, and the answers.
rss_peak_kb=0
running=1
while ((running)); do
    running=0
    for p in "${clients[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PID/status" 2>/dev/null)
    ((${hwm:-0} > rss_peak_kb)) && rss_peak_kb=$hwm
    ((running)) && sleep 0.5
done
wait "${clients[@]}"
wall=$("$PY" -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" \
    "$(date +%s.%N)")

# ---- The checks -------------------------------------------------------------------------
cat "$TMP"/client.* | sort -n >"$TMP/results"
"$PY" - "$TMP/results" "$TMP/resp" "$N_REQUESTS" >"$TMP/summary" <<'PY'
import json, re, sys
results, resp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.split() for l in open(results) if l.strip()]
bad, counts, times = [], {}, {"segment": [], "embed": []}
figures = re.compile(r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b")
masks = cached = 0
for i, kind, status, secs in rows:
    counts[(kind, status)] = counts.get((kind, status), 0) + 1
    body = open("%s/%s" % (resp, i), "rb").read().decode("utf-8", "replace")
    try:
        d = json.loads(body)
    except ValueError:
        d = None
    if status == "200":
        times[kind].append(float(secs))
        if kind == "embed":
            ok = d and len(d["data"]) == 1 and len(d["data"][0]["embedding"]) == 768
        else:
            ok = d and isinstance(d.get("masks"), list) and isinstance(d.get("embedding_cached"), bool)
            if ok:
                masks += len(d["masks"])
                cached += d["embedding_cached"]
        if not ok:
            bad.append("%s %s: 200 with an unexpected body: %.200s" % (kind, i, body))
    elif status == "503":
        msg = d and d.get("error", {}).get("message", "")
        if not msg or not figures.search(msg):
            bad.append("%s %s: 503 without figures: %.300s" % (kind, i, body))
    else:
        bad.append("%s %s: %s %.300s" % (kind, i, status, body))
served = sum(v for (k, s), v in counts.items() if s == "200")
refused = sum(v for (k, s), v in counts.items() if s == "503")
print("answers %d of %d" % (len(rows), n))
print("served %d" % served)
print("refused %d" % refused)
for kind in ("segment", "embed"):
    t = sorted(times[kind]) or [0]
    print("%s: %s; seconds median %.2f max %.2f" % (kind, ", ".join(
        "%s %d" % (s, v) for (k, s), v in sorted(counts.items()) if k == kind),
        t[len(t) // 2], t[-1]))
print("masks %d, segment answers from the embedding cache %d" % (masks, cached))
for b in bad[:10]:
    print("BAD " + b)
print("bad %d" % len(bad))
PY
cat "$TMP/summary"
answers=$(awk '/^answers/{print $2}' "$TMP/summary")
served=$(awk '/^served/{print $2}' "$TMP/summary")
refused=$(awk '/^refused/{print $2}' "$TMP/summary")
n_bad=$(awk '/^bad/{print $2}' "$TMP/summary")
check "every request answered ($answers of $N_REQUESTS)" [ "${answers:-0}" -eq "$N_REQUESTS" ]
check "every answer 200, or 503 with the figures ($n_bad others)" [ "${n_bad:-1}" -eq 0 ]
check ">= 90 % served ($served of $N_REQUESTS)" [ $((${served:-0} * 10)) -ge $((N_REQUESTS * 9)) ]
check "the server is still alive" kill -0 "$PID"
grep -E '^memfit: info: fetch .*: done' "$TMP/err"
check "SAM was fetched from S3" \
    grep -qE 'fetch .*s3://models/sam/sam_vit_b_q8_0.gguf.*: done' "$TMP/err"
check "DINOv2 was fetched from the origin" \
    grep -qE "fetch .*$ORIGIN/dinov2/dinov2_vitb14_q8_0.gguf.*: done" "$TMP/err"
after=$(oom_kills)
peak=$(peak_bytes)
check "no OOM kill in the cgroup (oom_kill ${before:-0} -> ${after:-0})" \
    [ "${after:-0}" -eq "${before:-0}" ]
check "the cgroup is not under OOM (under_oom $(under_oom))" [ "$(under_oom)" -eq 0 ]
curl -s "$URL/metrics" >"$TMP/metrics"
grep -E '^memfit_(budget_bytes|budget_peak_reserved_bytes|model_(loads|evictions|refusals)_total)' \
    "$TMP/metrics"
reserved=$(awk '/^memfit_budget_peak_reserved_bytes/{printf "%d", $NF / 1048576}' "$TMP/metrics")
# The plans cover what the server really touched: its peak RSS stays within
# the budget's peak reservation plus what no plan counts (the program and its
# libraries, request bodies and decoded images: 48 MiB here).
check "peak RSS $((rss_peak_kb / 1024)) MiB <= peak reserved ${reserved:-0} MiB + 48 MiB" \
    [ $((rss_peak_kb / 1024)) -le $((${reserved:-0} + 48)) ]
kill -TERM "$PID"
wait "$PID"
check "SIGTERM: exit 0" [ $? -eq 0 ]
echo "seeds_service: $N_REQUESTS requests from $N_CLIENTS clients: ${served:-0} x 200," \
    "${refused:-0} x 503; cgroup limit $LIMIT_MIB MiB, peak $((${peak:-0} / 1048576)) MiB" \
    "(memory.failcnt $(failcnt)), OOM kills $((${after:-0} - ${before:-0})); budget peak" \
    "reserved ${reserved:-?} MiB, server peak RSS $((rss_peak_kb / 1024)) MiB; $wall s"
finish
