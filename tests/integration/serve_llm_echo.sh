#!/usr/bin/env bash
# /v1/completions with `echo` and `logprobs` (issue 18), as OpenAI's legacy
# completions answer it: the text is the prompt then the completion, and the
# logprobs cover the prompt's tokens too (the first one null in
# token_logprobs and top_logprobs) before the generated ones; max_tokens 0
# scores a prompt alone; streamed, the prompt's logprobs come in the echo
# chunk; the prompt's numbers are the same whatever follows them, and the
# next token of a prefix of the prompt, generated, has the numbers the long
# prompt's scoring gives that place; echo without logprobs still works. Run on the tiny Qwen2
# fixture through the quick start (one session, the prompt in one chunk)
# and through a manifest (two sessions batched as a group, chunks of 4).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
cp "$MEMFIT_FIXTURES/llm/qwen2_gqa.gguf" "$TMP/"
P='Hello, world. The quick brown fox'

# checks MODEL: every check against the running server.
checks() {
    local M="\"model\":\"$1\"" c
    local body="{$M,\"prompt\":\"$P\",\"echo\":true,\"logprobs\":3,\"temperature\":0"
    c=$(post "$URL/v1/completions" -d "$body,\"max_tokens\":0}")
    check "$1: echo, logprobs 3, max_tokens 0: 200" test "$c" = 200
    cp "$TMP/body" "$TMP/score.json"
    "$PY" - "$TMP/score.json" "$P" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ch = d["choices"][0]
lp = ch["logprobs"]
n = d["usage"]["prompt_tokens"]
assert ch["text"] == sys.argv[2], ch["text"]
assert d["usage"]["completion_tokens"] == 0 and ch["finish_reason"] == "length", d
assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}, lp
assert n > 3 and len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n, (n, lp)
assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, lp
# (pairs: two tokens that are both part of a UTF-8 character are both "\ufffd")
tops = json.load(open(sys.argv[1]), object_pairs_hook=lambda kv: kv)
tops = dict(tops)["choices"][0]
tops = dict(dict(tops)["logprobs"])["top_logprobs"]
for v, top in zip(lp["token_logprobs"][1:], tops[1:]):
    assert isinstance(v, float) and v <= 0, v
    vals = [x for _, x in top]
    assert len(top) == 3 and all(x <= 0 for x in vals), top
    assert vals == sorted(vals, reverse=True), top
    assert v <= vals[0] + 1e-6, (v, top)
assert lp["text_offset"][0] == 0 and lp["text_offset"] == sorted(lp["text_offset"]), lp["text_offset"]
if all("\ufffd" not in t for t in lp["tokens"]):
    assert "".join(lp["tokens"]) == sys.argv[2], lp["tokens"]
PY
    check "$1: the prompt alone: its text, one entry a token, the first null, top 3 sorted" test $? -eq 0

    c=$(post "$URL/v1/completions" -d "$body,\"max_tokens\":4}")
    check "$1: echo, logprobs, max_tokens 4: 200" test "$c" = 200
    cp "$TMP/body" "$TMP/gen.json"
    "$PY" - "$TMP/score.json" "$TMP/gen.json" "$P" <<'PY'
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
P = sys.argv[3]
la, lb = a["choices"][0]["logprobs"], b["choices"][0]["logprobs"]
n, m = b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"]
assert n == a["usage"]["prompt_tokens"] and m > 0, b["usage"]
assert len(lb["tokens"]) == n + m, (len(lb["tokens"]), n, m)
text = b["choices"][0]["text"]
assert text.startswith(P), text
# the prompt's part: the same numbers as the prompt alone, whatever follows
assert lb["tokens"][:n] == la["tokens"] and lb["top_logprobs"][:n] == la["top_logprobs"]
sa, sb = sum(la["token_logprobs"][1:]), sum(lb["token_logprobs"][1:n])
assert math.isclose(sa, sb, abs_tol=1e-5), (sa, sb)
# the completion's offsets start after the prompt's text
assert lb["text_offset"][n] == len(P.encode()), lb["text_offset"]
PY
    check "$1: the prompt's entries then the completion's; the prompt's sum as alone" test $? -eq 0

    # A prefix of the prompt (cut before " fox") completed by one greedy token: its prompt's
    # numbers are the long prompt's first ones, and the token's (generated through the dot
    # products) are what the long prompt's scoring (the matrix kernel) says of that place.
    c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"${P% fox}\",\"echo\":true,\"logprobs\":3,\"temperature\":0,\"max_tokens\":1}")
    check "$1: a prefix of the prompt and one token: 200" test "$c" = 200
    "$PY" - "$TMP/score.json" "$TMP/body" <<'PY'
import json, math, sys
pairs = lambda p: json.load(open(p), object_pairs_hook=lambda kv: kv if kv and isinstance(kv[0][1], float) else dict(kv))
a, b = pairs(sys.argv[1]), pairs(sys.argv[2])
la, lb = a["choices"][0]["logprobs"], b["choices"][0]["logprobs"]
n = b["usage"]["prompt_tokens"]
assert b["usage"]["completion_tokens"] == 1 and len(lb["tokens"]) == n + 1, b
assert lb["tokens"][:n] == la["tokens"][:n], (lb["tokens"], la["tokens"])
sa, sb = sum(la["token_logprobs"][1:n]), sum(lb["token_logprobs"][1:n])
assert math.isclose(sa, sb, abs_tol=1e-5), (sa, sb)
top_gen, top_scored = lb["top_logprobs"][n], la["top_logprobs"][n]
vg, vs = [v for _, v in top_gen], [v for _, v in top_scored]
assert len(vg) == len(vs) == 3 and all(abs(x - y) < 1e-2 for x, y in zip(vg, vs)), (top_gen, top_scored)
# greedy: the token generated is the likeliest one
assert abs(lb["token_logprobs"][n] - vs[0]) < 1e-2, (lb["token_logprobs"][n], top_scored)
PY
    check "$1: the prefix's token_logprobs sum as in the long prompt; its next token's top 3 as scored there" test $? -eq 0

    curl -sN -H 'Content-Type: application/json' "$URL/v1/completions" -d "$body,\"max_tokens\":4,\"stream\":true}" >"$TMP/sse"
    "$PY" - "$TMP/sse" "$TMP/gen.json" "$P" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e)["choices"][0] for e in events[:-1]]
assert chunks[0]["text"] == sys.argv[3], chunks[0]
plain = json.load(open(sys.argv[2]))
n = plain["usage"]["prompt_tokens"]
assert len(chunks[0]["logprobs"]["tokens"]) == n, chunks[0]
tokens, values = [], []
for c in chunks:
    if c["logprobs"]:
        tokens += c["logprobs"]["tokens"]
        values += c["logprobs"]["token_logprobs"]
lp = plain["choices"][0]["logprobs"]
assert tokens == lp["tokens"] and values == lp["token_logprobs"], (tokens, lp["tokens"])
assert "".join(c["text"] for c in chunks) == plain["choices"][0]["text"]
PY
    check "$1: streamed: the prompt's chunk has its logprobs; all as the plain answer" test $? -eq 0

    c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"$P\",\"echo\":true,\"logprobs\":3,\"max_tokens\":2,\"n\":2,\"seed\":3}")
    check "$1: n=2 with echo and logprobs: each choice has the prompt's entries" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
n = d["usage"]["prompt_tokens"]
for ch in d["choices"]:
    lp = ch["logprobs"]
    assert lp["token_logprobs"][0] is None and len(lp["tokens"]) > n, lp
' "$TMP/body"

    c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"$P\",\"echo\":true,\"max_tokens\":3}")
    check "$1: echo without logprobs: 200, the prompt first, logprobs null" "$PY" -c '
import json, sys
ch = json.load(open(sys.argv[1]))["choices"][0]
assert ch["text"].startswith(sys.argv[2]) and ch["logprobs"] is None, ch
' "$TMP/body" "$P"
    c=$(post "$URL/v1/completions" -d "{$M,\"prompt\":\"$P\",\"echo\":true,\"max_tokens\":0,\"stream\":true}")
    check "$1: echo, max_tokens 0, streamed: the prompt, then the finish" "$PY" -c '
import json, sys
e = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
c = [json.loads(x)["choices"][0] for x in e[:-1]]
assert e[-1] == "[DONE]" and c[0]["text"] == sys.argv[2] and c[-1]["finish_reason"] == "length", e
assert "".join(x["text"] for x in c) == sys.argv[2], c
' "$TMP/body" "$P"
}

start_server "$TMP/qwen2_gqa.gguf"
checks qwen2_gqa
check "quick start: the server stops cleanly (no sanitizer report)" stop_server

cat >"$TMP/m.yaml" <<YAML
models:
  - name: scorer
    family: qwen2
    sources: [$TMP/qwen2_gqa.gguf]
    options: {ctx: 128, threads: 2, batch: 4, parallel: 2}
YAML
start_server --manifest "$TMP/m.yaml"
checks scorer
check "manifest: the server stops cleanly (no sanitizer report)" stop_server
finish
