#!/bin/bash
# `memfit run` and `memfit models` end to end on the tiny DINOv2 and LLM
# fixtures: the budget printed with its source (flag, environment,
# manifest), the plan by category and whether it fits (DINOv2 and LLM
# entries; NEVER beyond the whole budget), `run` printing what `embed`
# prints (same floats) through the manager and generating with an LLM
# entry, `generate` with a manifest model's name, quantize at load, refusal
# when the model cannot fit, and usage/failure exit codes.
source "$(dirname "$0")/lib.bash"
FIX=${MEMFIT_FIXTURES:?}
MODEL=$FIX/dinov2/vits_tiny.pth
IMG=$FIX/images/baseline420.jpg

cat >"$TMP/m.yaml" <<YAML
budget: 64MiB
cache_dir: $TMP
models:
  - name: dino
    family: dinov2
    sources: [$MODEL]
    options: {threads: 1}
  - name: dino-q8
    family: dinov2
    sources: [$MODEL]
    options: {quantize: q8_0, threads: 1}
    limits: {max_image_size: 56}
YAML

"$MEMFIT" models "$TMP/m.yaml" >"$TMP/models.txt" 2>"$TMP/models.err"
check "models exits 0" [ $? -eq 0 ]
check "budget from the manifest on stderr" grep -q "budget: 64.0 MiB (.*m.yaml: budget 64.0 MiB)" "$TMP/models.err"
check "one row per model, fits" [ "$(grep -c ' yes ' "$TMP/models.txt")" -eq 2 ]

"$MEMFIT" models "$TMP/m.yaml" --json --budget 1MiB >"$TMP/models.json"
check "--json: plan by category, total, does not fit 1 MiB" "$PY" -c "import json,sys
d=json.load(open('$TMP/models.json'))
m=d['models'][0]
ok=d['budget_bytes']==1048576 and d['budget_source']=='--budget 1MiB' and m['family']=='dinov2'
ok=ok and m['total_bytes']==sum(m['planned'].values()) and m['planned']['weights']>1000000
q=d['models'][1]
ok=ok and not m['fits'] and q['planned']['weights']<m['planned']['weights'] and q['plan_source']=='estimate'
ok=ok and q['max_image_size']==56 and q['max_batch']==1 and not q['provisional']
sys.exit(0 if ok else 1)"

MEMFIT_MAX_MEMORY_MB=48 "$MEMFIT" models "$TMP/m.yaml" >/dev/null 2>"$TMP/env.err"
check "environment beats the manifest" grep -q "budget: 48.0 MiB (MEMFIT_MAX_MEMORY_MB=48" "$TMP/env.err"

"$MEMFIT" run "$TMP/m.yaml" dino "$IMG" --json >"$TMP/run.jsonl" 2>"$TMP/run.err"
check "run exits 0" [ $? -eq 0 ]
"$MEMFIT" embed "$MODEL" "$IMG" --json --threads 1 >"$TMP/embed.jsonl"
check "run prints what embed prints" cmp -s "$TMP/run.jsonl" "$TMP/embed.jsonl"

"$MEMFIT" run "$TMP/m.yaml" dino-q8 "$IMG" "$IMG" --crop 56 --stats >"$TMP/q.txt" 2>"$TMP/q.err"
check "quantized at load: two requests, 56x56" [ "$(grep -c 'cls 128 floats (56x56)' "$TMP/q.txt")" -eq 2 ]
check "--stats: peak reserved" grep -q "peak reserved" "$TMP/q.err"
check "no converted copy left in the cache dir" [ -z "$(ls "$TMP" | grep memfit-convert)" ]

"$MEMFIT" run "$TMP/m.yaml" dino "$IMG" --budget 1MiB >/dev/null 2>"$TMP/refused.err"
check "too small a budget fails with exit 1" [ $? -eq 1 ]
check "refusal says the budget" grep -qi "budget\|asked" "$TMP/refused.err"

"$MEMFIT" run "$TMP/m.yaml" nope "$IMG" >/dev/null 2>&1
check "unknown model fails" [ $? -eq 1 ]
"$MEMFIT" run "$TMP/m.yaml" dino >/dev/null 2>&1
check "no input is a usage error" [ $? -eq 2 ]
"$MEMFIT" models >/dev/null 2>&1
check "models without manifest is a usage error" [ $? -eq 2 ]
# One manifest with a DINOv2 and an LLM entry: both planned with the figures
# serve reserves, `run` generates with the LLM, `generate` takes its name.
LLM=$FIX/llm/qwen2_gqa.gguf
cat >"$TMP/mixed.yaml" <<YAML
budget: 64MiB
models:
  - name: dino
    family: dinov2
    sources: [$MODEL]
  - name: qwen
    family: qwen2
    sources: [$LLM]
    max_concurrency: 2
    options: {ctx: 128, threads: 1}
YAML
"$MEMFIT" models "$TMP/mixed.yaml" >"$TMP/mixed.txt" 2>"$TMP/mixed.err"
check "models plans a DINOv2 and an LLM entry" [ $? -eq 0 ]
check "... the LLM row, with a KV cache, fits" grep -Eq "^qwen +qwen2 .* [1-9][0-9.]* KiB +[0-9.]+ [KM]iB +yes" "$TMP/mixed.txt"
"$MEMFIT" models "$TMP/mixed.yaml" --json >"$TMP/mixed.json"
check "--json: the LLM's context and sessions, the image model's batch" "$PY" -c "import json,sys
d=json.load(open('$TMP/mixed.json'))
dino,q=d['models']
ok=q['family']=='qwen2' and q['n_ctx']==128 and q['n_sessions']==2 and q['planned']['KV cache']>0
ok=ok and q['planned']['workspace']>0 and q['total_bytes']==sum(q['planned'].values())
ok=ok and dino['max_batch']==1 and 'n_ctx' not in dino and q['plan_source']=='file'
sys.exit(0 if ok else 1)"
"$MEMFIT" models "$TMP/mixed.yaml" --budget 300K >"$TMP/never.txt" 2>/dev/null
check "a model larger than the whole budget: NEVER, and why" grep -q "never fits: needs .* more than the whole budget of 300 KiB (--budget 300K)" "$TMP/never.txt"
"$MEMFIT" run "$TMP/mixed.yaml" qwen "Hello" -n 6 --temp 0 >"$TMP/run-llm.txt" 2>"$TMP/run-llm.err"
check "run on an LLM entry exits 0" [ $? -eq 0 ]
check "... and prints the generated text" [ -n "$(tr -d '\n' <"$TMP/run-llm.txt")" ]
"$MEMFIT" generate qwen --manifest "$TMP/mixed.yaml" -p "Hello" -n 6 --temp 0 >"$TMP/gen-llm.txt"
check "generate with a manifest model's name: the same text" cmp -s "$TMP/run-llm.txt" "$TMP/gen-llm.txt"
"$MEMFIT" generate qwen --manifest "$TMP/mixed.yaml" -p "Hello" --ctx 64 >/dev/null 2>"$TMP/gen-opt.err"
check "a model option flag on a manifest model is refused" grep -q "takes its options (--ctx) from the manifest" "$TMP/gen-opt.err"
"$MEMFIT" run "$TMP/mixed.yaml" qwen "Hello" --budget 100K >/dev/null 2>"$TMP/run-refused.err"
check "run refuses an LLM over the budget, naming the budget's source" grep -q "whole budget is 100.0 KiB.*from --budget 100K" "$TMP/run-refused.err"

"$MEMFIT" run --help | grep -q "Usage: memfit run"
check "run --help" [ $? -eq 0 ]
finish
