#!/usr/bin/env bash
# `memfit generate` and `memfit chat` on the tiny reference models
# (tests/fixtures/llm): greedy output is deterministic, the same seed gives
# the same text, --stats reports speed and memory, a chat session runs its
# commands, and bad input (context overflow, a budget too small, another
# family's file, invalid UTF-8, out-of-range sampling) fails with a clear
# message and the right exit status.
source "$(dirname "$0")/lib.bash"
FX=$MEMFIT_FIXTURES/llm
Q=$FX/qwen2_gqa.gguf
L=$FX/llama_gqa.gguf

"$MEMFIT" generate "$Q" -p "Hello, world" -n 12 --temp 0 >"$TMP/g1" 2>"$TMP/e1"
check "generate greedy exits 0" test $? -eq 0
"$MEMFIT" generate "$Q" -p "Hello, world" -n 12 --temp 0 --threads 1 --batch 3 >"$TMP/g2"
check "greedy text is the same with 1 thread and batches of 3" cmp -s "$TMP/g1" "$TMP/g2"
"$MEMFIT" generate "$L" -p "Once" -n 10 --seed 11 --temp 1.2 --top-k 0 >"$TMP/s1"
"$MEMFIT" generate "$L" -p "Once" -n 10 --seed 11 --temp 1.2 --top-k 0 >"$TMP/s2"
check "same seed, same text (llama)" cmp -s "$TMP/s1" "$TMP/s2"
"$MEMFIT" generate "$Q" -p "Hi" -n 8 --stats --temp 0 >/dev/null 2>"$TMP/stats"
check "--stats prints tokens/s and peak RSS" grep -q "generation: [0-9]* tokens .* tokens/s); peak RSS" "$TMP/stats"
"$MEMFIT" generate "$FX/qwen2_mha.gguf" -p "Hi" -n 4 --kv q8_0 >/dev/null 2>&1
check "a Q8_0 KV cache (head size 32)" test $? -eq 0
"$MEMFIT" generate "$Q" -p "Hi" -n 4 --kv q8_0 >/dev/null 2>"$TMP/e"
check "a Q8_0 KV cache with head size 16 is refused clearly" grep -q "multiple of 32" "$TMP/e"
check "--stats prints the plan" grep -q "KV cache" "$TMP/stats"
"$MEMFIT" generate "$Q" -p "Hi" --chat --system "Be brief." -n 4 >/dev/null 2>"$TMP/chat"
check "--chat says which template" grep -q "chat template chatml (the model's)" "$TMP/chat"

printf 'hello\n/reset\nhow are you?\n/exit\n' | "$MEMFIT" chat "$Q" -n 6 --temp 0 >"$TMP/c.out" 2>"$TMP/c.err"
check "chat exits 0 at /exit" test $? -eq 0
check "chat resets" grep -q "(conversation reset)" "$TMP/c.out"
check "chat names its template" grep -q "template chatml" "$TMP/c.err"

long=$(head -c 600 /dev/zero | tr '\0' 'a')
"$MEMFIT" generate "$Q" -p "$long" --ctx 64 >/dev/null 2>"$TMP/e"
rc=$?
check "prompt longer than the context: exit 1" test $rc -eq 1
check "... with the figures" grep -q "the prompt is 600 tokens; the context holds 64" "$TMP/e"
"$MEMFIT" generate "$Q" -p "Hi" --budget 100K >/dev/null 2>"$TMP/e"
check "a budget too small: exit 1" test $? -eq 1
check "... refused with the plan's figures" grep -Eq "needs [1-9][0-9.]* KiB \(weights [1-9][0-9.]* KiB, workspace [1-9][0-9.]* KiB, KV cache [1-9][0-9.]* KiB\)" "$TMP/e"
check "... against the budget, naming its source" grep -q "whole budget is 100.0 KiB.*from --budget 100K" "$TMP/e"
check "... and what to change" grep -q "context of 256 tokens: a smaller --ctx or --kv q8_0" "$TMP/e"
MEMFIT_MAX_MEMORY_MB=0.25 "$MEMFIT" generate "$Q" -p "Hi" >/dev/null 2>"$TMP/e"
check "a budget from the environment too small: exit 1" test $? -eq 1
check "... naming the variable" grep -q "from MEMFIT_MAX_MEMORY_MB=0.25" "$TMP/e"
"$MEMFIT" convert "$MEMFIT_FIXTURES/dinov2/vits_tiny.pth" "$TMP/dino.gguf" >/dev/null 2>&1
"$MEMFIT" generate "$TMP/dino.gguf" -p "Hi" >/dev/null 2>"$TMP/e"
check "a DINOv2 file: exit 1" test $? -eq 1
check "... saying it is not an LLM" grep -qi "architecture" "$TMP/e"
"$MEMFIT" generate "$Q" -p "$(printf 'ok \xff')" >/dev/null 2>"$TMP/e"
check "invalid UTF-8 prompt: exit 1" test $? -eq 1
check "... naming UTF-8" grep -qi "utf-8" "$TMP/e"
"$MEMFIT" generate "$Q" -p "Hi" --temp -1 >/dev/null 2>&1
check "temperature out of range: exit 2" test $? -eq 2
"$MEMFIT" generate "$Q" >/dev/null 2>&1
check "no prompt: exit 2" test $? -eq 2
"$MEMFIT" generate /nonexistent.gguf -p x >/dev/null 2>&1
check "missing file: exit 1" test $? -eq 1
finish
