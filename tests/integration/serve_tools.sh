#!/usr/bin/env bash
# Tool calls on /v1/chat/completions: the tiny Qwen2 and LLaMA fixtures
# converted with the Qwen2.5 and LLaMA 3.1 chat templates (their real text,
# tests/fixtures/chat/*.jinja, in tokenizer_config.json). A random-weight
# model calls no tool on its own, so tool_choice "required" and a named
# function force one through the grammar: the answer must be a call of an
# offered function whose arguments parse and validate against its schema,
# with finish_reason "tool_calls" and content null, streamed as
# delta.tool_calls; "auto" answers parse (content or calls); a conversation
# with a call and its result renders; a template without tools gets a 400
# naming 'tools'. Quick start and a manifest.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
FIX=$MEMFIT_FIXTURES/llm

# with_template HF_DIR TEMPLATE OUT.gguf: the model with that chat template
# and a context of 4096 (the tiny tokenizer spells the tools out nearly byte
# by byte: about 1500 tokens).
with_template() {
    cp -r "$1" "$TMP/hf"
    "$PY" - "$TMP/hf/tokenizer_config.json" "$2" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["chat_template"] = open(sys.argv[2]).read()
cfg["model_max_length"] = 4096
json.dump(cfg, open(sys.argv[1], "w"))
path = sys.argv[1].replace("tokenizer_config.json", "config.json")
c = json.load(open(path))
c["max_position_embeddings"] = 4096
json.dump(c, open(path, "w"))
PY
    "$MEMFIT" convert "$TMP/hf" "$3" >/dev/null
    rm -rf "$TMP/hf"
}
with_template "$FIX/hf_qwen2_gqa" "$MEMFIT_FIXTURES/chat/qwen2.5-instruct.jinja" "$TMP/qwen25.gguf"
with_template "$FIX/hf_llama_gqa" "$MEMFIT_FIXTURES/chat/llama-3.1-instruct.jinja" "$TMP/llama31.gguf"
check "converted with the tool templates" test -s "$TMP/qwen25.gguf" -a -s "$TMP/llama31.gguf"

MSG='"messages":[{"role":"user","content":"weather in Paris?"}]'
TOOLS='"tools":[{"type":"function","function":{"name":"get_weather","description":"the weather","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":12},"days":{"type":"integer"},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}}},{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string","maxLength":8}},"required":["zone"],"additionalProperties":false}}}]'

# call_ok FILE NAMES: one call of a function in NAMES whose arguments validate.
call_ok() {
    "$PY" - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
names = sys.argv[2].split(",")
for ch in d["choices"]:
    m = ch["message"]
    assert ch["finish_reason"] == "tool_calls", ch
    assert m["role"] == "assistant" and m["content"] is None, m
    calls = m["tool_calls"]
    assert len(calls) == 1, calls
    c = calls[0]
    assert c["type"] == "function" and c["id"].startswith("call_"), c
    f = c["function"]
    assert f["name"] in names, f
    a = json.loads(f["arguments"])
    assert isinstance(a, dict), a
    if f["name"] == "get_weather":
        assert set(a) <= {"city", "days", "unit"} and {"city", "unit"} <= set(a), a
        assert isinstance(a["city"], str) and len(a["city"]) <= 12, a
        assert a["unit"] in ("c", "f"), a
        assert "days" not in a or isinstance(a["days"], int), a
    else:
        assert set(a) == {"zone"} and isinstance(a["zone"], str) and len(a["zone"]) <= 8, a
PY
}

# run_checks MODEL: the tool checks on a served model.
run_checks() {
    local m=$1 M="\"model\":\"$1\"" c
    c=$(post "$URL/v1/chat/completions" -d "{$M,$MSG,$TOOLS,\"tool_choice\":\"required\",\"max_tokens\":120,\"n\":3,\"seed\":7}")
    check "$m: required: 200" test "$c" = 200
    check "$m: required: a valid call in each of 3 choices" call_ok "$TMP/body" get_weather,get_time
    c=$(post "$URL/v1/chat/completions" -d "{$M,$MSG,$TOOLS,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}},\"max_tokens\":120,\"temperature\":1.5,\"seed\":3}")
    check "$m: named: 200" test "$c" = 200
    check "$m: named: a valid call of get_time" call_ok "$TMP/body" get_time
    # streamed: the call comes as delta.tool_calls, then finish_reason tool_calls
    post "$URL/v1/chat/completions" -d "{$M,$MSG,$TOOLS,\"tool_choice\":\"required\",\"max_tokens\":120,\"stream\":true,\"seed\":5}" >/dev/null
    check "$m: streamed call" "$PY" - "$TMP/body" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().splitlines() if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-3:]
chunks = [json.loads(e) for e in events[:-1]]
calls = [c for ch in chunks for c in ch["choices"][0]["delta"].get("tool_calls", [])]
assert len(calls) == 1 and calls[0]["index"] == 0 and calls[0]["id"].startswith("call_"), calls
assert calls[0]["function"]["name"] in ("get_weather", "get_time"), calls
assert isinstance(json.loads(calls[0]["function"]["arguments"]), dict), calls
assert not any(ch["choices"][0]["delta"].get("content") for ch in chunks), chunks
assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls", chunks[-1]
PY
    # auto: unconstrained; the answer parses (content, or calls of offered functions)
    c=$(post "$URL/v1/chat/completions" -d "{$M,$MSG,$TOOLS,\"max_tokens\":16,\"seed\":1}")
    check "$m: auto: 200" test "$c" = 200
    check "$m: auto: content or calls" "$PY" -c "
import json, sys
m = json.load(open(sys.argv[1]))['choices'][0]
assert (m['message']['content'] is not None) != ('tool_calls' in m['message']), m
assert m['finish_reason'] in ('stop', 'length', 'tool_calls'), m" "$TMP/body"
    # a conversation with a call and its result
    c=$(post "$URL/v1/chat/completions" -d "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"unit\\\":\\\"c\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"21 C\"}],$TOOLS,\"max_tokens\":4}")
    check "$m: call and result in the conversation: 200" test "$c" = 200
    # a schema keyword memfit cannot enforce: 400 naming it (only when forced)
    c=$(post "$URL/v1/chat/completions" -d "{$M,$MSG,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"x\"}}}}}],\"tool_choice\":\"required\"}")
    check "$m: unsupported schema keyword: 400 naming it" bash -c "test $c = 400 && grep -q pattern '$TMP/body'"
}

start_server "$TMP/qwen25.gguf" "$TMP/llama31.gguf"
run_checks qwen25
run_checks llama31
stop_server

# ---- A manifest; and a model whose template has no tools: 400 naming 'tools'.
cat >"$TMP/m.yaml" <<Y
models:
  - name: q
    family: qwen2
    sources: [$TMP/qwen25.gguf]
  - name: plain
    family: qwen2
    sources: [$FIX/qwen2_gqa.gguf]
Y
start_server --manifest "$TMP/m.yaml"
run_checks q
c=$(post "$URL/v1/chat/completions" -d "{\"model\":\"plain\",$MSG,$TOOLS}")
check "no tools in the template: 400" test "$c" = 400
check "no tools in the template: names 'tools'" bash -c "grep -q \"'tools': model 'plain': its chat template does not support tools\" '$TMP/body'"
c=$(post "$URL/v1/chat/completions" -d "{\"model\":\"plain\",$MSG,$TOOLS,\"tool_choice\":\"none\"}")
check "tool_choice none: the tools dropped, 200" test "$c" = 200
stop_server
finish
