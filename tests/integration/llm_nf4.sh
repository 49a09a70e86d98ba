#!/usr/bin/env bash
# A Hugging Face directory with bitsandbytes NF4 weights (the tiny qwen2_gqa
# fixture quantized by `memfit quantize --type nf4 --double-quant`) run as
# stored: `memfit generate DIR`, `memfit models` planning a manifest entry
# whose source is the directory (its files' bytes, not the directory's),
# `memfit serve` with that manifest giving the greedy text of `generate`
# for completions and of `generate --chat` for chat completions, the same
# chat answer from `memfit serve DIR` (quick start, the model named after
# the directory), and a directory without config.json refused naming it. The numbers are
# checked against a dequantize-then-F32 reference in
# tests/unit/test_models_llm_nf4.c.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
FIX=${MEMFIT_FIXTURES:?MEMFIT_FIXTURES not set}/llm/hf_qwen2_gqa
D=$TMP/qwen-nf4
mkdir "$D"
cp "$FIX"/config.json "$FIX"/tokenizer.json "$FIX"/tokenizer_config.json "$D/"
check "quantize to nf4" "$MEMFIT" quantize "$FIX/model.safetensors" "$D/model.safetensors" \
    --type nf4 --double-quant
check "the directory holds NF4 with double quantization" \
    "$PY" -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
assert h["model.layers.0.mlp.up_proj.weight"]["dtype"] == "U8", h["model.layers.0.mlp.up_proj.weight"]
assert "model.layers.0.mlp.up_proj.weight.nested_absmax" in h' "$D/model.safetensors"

"$MEMFIT" generate "$D" -p "Hello, world" -n 12 --temp 0 --special >"$TMP/cli.txt" 2>"$TMP/cli.err"
check "generate DIR runs" test $? -eq 0
check "... and writes text" test -s "$TMP/cli.txt"
head -c -1 "$TMP/cli.txt" >"$TMP/cli-trim.txt"

cat >"$TMP/m.yaml" <<YAML
models:
  - name: qwen-nf4
    family: qwen2
    sources: [$D]
    options: {ctx: 128, threads: 2}
YAML
"$MEMFIT" models --json "$TMP/m.yaml" >"$TMP/models.json" 2>"$TMP/models.err"
check "models plans the directory" test $? -eq 0
size=$(du -cb "$D"/* | tail -1 | cut -f1)
check "... as qwen2, its weights no more than its files" "$PY" -c 'import json, sys
m = json.load(open(sys.argv[1]))["models"][0]
assert m["family"] == "qwen2", m
w = m["planned"]["weights"]
assert 0 < w <= int(sys.argv[2]), (w, sys.argv[2])' "$TMP/models.json" "$size"

start_server --manifest "$TMP/m.yaml"
c=$(post "$URL/v1/completions" -d '{"model":"qwen-nf4","prompt":"Hello, world","max_tokens":12,"temperature":0}')
check "serve: completions 200" test "$c" = 200
"$PY" -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1]))["choices"][0]["text"])' \
    "$TMP/body" >"$TMP/served.txt"
check "serve: the greedy text of generate" cmp -s "$TMP/served.txt" "$TMP/cli-trim.txt"

# Chat: the prompt through the fixture's ChatML template, 8 tokens (no end of turn before).
"$MEMFIT" generate "$D" --chat -p "Hello, world" -n 8 --temp 0 >"$TMP/chat-cli.txt" 2>/dev/null
check "generate --chat runs" test $? -eq 0
chat='{"model":"MODEL","messages":[{"role":"user","content":"Hello, world"}],"max_tokens":8,"temperature":0}'
# check_chat NAME: the chat answer in $TMP/body is the text of generate --chat, 8 tokens.
check_chat() {
    check "$1: the text of generate --chat, 8 tokens" "$PY" -c 'import json, sys
b = json.load(open(sys.argv[1]))
assert b["object"] == "chat.completion", b
c = b["choices"][0]
assert c["finish_reason"] == "length" and b["usage"]["completion_tokens"] == 8, b
want = open(sys.argv[2], "rb").read()[:-1].decode("utf-8", "replace")
assert c["message"]["content"] == want, (c["message"]["content"], want)' "$TMP/body" "$TMP/chat-cli.txt"
}
c=$(post "$URL/v1/chat/completions" -d "${chat/MODEL/qwen-nf4}")
check "serve (manifest): chat completions 200" test "$c" = 200
check_chat "serve (manifest)"
stop_server >/dev/null

start_server "$D"
c=$(post "$URL/v1/chat/completions" -d "${chat/MODEL/qwen-nf4}")
check "serve DIR: chat completions 200 under the directory's name" test "$c" = 200
check_chat "serve DIR"
c=$(code "$URL/v1/models/qwen-nf4")
check "serve DIR: GET /v1/models/qwen-nf4 200" test "$c" = 200
stop_server >/dev/null

mkdir "$TMP/bad"
cp "$D/model.safetensors" "$TMP/bad/"
"$MEMFIT" generate "$TMP/bad" -p "x" -n 2 >/dev/null 2>"$TMP/bad.err"
check "no config.json: exit 1" test $? -eq 1
check "... naming it" grep -q "config.json" "$TMP/bad.err"
finish
