#!/usr/bin/env bash
# `memfit convert HF_DIR OUT.gguf`: the tiny Hugging Face directories of
# tests/fixtures/llm (scripts/make_llm_reference.py) become GGUFs whose
# tensors are those of the GGUF fixtures (`memfit inspect --json` compared);
# --type q8_0; refusals with their exit codes (1 failure, 2 usage) and
# messages, and no output or temporary file left after a failure. The
# logits are checked in tests/unit/test_models_llm_convert.c.
source "$(dirname "$0")/lib.bash"
FIX=${MEMFIT_FIXTURES:?MEMFIT_FIXTURES not set}/llm
cd "$TMP" || exit 1

expect() { # description, expected exit code, message regex, command...
    local what=$1 code=$2 re=$3
    shift 3
    "$@" >out.txt 2>err.txt
    local rc=$?
    CHECKS=$((CHECKS + 1))
    if [[ $rc -eq $code ]] && grep -Eq "$re" err.txt; then echo "ok: $what"; else
        fail "$what (rc $rc)"
        cat err.txt
    fi
}
# Tensor names, types and shapes of a file, sorted.
tensors() {
    "$MEMFIT" inspect --json "$1" | "$PY" -c 'import json, sys
d = json.load(sys.stdin)
for t in sorted(d["tensors"], key=lambda t: t["name"]):
    print(t["name"], t["type"], t["shape"])'
}

for m in qwen2_mha qwen2_gqa llama_gqa; do
    check "$m: converts" "$MEMFIT" convert "$FIX/hf_$m" "$m.gguf" --no-tokenizer
    tensors "$FIX/$m.gguf" >want.txt
    tensors "$m.gguf" >got.txt
    check "$m: tensors as the GGUF fixture's" cmp -s want.txt got.txt
done
check "q8_0" "$MEMFIT" convert "$FIX/hf_llama_gqa" q8.gguf --no-tokenizer --type q8_0 --threads 2
check "q8_0: 2-D weights are q8_0" grep -q "blk.0.attn_q.weight q8_0" <(tensors q8.gguf)
check "q8_0: norms are f32" grep -q "blk.0.attn_norm.weight f32" <(tensors q8.gguf)

mkdir bad
for f in "$FIX"/hf_llama_gqa/*; do ln -s "$f" bad/; done
rm bad/model-00002-of-00002.safetensors
expect "missing shard" 1 'model-00002-of-00002.safetensors.*not in' \
    "$MEMFIT" convert bad out.gguf --no-tokenizer
rm bad/config.json
expect "missing config.json" 1 'config.json' "$MEMFIT" convert bad out.gguf --no-tokenizer
check "nothing left after failures" test -z "$(ls -A | grep -v -e '^bad$' -e '\.gguf$' -e '\.txt$')"
check "no out.gguf" test ! -e out.gguf
expect "bad --type" 2 "unknown --type 'q5_1'" "$MEMFIT" convert "$FIX/hf_llama_gqa" out.gguf --type q5_1
expect "not .gguf" 2 'OUT.gguf' "$MEMFIT" convert "$FIX/hf_llama_gqa" out.safetensors
expect "--type on a file" 2 'Hugging Face directory' "$MEMFIT" convert q8.gguf x.gguf --type f16
finish
