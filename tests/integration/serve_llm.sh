#!/usr/bin/env bash
# `memfit serve` with LLMs: /v1/completions and /v1/chat/completions on the
# tiny reference models (quick-start files, each taken by the engine of its
# architecture next to a DINOv2 model), plain and streamed as server-sent
# events; the usage counts; the greedy text equals `memfit generate`'s;
# errors in the OpenAI shape (unknown model, a prompt longer than the
# context, embeddings asked of an LLM, chat asked of DINOv2); a client that
# leaves mid-stream; then the official `openai` npm client, streaming (when
# node and npm are there; that part says it skipped otherwise).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
FX=$MEMFIT_FIXTURES
cp "$FX/llm/qwen2_gqa.gguf" "$FX/llm/llama_gqa.gguf" "$FX/dinov2/vits_tiny.pth" "$TMP/"

start_server "$TMP/qwen2_gqa.gguf" "$TMP/llama_gqa.gguf" "$TMP/vits_tiny.pth"
check "the three models are listed" test "$(curl -s "$URL/v1/models" | grep -o '"id"' | wc -l)" -eq 3

c=$(post "$URL/v1/completions" -d '{"model":"qwen2_gqa","prompt":"Hello, world","max_tokens":12,"temperature":0}')
check "completions: 200" test "$c" = 200
"$PY" - "$TMP/body" >"$TMP/served.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["object"] == "text_completion" and d["choices"][0]["finish_reason"] in ("stop", "length")
u = d["usage"]
assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0
sys.stdout.write(d["choices"][0]["text"])
PY
check "completions: the OpenAI shape and usage" test $? -eq 0
"$MEMFIT" generate "$TMP/qwen2_gqa.gguf" -p "Hello, world" -n 12 --temp 0 --special | head -c -1 >"$TMP/cli.txt"
check "greedy completion equals memfit generate's text" cmp -s "$TMP/served.txt" "$TMP/cli.txt"

c=$(post "$URL/v1/chat/completions" -d '{"model":"llama_gqa","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_tokens":6,"seed":3}')
check "chat: 200" test "$c" = 200
jq_ok() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert $1, d" "$TMP/body"; }
check "chat: assistant message and usage" jq_ok 'd["object"]=="chat.completion" and d["choices"][0]["message"]["role"]=="assistant" and d["usage"]["completion_tokens"]<=6'

curl -sN -H 'Content-Type: application/json' "$URL/v1/chat/completions" -d '{"model":"qwen2_gqa","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true},"temperature":0}' >"$TMP/sse"
"$PY" - "$TMP/sse" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1], encoding="utf-8", errors="strict").read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] in ("stop", "length")
usage = [c for c in chunks if not c["choices"]]
assert len(usage) == 1 and usage[0]["usage"]["completion_tokens"] <= 5
assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
PY
check "chat stream: role, deltas, one finish, usage, [DONE]" test $? -eq 0

c=$(post "$URL/v1/chat/completions" -d '{"model":"nope","messages":[{"role":"user","content":"hi"}]}')
check "unknown model: 404 model_not_found" bash -c "test $c = 404 && $(declare -f is_error); PY=$PY TMP=$TMP is_error model_not_found"
long=$(head -c 600 /dev/zero | tr '\0' 'a')
c=$(post "$URL/v1/completions" -d "{\"model\":\"qwen2_gqa\",\"prompt\":\"$long\"}")
check "prompt longer than the context: 400 context_length_exceeded" test "$c" = 400
is_error context_length_exceeded || fail "context error code"
c=$(post "$URL/v1/embeddings" -d '{"model":"qwen2_gqa","input":"x"}')
check "embeddings of an LLM: 400" test "$c" = 400
c=$(post "$URL/v1/chat/completions" -d '{"model":"vits_tiny","messages":[{"role":"user","content":"hi"}]}')
check "chat with DINOv2: 400 model_not_supported" test "$c" = 400
c=$(post "$URL/v1/chat/completions" -d '{"model":"qwen2_gqa","messages":[{"role":"wizard","content":"hi"}]}')
check "a bad role: 400" test "$c" = 400
c=$(post "$URL/v1/completions" -d '{"model":"qwen2_gqa","prompt":"x","temperature":5}')
check "temperature out of range: 400" test "$c" = 400

# A client that leaves mid-stream: the server stays up and serves the next one.
timeout 0.3 curl -sN -H 'Content-Type: application/json' "$URL/v1/completions" -d '{"model":"qwen2_gqa","prompt":"x","max_tokens":0,"stream":true}' >/dev/null
c=$(post "$URL/v1/completions" -d '{"model":"qwen2_gqa","prompt":"y","max_tokens":2}')
check "after a client left mid-stream the next request is served" test "$c" = 200
check "chat requests are counted in /metrics" test "$(metric 'memfit_http_requests_total{route="/v1/chat/completions",code="200"')" -ge 2

if command -v node >/dev/null && command -v npm >/dev/null; then
    mkdir -p "$TMP/npm"
    if (cd "$TMP/npm" && timeout 180 npm install --silent --no-audit --no-fund --no-save openai@4 \
        >"$TMP/npm.log" 2>&1); then
        cat >"$TMP/npm/chat.mjs" <<'JS'
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.argv[2] + "/v1", apiKey: "none", maxRetries: 0 });
const stream = await client.chat.completions.create({
  model: "qwen2_gqa", messages: [{ role: "user", content: "hi" }], max_tokens: 6,
  temperature: 0, stream: true, stream_options: { include_usage: true } });
let text = "", finish = null, usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) { text += c.delta.content ?? ""; finish = c.finish_reason ?? finish; }
}
if (!finish || !usage || usage.completion_tokens > 6) throw new Error(`finish ${finish}, usage ${JSON.stringify(usage)}`);
const plain = await client.chat.completions.create({
  model: "qwen2_gqa", messages: [{ role: "user", content: "hi" }], max_tokens: 6, temperature: 0 });
if (plain.choices[0].message.content !== text) throw new Error("streamed and plain texts differ");
const c = await client.completions.create({ model: "llama_gqa", prompt: "Once", max_tokens: 3 });
if (c.usage.completion_tokens > 3) throw new Error("completions usage");
console.log(`ok: openai chat stream (${usage.completion_tokens} tokens), plain chat, completions`);
JS
        check "openai npm client: chat streaming, chat, completions" node "$TMP/npm/chat.mjs" "$URL"
    else
        echo "SKIPPED (part): npm install openai failed: $(tail -1 "$TMP/npm.log")"
    fi
else
    echo "SKIPPED (part): node/npm not installed: the openai client part did not run"
fi
stop_server
check "SIGTERM exits 0" test $? -eq 0
finish
