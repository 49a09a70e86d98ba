#!/bin/bash
# `memfit serve` inside a memory cgroup whose limit cannot hold two models
# at once: alternating embedding requests for the two are all served, by
# evicting one to load the other, with zero OOM kills; the evictions show in
# /metrics. Skipped where a memory cgroup cannot be created, and under
# sanitizers (their shadow memory does not fit a tight limit).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
[[ ${MEMFIT_SANITIZED:-OFF} == OFF ]] || skip "sanitized build: a 56 MiB limit cannot hold the sanitizer's shadow memory"
HELPER=$BUILD/manager_stress
[[ -x $HELPER ]] || skip "helper $HELPER not built"
LIMIT=$((56 * 1024 * 1024))
"$HELPER" gen "$TMP" >/dev/null || { fail "generating the models"; finish; }
A=$TMP/vits_f32.gguf
B=$TMP/vits_f16.gguf
check "the two models together exceed the budget" \
    [ $(($(stat -c %s "$A") + $(stat -c %s "$B"))) -gt $((40 * 1024 * 1024)) ]

CG=$(make_cgroup "memfit-serve-$$" "$LIMIT") || skip "$(make_cgroup "memfit-serve-$$" "$LIMIT" 2>&1 >/dev/null)"
on_exit "remove_cgroup '$CG'"
if [[ -f $CG/memory.limit_in_bytes ]]; then
    oom_kills() { awk '/^oom_kill /{print $2}' "$CG/memory.oom_control"; }
else
    oom_kills() { awk '/^oom_kill /{print $2}' "$CG/memory.events"; }
fi
before=$(oom_kills)

cat >"$TMP/m.yaml" <<YAML
budget: 40MiB
models:
  - name: a
    family: dinov2
    sources: [$A]
    options: {threads: 1}
  - name: b
    family: dinov2
    sources: [$B]
    options: {threads: 1}
YAML
start_server_in "$CG" --manifest "$TMP/m.yaml"

ok=0
for i in $(seq 12); do
    model=$([[ $((i % 2)) -eq 0 ]] && echo a || echo b)
    make_request "$model" float "$MEMFIT_FIXTURES/images/check40x30.png"
    c=$(code "$URL/v1/embeddings" -H 'Content-Type: application/json' --data @"$TMP/req.json")
    [[ $c == 200 ]] && ok=$((ok + 1)) || { echo "request $i ($model): $c $(cat "$TMP/body")"; }
done
check "12 alternating requests served" [ $ok -eq 12 ]
evictions=$(curl -s "$URL/metrics" | awk '/^memfit_model_evictions_total/ {s += $NF} END {print s + 0}')
echo "evictions in /metrics: $evictions"
check "evictions show in /metrics" [ "$evictions" -ge 10 ]
check "the server is still alive" kill -0 "$PID"
kill -TERM "$PID"
wait "$PID"
check "SIGTERM: exit 0" [ $? -eq 0 ]
after=$(oom_kills)
check "no OOM kill (${before:-0} -> ${after:-0})" [ "${after:-0}" -eq "${before:-0}" ]
finish
