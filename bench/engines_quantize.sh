#!/bin/bash
# What `options: {quantize: q8_0}` costs a DINOv2 ViT-B/14 (random weights,
# bench/make_vit_random.py, F32 safetensors in /tmp, never committed): the
# budget charged and the peak RSS of `memfit run` on one image, the first
# time (the Q8_0 copy is written into the cache, streaming) and the next
# (mapped from the cache), beside the same model used as stored (F32).
#   bench/engines_quantize.sh [BUILD_DIR]      (default build/release)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
memfit=${1:-$here/build/release}/memfit
dir=${TMPDIR:-/tmp}/memfit_engines_quantize
mkdir -p "$dir"
[[ -f $dir/vitb.safetensors ]] || /usr/bin/python3 "$here/bench/make_vit_random.py" "$dir/vitb.safetensors"
cat >"$dir/m.yaml" <<Y
cache_dir: $dir/cache
models:
  - {name: q8_0, family: dinov2, sources: [vitb.safetensors], options: {quantize: q8_0, threads: 2}}
  - {name: f32, family: dinov2, sources: [vitb.safetensors], options: {threads: 2}}
Y
rm -rf "$dir/cache"
img=$here/tests/fixtures/images/rgb8.png
printf '%-22s %14s %14s %8s\n' run "budget charged" "peak RSS" seconds
for what in "q8_0 first (writes the copy)" "q8_0 again (from the cache)" "f32 (as stored)"; do
    model=${what%% *}
    sync
    echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true # cold page cache when root
    out=$( { /usr/bin/time -f 'rss %M %e' "$memfit" run "$dir/m.yaml" "$model" "$img" --stats >/dev/null; } 2>&1)
    charged=$(sed -n 's/^budget: peak reserved \(.*\) of .*/\1/p' <<<"$out")
    read -r rss secs < <(sed -n 's/^rss //p' <<<"$out")
    printf '%-22s %14s %11s MiB %8s\n' "${what%% (*}" "$charged" "$((rss / 1024))" "$secs"
done
ls -l "$dir/cache/converted"
