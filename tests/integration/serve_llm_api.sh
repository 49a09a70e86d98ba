#!/usr/bin/env bash
# The OpenAI fields of /v1/completions and /v1/chat/completions on the tiny
# Qwen2 fixture: every field is honoured or refused with a 400 naming it
# (unknown fields, response_format, tools on a template without them, the
# fields kept only at their neutral value); logprobs and top_logprobs in
# OpenAI's shapes (chat and completions, plain and streamed, greedy: the
# chosen token is the top one); n choices (seeded per choice, the same
# again for the same seed); echo; logit_bias (+100 forces a token, -100
# bans it); penalties; keep_alive 0 unloads the model after the answer and
# -1 keeps it; GET /v1/models/{id}; the generation series of /metrics; and
# the official `openai` npm client with logprobs and n (skipped when npm
# cannot install it).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
cp "$MEMFIT_FIXTURES/llm/qwen2_gqa.gguf" "$TMP/"
start_server "$TMP/qwen2_gqa.gguf"
M='"model":"qwen2_gqa"'
MSG='"messages":[{"role":"user","content":"hi there"}]'
jq_ok() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert $1, d" "$TMP/body"; }
# refused ROUTE BODY CODE WORD: a 400 with that error code whose message names WORD.
refused() {
    local c
    c=$(post "$URL/v1/$1" -d "$2")
    check "$1 $2: 400 $3 naming $4" bash -c "test $c = 400 && grep -q '\"code\":\"$3\"' '$TMP/body' && grep -q '$4' '$TMP/body'"
}

# ---- refusals -------------------------------------------------------------------------------
refused chat/completions "{$M,$MSG,\"frobnicate\":1}" invalid_value frobnicate
refused completions "{$M,\"prompt\":\"a\",\"messages\":[]}" invalid_value messages
refused chat/completions "{$M,$MSG,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":{\"type\":\"string\",\"pattern\":\"a+\"}}}}" unsupported_schema pattern
refused chat/completions "{$M,$MSG,\"response_format\":{\"type\":\"yaml\"}}" invalid_value yaml
refused chat/completions "{$M,$MSG,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}" unsupported_field "does not support tools"
refused chat/completions "{$M,$MSG,\"tool_choice\":\"required\"}" unsupported_field tool_choice
refused chat/completions "{$M,$MSG,\"store\":true}" unsupported_field store
refused chat/completions "{$M,$MSG,\"audio\":{\"voice\":\"alloy\"}}" unsupported_field audio
refused completions "{$M,\"prompt\":\"a\",\"suffix\":\"z\"}" unsupported_field suffix
refused completions "{$M,\"prompt\":\"a\",\"best_of\":3}" unsupported_field best_of
refused completions "{$M,\"prompt\":\"a\",\"echo\":\"yes\"}" invalid_type echo
refused chat/completions "{$M,$MSG,\"echo\":true}" invalid_value echo
refused chat/completions "{$M,$MSG,\"top_logprobs\":3}" invalid_value top_logprobs
refused chat/completions "{$M,$MSG,\"n\":17}" invalid_value "'n'"
refused chat/completions "{$M,$MSG,\"logit_bias\":{\"99999999\":1}}" unsupported_field logit_bias
refused chat/completions "{$M,$MSG,\"keep_alive\":\"later\"}" invalid_value keep_alive
# What the official clients send at their neutral values is taken.
c=$(post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":2,\"n\":1,\"user\":\"u\",\"stream\":false,\"stream_options\":null,\"response_format\":{\"type\":\"text\"},\"tools\":[],\"tool_choice\":\"none\",\"parallel_tool_calls\":true,\"store\":false,\"service_tier\":\"auto\",\"presence_penalty\":0,\"frequency_penalty\":0,\"logit_bias\":{},\"logprobs\":false,\"seed\":1}")
check "neutral values of the unsupported fields: 200" test "$c" = 200

# ---- logprobs ---------------------------------------------------------------------------------
c=$(post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3}")
check "chat logprobs: 200" test "$c" = 200
cp "$TMP/body" "$TMP/chat_lp.json"
"$PY" - "$TMP/chat_lp.json" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1]))
ch = d["choices"][0]
lp = ch["logprobs"]
assert set(lp) == {"content", "refusal"}, lp
content = lp["content"]
assert len(content) == d["usage"]["completion_tokens"] > 0, (len(content), d["usage"])
text = b""
for e in content:
    assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}, e
    assert isinstance(e["token"], str) and e["logprob"] <= 0 and all(0 <= b < 256 for b in e["bytes"])
    tops = e["top_logprobs"]
    assert len(tops) == 3 and all(set(t) == {"token", "logprob", "bytes"} for t in tops), tops
    assert all(tops[i]["logprob"] >= tops[i + 1]["logprob"] for i in range(2)), tops
    assert sum(math.exp(t["logprob"]) for t in tops) <= 1.0001
    # greedy: the chosen token is the likeliest one
    assert tops[0]["bytes"] == e["bytes"] and abs(tops[0]["logprob"] - e["logprob"]) < 1e-6, e
    text += bytes(e["bytes"])
if ch["finish_reason"] == "length":
    assert text.decode("utf-8", "replace") == ch["message"]["content"], (text, ch["message"])
PY
check "chat logprobs: OpenAI's shape, sorted top 3, greedy picks the top, bytes make the text" test $? -eq 0

curl -sN -H 'Content-Type: application/json' "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3,\"stream\":true}" >"$TMP/sse"
"$PY" - "$TMP/sse" "$TMP/chat_lp.json" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]"
entries = []
for e in events[:-1]:
    c = json.loads(e)["choices"][0]
    if c["logprobs"]:
        entries += c["logprobs"]["content"]
plain = json.load(open(sys.argv[2]))["choices"][0]["logprobs"]["content"]
assert [x["bytes"] for x in entries] == [x["bytes"] for x in plain], (entries, plain)
assert all(abs(a["logprob"] - b["logprob"]) < 1e-5 for a, b in zip(entries, plain))
PY
check "chat logprobs streamed: the same tokens and numbers as the plain answer" test $? -eq 0

c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"Hello\",\"max_tokens\":6,\"temperature\":0,\"logprobs\":2}")
check "completions logprobs: 200" test "$c" = 200
"$PY" - "$TMP/body" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ch = d["choices"][0]
lp = ch["logprobs"]
assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}, lp
n = d["usage"]["completion_tokens"]
assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
assert all(len(t) <= 2 and all(v <= 0 for v in t.values()) for t in lp["top_logprobs"])
assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
assert all(max(t.values()) == v for t, v in zip(lp["top_logprobs"], lp["token_logprobs"]) if t)
if ch["finish_reason"] == "length" and all("\ufffd" not in t for t in lp["tokens"]):
    assert "".join(lp["tokens"]) == ch["text"]
PY
check "completions logprobs: tokens, token_logprobs, top_logprobs (2 each), text_offset" test $? -eq 0

# ---- n, seed, echo, logit_bias, penalties -------------------------------------------------
body="{$M,\"prompt\":\"Once\",\"max_tokens\":8,\"temperature\":1.5,\"top_k\":0,\"seed\":5"
post "$URL/v1/completions" -d "$body,\"n\":3}" >/dev/null
cp "$TMP/body" "$TMP/n3a.json"
post "$URL/v1/completions" -d "$body,\"n\":3}" >/dev/null
cp "$TMP/body" "$TMP/n3b.json"
c=$(post "$URL/v1/completions" -d "$body,\"n\":1}")
check "n=1: 200" test "$c" = 200
"$PY" - "$TMP/n3a.json" "$TMP/n3b.json" "$TMP/body" <<'PY'
import json, sys
a, b, one = (json.load(open(p)) for p in sys.argv[1:])
assert [c["index"] for c in a["choices"]] == [0, 1, 2]
assert a["usage"]["completion_tokens"] > 0
texts = [c["text"] for c in a["choices"]]
assert texts == [c["text"] for c in b["choices"]], "the same seed gave other texts"
assert texts[0] == one["choices"][0]["text"], "choice 0 is seed + 0"
assert len(set(texts)) > 1, texts
PY
check "n=3: three choices, seeded per choice, the same for the same seed" test $? -eq 0
curl -sN -H 'Content-Type: application/json' "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":4,\"n\":2,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$TMP/sse"
"$PY" - "$TMP/sse" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]"
chunks = [json.loads(e) for e in events[:-1]]
finals = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
roles = [c["choices"][0]["index"] for c in chunks if c["choices"] and "role" in c["choices"][0]["delta"]]
assert finals == [0, 1] and roles == [0, 1], (finals, roles)
assert not chunks[-1]["choices"] and chunks[-1]["usage"]["completion_tokens"] <= 8
PY
check "n=2 streamed: each choice its role, deltas and finish, then the usage" test $? -eq 0

c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"Echo me\",\"max_tokens\":3,\"echo\":true}")
check "echo: the text starts with the prompt" jq_ok 'd["choices"][0]["text"].startswith("Echo me")'
curl -sN -H 'Content-Type: application/json' "$URL/v1/completions" -d "{$M,\"prompt\":\"Echo me\",\"max_tokens\":3,\"echo\":true,\"stream\":true}" >"$TMP/sse"
check "echo streamed: the first chunk is the prompt" "$PY" -c "
import json, sys
e = [l[6:] for l in open('$TMP/sse').read().split('\n') if l.startswith('data: ')]
assert json.loads(e[0])['choices'][0]['text'] == 'Echo me', e[0]"

lp_tokens() { "$PY" -c "import json,sys; print(json.dumps([e['bytes'] for e in json.load(open(sys.argv[1]))['choices'][0]['logprobs']['content']]))" "$TMP/body"; }
post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":3,\"temperature\":0,\"logprobs\":true,\"logit_bias\":{\"40\":100}}" >/dev/null
forced=$(lp_tokens)
check "logit_bias +100: every token is the one forced" "$PY" -c "import json; t=json.loads('$forced'); assert len(t)==3 and t[0]==t[1]==t[2], t"
post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":3,\"temperature\":0,\"logprobs\":true,\"logit_bias\":{\"40\":-100,\"41\":100}}" >/dev/null
other=$(lp_tokens)
check "logit_bias -100 bans it (another one forced instead)" "$PY" -c "import json; a=json.loads('$forced'); b=json.loads('$other'); assert a[0] not in b and b[0]==b[1]==b[2], (a, b)"
c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"a\",\"max_tokens\":12,\"temperature\":0,\"frequency_penalty\":2,\"presence_penalty\":1}")
check "penalties: 200" test "$c" = 200

# ---- response_format: grammar-constrained output (random weights: garbage
# text, which is what makes the constraint visible) --------------------------------
SCHEMA='{"type":"object","properties":{"name":{"type":"string","maxLength":12},"n":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","n","ok"],"additionalProperties":false}'
echo "$SCHEMA" >"$TMP/schema.json"
objects=0 stopped=0 valid=0
for seed in 1 2 3 4 5 6; do
    post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":1000,\"seed\":$seed,\"temperature\":1,\"response_format\":{\"type\":\"json_object\"}}" >/dev/null
    if "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["choices"][0]; sys.exit(c["finish_reason"] != "stop")' "$TMP/body"; then
        stopped=$((stopped + 1))
        "$PY" -c 'import json,sys; o=json.loads(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]); assert isinstance(o, dict)' "$TMP/body" && objects=$((objects + 1))
    fi
    post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":200,\"seed\":$seed,\"temperature\":1,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"rec\",\"strict\":true,\"schema\":$SCHEMA}}}" >/dev/null
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$TMP/body" >"$TMP/out$seed.json" 2>/dev/null &&
        "$PY" "$MEMFIT_SOURCE/tests/integration/json_schema_check.py" --schema "$TMP/schema.json" "$TMP/out$seed.json" >/dev/null && valid=$((valid + 1))
done
check "response_format json_object: some answers finish (stop; random weights write endless strings) ($stopped of 6)" test "$stopped" -ge 2
check "response_format json_object: every finished answer is one JSON object ($objects of $stopped)" test "$objects" = "$stopped"
check "response_format json_schema: 6 of 6 answers validate against the schema ($valid)" test "$valid" = 6


# ---- keep_alive, /v1/models/{id} --------------------------------------------------------------
state() { curl -s "$URL/api/models" | "$PY" -c "import json,sys; print([m['state'] for m in json.load(sys.stdin)['data'] if m['name']=='qwen2_gqa'][0])"; }
post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":2,\"keep_alive\":0}" >/dev/null
check "keep_alive 0: unloaded after the answer" test "$(state)" = unloaded
curl -sN -H 'Content-Type: application/json' "$URL/v1/completions" -d "{$M,\"prompt\":\"a\",\"max_tokens\":2,\"stream\":true,\"keep_alive\":\"0s\"}" >/dev/null
check "keep_alive \"0s\" streamed: unloaded when [DONE] has come" test "$(state)" = unloaded
post "$URL/v1/chat/completions" -d "{$M,$MSG,\"max_tokens\":2,\"keep_alive\":-1}" >/dev/null
check "keep_alive -1: loaded, no expiry" bash -c "curl -s '$URL/api/models' | $PY -c \"import json,sys; m=[m for m in json.load(sys.stdin)['data'] if m['name']=='qwen2_gqa'][0]; assert m['state']=='ready' and 'expires_in_s' not in m, m\""

c=$(code "$URL/v1/models/qwen2_gqa")
check "GET /v1/models/{id}: the model object" bash -c "test $c = 200 && $PY -c \"import json; d=json.load(open('$TMP/body')); assert d['id']=='qwen2_gqa' and d['object']=='model' and d['owned_by'] and d['created']>0, d\""
c=$(code "$URL/v1/models/nope")
check "GET /v1/models/{unknown}: 404 model_not_found" bash -c "test $c = 404 && $(declare -f is_error); PY=$PY TMP=$TMP is_error model_not_found"

# ---- metrics ----------------------------------------------------------------------------------
m() { metric "$1{model=\"qwen2_gqa\"${2:-}"; }
check "metrics: prompt tokens counted" test "$(m memfit_llm_prompt_tokens_total)" -gt 10
check "metrics: generated tokens counted" test "$(m memfit_llm_generated_tokens_total)" -gt 20
check "metrics: time to first token observed" test "$(m memfit_llm_time_to_first_token_seconds_count)" -gt 10
check "metrics: inter-token latency observed" test "$(m memfit_llm_inter_token_latency_seconds_count)" -gt 10
check "metrics: +Inf bucket = count" test "$(m memfit_llm_inter_token_latency_seconds_bucket ',le="+Inf"')" = "$(m memfit_llm_inter_token_latency_seconds_count)"
check "metrics: no sequence active or queued once answered" test "$(m memfit_llm_sequences_active)$(m memfit_llm_sequences_queued)" = 00

# ---- the official client ----------------------------------------------------------------------
if command -v node >/dev/null && command -v npm >/dev/null && mkdir -p "$TMP/npm" &&
    (cd "$TMP/npm" && timeout 180 npm install --silent --no-audit --no-fund --no-save openai@4 >"$TMP/npm.log" 2>&1); then
    cat >"$TMP/npm/lp.mjs" <<'JS'
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.argv[2] + "/v1", apiKey: "none", maxRetries: 0 });
const r = await client.chat.completions.create({ model: "qwen2_gqa", messages: [{ role: "user", content: "hi" }],
  max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2, n: 2 });
if (r.choices.length !== 2) throw new Error("n");
for (const c of r.choices) for (const e of c.logprobs.content)
  if (typeof e.logprob !== "number" || e.top_logprobs.length !== 2) throw new Error(JSON.stringify(e));
const s = await client.chat.completions.create({ model: "qwen2_gqa", messages: [{ role: "user", content: "hi" }],
  max_tokens: 4, temperature: 0, logprobs: true, stream: true });
let n = 0;
for await (const chunk of s) for (const c of chunk.choices) n += c.logprobs?.content?.length ?? 0;
if (n === 0) throw new Error("no streamed logprobs");
try { await client.models.retrieve("nope"); throw new Error("no 404"); } catch (e) { if (e.status !== 404) throw e; }
if ((await client.models.retrieve("qwen2_gqa")).id !== "qwen2_gqa") throw new Error("retrieve");
console.log("ok: logprobs, n, streamed logprobs, models.retrieve");
JS
    check "openai npm client: logprobs, n, streamed logprobs, models.retrieve" node "$TMP/npm/lp.mjs" "$URL"
else
    echo "SKIPPED (part): node/npm or the openai package is not available"
fi
stop_server
check "SIGTERM exits 0" test $? -eq 0
finish
