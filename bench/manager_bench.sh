#!/bin/bash
# The model manager's costs, and what a load -> infer -> unload cycle gives
# back, memfit against PyTorch (Debian's python3-torch, OpenBLAS):
#   1. acquire + release of a loaded model, 1 and 2 threads (ns per pair);
#   2. per DINOv2 ViT-B/14 weight file (random weights, made in /tmp by
#      scripts/make_dinov2_reference.py --vitb and bench_vit --convert, never
#      committed; F32/F16/Q8_0/Q4_0 give a few file sizes): cold load time
#      (page cache dropped first), first and second forward at 224x224, and
#      RSS / cgroup working set / the pressure figure before the load, after
#      load + infer, after unload;
#   3. PyTorch: torch.load of the same ViT-B (F32 state dict), one forward
#      at 224x224 under inference_mode, `del model; gc.collect()`, with the
#      same three measurements (taken by `bench_manager --memory`, the same
#      code as memfit's side).
# The cgroup figures are of the whole cgroup (other processes in it move
# them); RSS is this process alone.
#   bench/manager_bench.sh [BUILD_DIR]     (default build/release)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build/release}
threads=${THREADS:-2}
py=/usr/bin/python3
bm=$build/bench/bench_manager
. "$here/bench/dinov2_files.sh"

echo "== 1. acquire + release of a loaded model"
"$bm" "${PAIRS:-2000000}"

echo
echo "== 2. memfit: load -> infer (224x224, batch 1, $threads threads) -> unload, cold, per file"
THREADS=$threads "$bm" --cycle "$dir/vitb-q4_0.gguf" "$dir/vitb-q8_0.gguf" "$dir/vitb-f16.gguf" \
    "$dir/vitb-f32.gguf" "$dir/vitb.pth"

echo
echo "== 3. PyTorch: torch.load -> forward (inference_mode) -> del model; gc.collect()"
# Cold too: drop the file's page cache first (python's os.posix_fadvise).
OMP_NUM_THREADS=$threads "$py" - "$dir/vitb.pth" "$bm" "$here/scripts" "$threads" <<'PY'
import gc, os, subprocess, sys, time
path, bm, scripts, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, scripts)
import torch
import make_dinov2_reference as ref

torch.set_num_threads(threads)

def mem():
    # RSS of this process, working set of its cgroup, usage, judged (bytes -> MB)
    out = subprocess.run([bm, "--memory"], capture_output=True, text=True, check=True).stdout
    return [int(v) / 1e6 if int(v) < 2**63 else -1.0 for v in out.split()]

fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
x = ref.input_tensor(1, 224, 224, 1)
before = mem()
t0 = time.perf_counter()
model = torch.load(path)
t1 = time.perf_counter()
with torch.inference_mode():
    y = ref.forward(model, x, "orig")
t2 = time.perf_counter()
with torch.inference_mode():
    y = ref.forward(model, x, "orig")
t3 = time.perf_counter()
loaded = mem()
del model, y
gc.collect()
after = mem()
size = os.path.getsize(path) / 1e6
print("%-16s %8s %8s %8s %8s | %20s | %20s | %20s" % ("", "", "", "", "", "RSS MB",
      "cgroup working set", "judged (pressure)"))
print("%-16s %8s %8s %8s %8s | %6s %6s %6s | %6s %6s %6s | %6s %6s %6s" % (
    "file", "size MB", "load ms", "1st fwd", "2nd fwd", "before", "loaded", "del",
    "before", "loaded", "del", "before", "loaded", "del"))
print("%-16s %8.1f %8.1f %8.1f %8.1f | %6.0f %6.0f %6.0f | %6.0f %6.0f %6.0f | %6.0f %6.0f %6.0f" % (
    "torch " + os.path.basename(path), size, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
    before[0], loaded[0], after[0], before[1], loaded[1], after[1], before[3], loaded[3], after[3]))
PY
