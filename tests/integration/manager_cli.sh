#!/bin/bash
# `memfit run` and `memfit models` end to end on the tiny DINOv2 fixture:
# the budget printed with its source (flag, environment, manifest), the plan
# by category and whether it fits, `run` printing what `embed` prints (same
# floats) through the manager, quantize at load, refusal with E_BUDGET when
# the model cannot fit, and usage/failure exit codes.
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
"$MEMFIT" run --help | grep -q "Usage: memfit run"
check "run --help" [ $? -eq 0 ]
finish
