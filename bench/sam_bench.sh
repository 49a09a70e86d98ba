#!/bin/bash
# SAM ViT-B, memfit against PyTorch (python3-torch with OpenBLAS, the
# reference forward of scripts/make_sam_reference.py) on the same random
# weights in the real shapes (made in $SAM_BENCH_DIR, default /tmp, never
# committed), THREADS threads (default 2), rounds alternated (ROUNDS,
# default 2) because the machine is shared:
#   numbers: memfit's F32 embedding and low-res masks against the reference's
#     on the hashed 1024^2 input (bench_sam --compare), and the Q8_0
#     embedding's cosine against F32;
#   encoder at 1024^2 (bench_sam, best of 3): memfit F32 (the .pth mapped),
#     Q8_0 and Q4_0 (memfit quantize copies), against PyTorch F32; peak RSS
#     of each process, mapped weights included;
#   automatic masks, 32 points a side, 16 per batch (memfit segment --auto on
#     a 1024 x 768 picture): memfit's whole generator, with the defaults and
#     with every mask upsampled and scored (--pred-iou-thresh -1e9
#     --stability-score-thresh 0), against PyTorch decoding the same 1024
#     prompts, upsampling every mask and scoring it.
# One line per measurement: "sam_torch ..." / "sam_memfit ..." / "sam_bench ...".
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

ref=$dir/sam_vitb_ref
[[ -s $ref/low_res.bin ]] || "$py" "$here/scripts/make_sam_reference.py" --dump "$pth" "$ref"
"$build/bench/bench_sam" "$pth" --threads "$threads" --runs 1 --compare "$ref" \
    --save "$dir/sam_vitb_f32.emb"
for t in q8_0 q4_0; do
    "$build/bench/bench_sam" "$dir/sam_vitb-$t.gguf" --threads "$threads" --runs 1 \
        --cosine "$dir/sam_vitb_f32.emb" | grep cosine
done
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    OMP_NUM_THREADS=$threads "$py" "$here/scripts/make_sam_reference.py" --bench "$pth" \
        --threads "$threads" --runs 3
    "$build/bench/bench_sam" "$pth" --threads "$threads"
    "$build/bench/bench_sam" "$dir/sam_vitb-q8_0.gguf" --threads "$threads"
    "$build/bench/bench_sam" "$dir/sam_vitb-q4_0.gguf" --threads "$threads"
    run_memfit amg-f32 "$pth" --auto --points-per-side 32 --points-per-batch 16
    run_memfit amg-q8_0 "$dir/sam_vitb-q8_0.gguf" --auto --points-per-side 32 \
        --points-per-batch 16
    run_memfit amg-q8_0-all-scored "$dir/sam_vitb-q8_0.gguf" --auto --points-per-side 32 \
        --points-per-batch 16 --pred-iou-thresh -1e9 --stability-score-thresh 0
done
