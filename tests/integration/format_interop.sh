#!/usr/bin/env bash
# Interop of the format layer with independent implementations:
# - a GGUF written by memfit is read by Hugging Face's @huggingface/gguf (npm):
#   same tensors (names, ggml types, shapes, offsets) and metadata values;
# - with PyTorch installed, tensors saved by torch.save are converted by
#   `memfit convert` to GGUF and safetensors, and the bytes at the offsets
#   `memfit inspect --json` reports equal torch's own tensor bytes.
# Skips (exit 77) when neither npm nor torch is available.
set -uo pipefail
bin=${MEMFIT_BIN:?}
build=${MEMFIT_BUILD:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ran=0

if command -v npm >/dev/null && command -v node >/dev/null &&
    (cd "$work" && timeout 180 npm install --silent --no-audit --no-fund @huggingface/gguf@0.4.6 \
        >npm.log 2>&1); then
    "$build/format_sample" "$work/s.gguf" || exit 1
    cat >"$work/read.mjs" <<'JS'
import { gguf } from "@huggingface/gguf";
const r = await gguf(process.argv[2], { allowLocalFile: true });
console.log(JSON.stringify({ metadata: r.metadata, tensorInfos: r.tensorInfos,
    tensorDataOffset: r.tensorDataOffset }, (k, v) => typeof v === "bigint" ? Number(v) : v));
JS
    (cd "$work" && node read.mjs "$work/s.gguf") >"$work/hf.json" || { echo "node failed"; exit 1; }
    "$bin" inspect --json --all "$work/s.gguf" >"$work/mf.json" || exit 1
    python3 - "$work/hf.json" "$work/mf.json" <<'PY' || exit 1
import json, sys
hf = json.load(open(sys.argv[1])); mf = json.load(open(sys.argv[2]))
ids = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8, "q4_k": 12, "q6_k": 14, "i32": 26, "bf16": 30}
ti = hf["tensorInfos"]
assert len(ti) == len(mf["tensors"]), (len(ti), len(mf["tensors"]))
for a, b in zip(ti, mf["tensors"]):
    assert a["name"] == b["name"], (a, b)
    assert a["dtype"] == ids[b["type"]], (a, b)
    assert list(reversed(a["shape"])) == b["shape"], (a, b)  # ggml order vs outermost-first
    assert hf["tensorDataOffset"] + a["offset"] == b["offset"], (a, b)
meta = {k: v for k, v in hf["metadata"].items() if k not in ("version", "tensor_count", "kv_count")}
assert hf["metadata"]["version"] == 3
assert set(meta) == set(mf["metadata"]), (sorted(meta), sorted(mf["metadata"]))
for k, v in meta.items():
    m = mf["metadata"][k]
    if isinstance(m, dict):
        assert m["length"] == len(v) and m["values"] == v, (k, v, m)
    elif isinstance(v, float):
        assert abs(v - m) < 1e-9, (k, v, m)
    else:
        assert v == m, (k, v, m)
print("interop: @huggingface/gguf reads memfit's GGUF: %d tensors, %d keys agree" % (len(ti), len(meta)))
PY
    ran=1
else
    echo "note: npm/node or the @huggingface/gguf package is not available; GGUF interop not checked"
fi

if /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
    /usr/bin/python3 - "$work" <<'PY' || exit 1
import collections, sys, torch
torch.manual_seed(1)
sd = collections.OrderedDict()
sd["layers.0.w"] = torch.randn(8, 32)
sd["layers.0.b"] = torch.randn(8)
sd["emb"] = torch.randn(5, 16).half()
sd["bf"] = torch.randn(3, 4).to(torch.bfloat16)
sd["idx"] = torch.arange(7, dtype=torch.int32)
sd["view"] = torch.randn(40)[8:24]
torch.save(sd, sys.argv[1] + "/t.pth")
torch.save(sd, sys.argv[1] + "/ref.pt")
PY
    for out in t.gguf t.safetensors; do
        "$bin" convert "$work/t.pth" "$work/$out" >/dev/null || exit 1
        "$bin" inspect --json "$work/$out" >"$work/$out.json" || exit 1
    done
    "$bin" inspect --json "$work/t.pth" >"$work/t.pth.json" || exit 1
    /usr/bin/python3 - "$work" <<'PY' || exit 1
import json, sys, torch
w = sys.argv[1]
sd = torch.load(w + "/ref.pt")
for f in ("t.pth", "t.gguf", "t.safetensors"):
    info = json.load(open("%s/%s.json" % (w, f)))
    raw = open("%s/%s" % (w, f), "rb").read()
    assert len(info["tensors"]) == len(sd), f
    for t in info["tensors"]:
        ref = sd[t["name"]].contiguous()
        assert t["shape"] == list(ref.shape), (f, t)
        want = (ref.view(torch.int16) if ref.dtype == torch.bfloat16 else ref).numpy().tobytes()
        got = raw[t["offset"]:t["offset"] + t["bytes"]]
        assert got == want, (f, t["name"])
print("interop: torch.save -> memfit (pth, gguf, safetensors): %d tensors, bytes equal" % len(sd))
PY
    ran=1
else
    echo "note: PyTorch/numpy not installed (scripts/install-deps --bench); torch interop not checked"
fi

if [[ $ran -eq 0 ]]; then
    echo "SKIPPED: neither @huggingface/gguf (npm) nor PyTorch is available"
    exit 77
fi
