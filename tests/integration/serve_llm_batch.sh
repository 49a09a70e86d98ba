#!/usr/bin/env bash
# `memfit serve --parallel 4` with an LLM (continuous batching): four chats
# streamed at once each get the greedy text they get alone; the sequence
# gauges are in /metrics and back to 0 after; clients that leave mid-stream
# free their sessions (the requests after them all complete). The same
# through a manifest's max_concurrency.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
cp "$MEMFIT_FIXTURES/llm/qwen2_gqa.gguf" "$TMP/"

start_server --parallel 4 "$TMP/qwen2_gqa.gguf"
chat() { # chat N [OUT]: a streamed greedy chat, its text to OUT (default $TMP/text.N)
    curl -sN -H 'Content-Type: application/json' "$URL/v1/chat/completions" \
        -d "{\"model\":\"qwen2_gqa\",\"messages\":[{\"role\":\"user\",\"content\":\"story $1 of $(printf 'x%.0s' $(seq "$1"))\"}],\"max_tokens\":60,\"temperature\":0,\"stream\":true}" |
        "$PY" -c '
import json, sys
out = []
for l in sys.stdin:
    if l.startswith("data: ") and l[6:].strip() != "[DONE]":
        c = json.loads(l[6:])
        if c["choices"]:
            out.append(c["choices"][0]["delta"].get("content") or "")
sys.stdout.write("".join(out))' >"${2:-$TMP/text.$1}"
}
for i in 1 2 3 4; do chat "$i"; mv "$TMP/text.$i" "$TMP/alone.$i"; done
check "alone: every chat has text" bash -c "for i in 1 2 3 4; do test -s $TMP/alone.\$i || exit 1; done"
for round in 1 2; do
    pids=()
    for i in 1 2 3 4; do chat "$i" & pids+=($!); done
    wait "${pids[@]}"
    for i in 1 2 3 4; do
        check "round $round: chat $i at once equals chat $i alone" cmp -s "$TMP/text.$i" "$TMP/alone.$i"
    done
done
check "metrics: the active gauge, 0 when idle" test "$(metric 'memfit_llm_sequences_active{model="qwen2_gqa"}')" = 0
check "metrics: the queued gauge, 0 when idle" test "$(metric 'memfit_llm_sequences_queued{model="qwen2_gqa"}')" = 0

# Six clients that leave at once, then five chats at once: a lost session would hold one back.
pids=()
for i in 1 2 3 4 5 6; do
    curl -sN --max-time 0.05 -H 'Content-Type: application/json' "$URL/v1/chat/completions" \
        -d '{"model":"qwen2_gqa","messages":[{"role":"user","content":"go on"}],"max_tokens":200,"stream":true}' >/dev/null &
    pids+=($!)
done
wait "${pids[@]}"
pids=()
for i in 1 2 3 4; do chat "$i" & pids+=($!); done
chat 1 "$TMP/fifth" &
pids+=($!)
wait "${pids[@]}"
for i in 1 2 3 4; do
    check "after clients left: chat $i equals alone" cmp -s "$TMP/text.$i" "$TMP/alone.$i"
done
check "after clients left: a fifth request got a session" cmp -s "$TMP/fifth" "$TMP/alone.1"
for _ in $(seq 50); do
    [[ $(metric 'memfit_llm_sequences_active{model="qwen2_gqa"}') == 0 ]] && break
    sleep 0.1
done
check "every session given back" test "$(metric 'memfit_llm_sequences_active{model="qwen2_gqa"}')" = 0
stop_server

# ---- The same through a manifest: max_concurrency 3 sessions, batched.
cat >"$TMP/m.yaml" <<Y
models:
  - name: qwen2_gqa
    family: qwen2
    sources: [$TMP/qwen2_gqa.gguf]
    max_concurrency: 3
Y
start_server --manifest "$TMP/m.yaml"
pids=()
for i in 1 2 3; do chat "$i" & pids+=($!); done
wait "${pids[@]}"
for i in 1 2 3; do
    check "manifest: chat $i at once equals chat $i alone" cmp -s "$TMP/text.$i" "$TMP/alone.$i"
done
"$MEMFIT" ps --url "$URL" --json >"$TMP/ps.json"
check "manifest: ps shows max_concurrency 3" grep -q '"max_concurrency":3' "$TMP/ps.json"
stop_server
finish
