#!/usr/bin/env bash
# `memfit quantize` speed and memory: makes a ~1 GB F16 GGUF (llama-shaped,
# 30 layers of dim 2048, by build/release/quantize_sample) in a temporary
# directory, quantizes it to q8_0, q4_0 and q4_k with --threads 2, and prints
# MB/s (input bytes / wall time) and peak RSS (VmHWM, from /usr/bin/time -v,
# or polled from /proc otherwise). Goal: peak RSS under 300 MB whatever the
# model size. The files are deleted at the end.
# Usage: bench/quantize_bench.sh [LAYERS] (default 30, ~1 GB)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/release/memfit sample=$root/build/release/quantize_sample
for b in "$bin" "$sample"; do [[ -x $b ]] || { echo "$b missing: build first (make)" >&2; exit 1; }; done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memfit-qbench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
layers=${1:-30}

"$sample" "$tmp/in.gguf" f16 "$layers" 2048
in_bytes=$(stat -c %s "$tmp/in.gguf")
printf 'input: %s layers, %.0f MB F16 GGUF\n' "$layers" "$(echo "$in_bytes / 1000000" | bc -l)"
printf '%-6s %8s %10s %10s %12s\n' type secs "MB/s" "out MB" "peak RSS MB"
for t in q8_0 q4_0 q4_k; do
    out=$tmp/out_$t.gguf
    start=$(date +%s.%N)
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -v "$bin" quantize "$tmp/in.gguf" "$out" --type "$t" --threads 2 \
            >/dev/null 2>"$tmp/time.txt"
        hwm_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
    else
        "$bin" quantize "$tmp/in.gguf" "$out" --type "$t" --threads 2 >/dev/null &
        pid=$!
        hwm_kb=0
        while kill -0 $pid 2>/dev/null; do
            v=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
            [[ ${v:-0} -gt $hwm_kb ]] && hwm_kb=$v
            sleep 0.05
        done
        wait $pid
    fi
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc -l)
    printf '%-6s %8.2f %10.1f %10.1f %12.1f\n' "$t" "$secs" \
        "$(echo "$in_bytes / 1000000 / $secs" | bc -l)" \
        "$(echo "$(stat -c %s "$out") / 1000000" | bc -l)" "$(echo "$hwm_kb / 1024" | bc -l)"
    rm -f "$out"
done
