#!/usr/bin/env bash
# NF4 as stored against Q4_0 (issue 18's goal: NF4 decode within 10 % of
# Q4_0's on the Qwen1.5-1.8B shape, peak RSS <= file + KV + 64 MB). A Hugging
# Face directory with random F16 weights (HF names, config.json; written
# tensor by tensor with Debian's numpy) is quantized by `memfit quantize
# --type nf4 --double-quant` (embeddings and lm_head stay F16, as
# transformers' load_in_4bit keeps them); the same weights are converted to
# GGUF (memfit convert) and quantized to Q4_0 twice: all 2-D weights, and
# with lm_head kept F16 (--keep output.weight), the fair comparison for the
# NF4 directory. bench_llm runs each on 2 threads (prompt 128, 32 generated
# tokens) and prints tokens/s and peak RSS.
# Files go to $MEMFIT_LLM_DIR (default /tmp/memfit_nf4_bench; ~3.7 GB F16 +
# ~1.7 GB per quantized copy for the 1.8B shape). Usage: bench/nf4_bench.sh [--small]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/release/memfit
bench_llm=$root/build/release/bench/bench_llm
dir=${MEMFIT_LLM_DIR:-/tmp/memfit_nf4_bench}
shape=1.8b
[[ ${1:-} == --small ]] && shape=small
[[ -x $bin && -x $bench_llm ]] || { echo "build the release preset first" >&2; exit 1; }
hf=$dir/hf-$shape-f16
nf4=$dir/hf-$shape-nf4
mkdir -p "$hf" "$nf4"
if [[ ! -f $hf/model.safetensors ]]; then
    /usr/bin/python3 - "$hf" "$shape" <<'PY'
import json, math, struct, sys
import numpy as np
out, shape = sys.argv[1], sys.argv[2]
E, H, F, L, V = (2048, 16, 5504, 24, 151936) if shape == "1.8b" else (512, 8, 1408, 8, 32000)
rng = np.random.default_rng(1)
specs = [("model.embed_tokens.weight", (V, E), "F16", 1.0)]
for l in range(L):
    p = "model.layers.%d." % l
    specs += [(p + "input_layernorm.weight", (E,), "F32", -1), (p + "post_attention_layernorm.weight", (E,), "F32", -1)]
    for n in ("q", "k", "v"):
        specs += [(p + "self_attn.%s_proj.weight" % n, (E, E), "F16", 1 / math.sqrt(E)),
                  (p + "self_attn.%s_proj.bias" % n, (E,), "F32", 0.1)]
    specs += [(p + "self_attn.o_proj.weight", (E, E), "F16", 1 / math.sqrt(E)),
              (p + "mlp.gate_proj.weight", (F, E), "F16", 1 / math.sqrt(E)),
              (p + "mlp.up_proj.weight", (F, E), "F16", 1 / math.sqrt(E)),
              (p + "mlp.down_proj.weight", (E, F), "F16", 1 / math.sqrt(F))]
specs += [("model.norm.weight", (E,), "F32", -1), ("lm_head.weight", (V, E), "F16", 1 / math.sqrt(E))]
header, off = {}, 0
for name, shp, dt, _ in specs:
    n = int(np.prod(shp)) * (2 if dt == "F16" else 4)
    header[name] = {"dtype": dt, "shape": list(shp), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
import os
tmp = out + "/model.safetensors.part%d" % os.getpid()
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for name, shp, dt, std in specs:
        if std < 0:
            a = (1.0 + rng.standard_normal(shp, dtype=np.float32) * 0.1)
        else:
            a = rng.standard_normal(shp, dtype=np.float32) * std
        f.write(a.astype(np.float16 if dt == "F16" else np.float32).tobytes())
os.replace(tmp, out + "/model.safetensors")
json.dump({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": E,
           "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
           "num_key_value_heads": H, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
           "rope_theta": 1000000.0, "vocab_size": V, "tie_word_embeddings": False},
          open(out + "/config.json", "w"))
PY
fi
cp "$hf/config.json" "$nf4/"
# Each file is written under a temporary name and renamed, so a concurrent run never reads
# half a file.
part=part$$
[[ -f $nf4/model.safetensors ]] || {
    "$bin" quantize "$hf/model.safetensors" "$nf4/$part.safetensors" --type nf4 --double-quant \
        --threads 2 >/dev/null && mv "$nf4/$part.safetensors" "$nf4/model.safetensors"
}
[[ -f $dir/$shape-f16.gguf ]] || {
    "$bin" convert "$hf" "$dir/$part.gguf" --no-tokenizer >/dev/null &&
        mv "$dir/$part.gguf" "$dir/$shape-f16.gguf"
}
[[ -f $dir/$shape-q4_0.gguf ]] || {
    "$bin" quantize "$dir/$shape-f16.gguf" "$dir/$part.gguf" --type q4_0 --threads 2 >/dev/null &&
        mv "$dir/$part.gguf" "$dir/$shape-q4_0.gguf"
}
[[ -f $dir/$shape-q4_0-f16head.gguf ]] || {
    "$bin" quantize "$dir/$shape-f16.gguf" "$dir/$part.gguf" --type q4_0 --keep output.weight \
        --threads 2 >/dev/null && mv "$dir/$part.gguf" "$dir/$shape-q4_0-f16head.gguf"
}
for m in "$nf4" "$dir/$shape-q4_0-f16head.gguf" "$dir/$shape-q4_0.gguf" "$nf4" \
    "$dir/$shape-q4_0-f16head.gguf"; do
    size=$(du -cbL "$m" | tail -1 | cut -f1)
    echo "== $(basename "$m") ($((size / 1048576)) MiB)"
    "$bench_llm" "$m" --threads 2 --prompt 128 --gen 32
done
