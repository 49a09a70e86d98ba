#!/bin/bash
# DINOv2 ViT-B/14 forward, memfit against PyTorch (python3-torch, OpenBLAS):
# random weights in the real ViT-B shape (made in /tmp, never committed),
# 224x224, batch 1 and 8, THREADS threads (default 2); memfit in F32, F16,
# Q8_0 and Q4_0 (converted with bench_vit --convert), and on a CPU with
# AVX-512F or AVX-VNNI also F32 and Q8_0 with those turned off (the AVX2
# kernels). Prints one line per configuration: best-of-3 latency and peak RSS
# (VmHWM); isa= names the kernels used.
#   bench/dinov2_bench.sh [BUILD_DIR]     (default build/release)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build/release}
threads=${THREADS:-2}
py=/usr/bin/python3
. "$here/bench/dinov2_files.sh"
for b in 1 8; do
    THREADS=$threads OMP_NUM_THREADS=$threads "$py" "$here/scripts/make_dinov2_reference.py" \
        --bench "$dir/vitb.pth" "$b" 224 224 2>/dev/null
    "$build/bench/bench_vit" "$dir/vitb.pth" --batch "$b" --threads "$threads"
    for t in f32 f16 q8_0 q4_0; do
        "$build/bench/bench_vit" "$dir/vitb-$t.gguf" --batch "$b" --threads "$threads"
    done
    # Where the CPU has AVX-512F / AVX-VNNI, the AVX2 kernels too (isa= tells).
    if "$build/bench/bench_vit" "$dir/vitb-q8_0.gguf" --runs 1 | grep -q 'avx512\|vnni'; then
        for t in f32 q8_0; do
            MEMFIT_NO_AVX512=1 MEMFIT_NO_VNNI=1 "$build/bench/bench_vit" "$dir/vitb-$t.gguf" \
                --batch "$b" --threads "$threads"
        done
    fi
done
