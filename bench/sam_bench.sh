#!/bin/bash
# SAM ViT-B, memfit against PyTorch (python3-torch with OpenBLAS, the
# reference forward of scripts/make_sam_reference.py) on the same random
# weights in the real shapes (made in $SAM_BENCH_DIR, default /tmp, never
# committed), THREADS threads (default 2), rounds alternated (ROUNDS,
# default 2) because the machine is shared:
#   encoder at 1024^2: memfit F32 (the .pth mapped), Q8_0 and Q4_0 (memfit
#     quantize copies); PyTorch F32. Time and peak RSS of the process.
#   automatic masks, 32 points a side, 16 per batch: memfit's full
#     generator (defaults, then with every mask upsampled and scored:
#     --pred-iou-thresh -1e9 --stability-score-thresh 0), against PyTorch
#     decoding the same 1024 prompts, upsampling every mask to 1024^2 and
#     scoring it (what the reference generator does before its NMS).
# One line per run: "sam_bench kind=... time_s=... peak_rss_mib=...".
#   bench/sam_bench.sh [BUILD_DIR]     (default build/release)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build/release}
threads=${THREADS:-2}
rounds=${ROUNDS:-2}
py=/usr/bin/python3
dir=${SAM_BENCH_DIR:-/tmp}
memfit=$build/memfit
if ! "$py" -c "import torch" 2>/dev/null; then
    echo "SKIPPED: sam_bench needs python3-torch for /usr/bin/python3 (scripts/install-deps --bench)"
    exit 0
fi
pth=$dir/sam_vitb.pth
[[ -s $pth ]] || "$py" "$here/scripts/make_sam_reference.py" --vitb "$pth"
for t in q8_0 q4_0; do
    [[ -s $dir/sam_vitb-$t.gguf ]] || "$memfit" quantize "$pth" "$dir/sam_vitb-$t.gguf" --type "$t" >/dev/null
done
# A 1024 x 768 picture: the encoder always runs at 1024^2, the masks come
# back at this size.
image=$dir/sam_bench.png
[[ -s $image ]] || "$py" - "$image" <<'EOF'
import struct, sys, zlib
w, h = 1024, 768
rows = b"".join(b"\0" + bytes(v for x in range(w)
                               for v in ((x * 3 + y) % 256, (x ^ y) % 256, (x * y // 97) % 256))
                for y in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
EOF

# memfit: seconds from --stats ("encoder X s", "masks Y s"), peak RSS from
# /usr/bin/time (the mapped weights included).
run_memfit() {
    local kind=$1 model=$2
    shift 2
    local log
    log=$(/usr/bin/time -f "peak_kib=%M wall_s=%e" "$memfit" segment "$model" "$image" \
        --threads "$threads" --budget 4GB --stats "$@" 2>&1 >/dev/null)
    local enc amg rss
    enc=$(sed -n 's/.*encoder \([0-9.]*\) s.*/\1/p' <<<"$log")
    amg=$(sed -n 's/.*masks \([0-9.]*\) s.*/\1/p' <<<"$log")
    rss=$(sed -n 's/.*peak_kib=\([0-9]*\).*/\1/p' <<<"$log")
    local masks
    masks=$(sed -n 's/^automatic: \([0-9]*\) masks.*/\1/p' <<<"$log")
    echo "sam_bench kind=$kind threads=$threads encoder_s=$enc${amg:+ amg_s=$amg masks=$masks}" \
        "peak_rss_mib=$((rss / 1024))"
}

for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    OMP_NUM_THREADS=$threads "$py" "$here/scripts/make_sam_reference.py" --bench "$pth" \
        --threads "$threads" --runs 1
    run_memfit encoder-f32 "$pth" --point 512,384
    run_memfit encoder-q8_0 "$dir/sam_vitb-q8_0.gguf" --point 512,384
    run_memfit encoder-q4_0 "$dir/sam_vitb-q4_0.gguf" --point 512,384
    run_memfit amg-f32 "$pth" --auto --points-per-side 32 --points-per-batch 16
    run_memfit amg-q8_0 "$dir/sam_vitb-q8_0.gguf" --auto --points-per-side 32 \
        --points-per-batch 16
    run_memfit amg-q8_0-all-scored "$dir/sam_vitb-q8_0.gguf" --auto --points-per-side 32 \
        --points-per-batch 16 --pred-iou-thresh -1e9 --stability-score-thresh 0
done
