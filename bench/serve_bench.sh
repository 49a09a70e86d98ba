#!/bin/bash
# `memfit serve` throughput and latency with wrk: requests/s, p50 and p99 for
# GET /health and for a DINOv2 embedding (tests/fixtures/dinov2/vits_tiny.pth,
# one 224x224 PNG per request) at concurrency 1, 8 and 64; then the idle RSS
# of a server with no model, with its largest mappings (smaps) and how much
# of it is private (the rest is shared library pages).
#   bench/serve_bench.sh [BUILD_DIR]     (default build/release; SECONDS_EACH=3)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build/release}
secs=${SECONDS_EACH:-3}
command -v wrk >/dev/null || { echo "wrk is not installed (Debian package wrk): skipped"; exit 0; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/memfit_serve_bench.XXXXXX")
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
cp "$here/tests/fixtures/dinov2/vits_tiny.pth" "$dir/"
/usr/bin/python3 - "$here/tests/fixtures/images/rgb8.png" >"$dir/req.json" <<'PY'
import base64, json, sys
u = "data:image/png;base64," + base64.b64encode(open(sys.argv[1], "rb").read()).decode()
print(json.dumps({"model": "vits_tiny", "input": u, "encoding_format": "float"}))
PY

start() { # args...
    "$build/memfit" serve --port 0 --max-connections 200 --max-queue 200 "$@" >"$dir/out" 2>"$dir/err" &
    pid=$!
    for _ in $(seq 200); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.05; done
    url=$(sed -n 's/^listening on //p' "$dir/out")
}
# one wrk run: prints "name c=N: R req/s, p50 X, p99 Y (errors)"
measure() { # name path concurrency [script]
    local args=(-t"$(($3 < 2 ? 1 : 2))" -c"$3" -d"${secs}s" --latency --timeout 10s)
    [[ -n ${4:-} ]] && args+=(-s "$4")
    MEMFIT_WRK_BODY="$dir/req.json" wrk "${args[@]}" "$url$2" >"$dir/wrk" 2>&1
    printf '%-22s c=%-3s %10s req/s  p50 %-9s p99 %-9s %s\n' "$1" "$3" \
        "$(awk '/Requests\/sec/ {print $2}' "$dir/wrk")" \
        "$(awk '$1 == "50%" {print $2}' "$dir/wrk")" "$(awk '$1 == "99%" {print $2}' "$dir/wrk")" \
        "$(grep -E 'Non-2xx|Socket errors' "$dir/wrk" | tr '\n' ' ')"
}

echo "cpus: $(nproc), ${secs} s per run"
start "$dir/vits_tiny.pth"
curl -s -o /dev/null -H 'Content-Type: application/json' -d @"$dir/req.json" "$url/v1/embeddings" # load the model
for c in 1 8 64; do measure "GET /health" /health "$c"; done
for c in 1 8 64; do measure "POST /v1/embeddings" /v1/embeddings "$c" "$here/tests/integration/serve_post.lua"; done
echo "RSS after the runs (model loaded): $(awk '/^VmRSS/ {print $2, $3}' /proc/$pid/status)"
kill "$pid"
wait "$pid" 2>/dev/null || true

start
sleep 1
echo "idle RSS, no model: $(awk '/^VmRSS/ {print $2, $3}' /proc/$pid/status)" \
    "(private $(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' /proc/$pid/smaps_rollup) kB," \
    "shared library pages $(awk '/^Shared_Clean:/ {print $2}' /proc/$pid/smaps_rollup) kB)"
echo "largest mappings (kB of RSS):"
awk '/^[0-9a-f]+-/ {n = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[n] += $2} END {for (k in r) print r[k], k}' \
    /proc/$pid/smaps | sort -rn | head -12 | sed 's/^/  /'
