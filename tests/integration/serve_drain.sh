#!/usr/bin/env bash
# `memfit serve --drain-delay D` (platforms without a preStop hook: Docker,
# Render, Knative): on SIGTERM, /ready and /v2/health/ready turn 503 at once
# while real requests (an embedding of the DINOv2 fixture, /v1/models) are
# still answered 200 for D; then the graceful stop runs and serve exits 0
# after D, not before. A second SIGTERM ends the drain at once. Bad values
# (flag and MEMFIT_DRAIN_DELAY) are usage errors.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
make_request vits_tiny float "$FX/images/rgb8.png"

"$MEMFIT" serve --drain-delay soon >/dev/null 2>"$TMP/usage"
check "--drain-delay soon: usage error" test $? -eq 2
check "the error names the option" grep -q -- "--drain-delay" "$TMP/usage"
MEMFIT_DRAIN_DELAY=-1 "$MEMFIT" serve >/dev/null 2>"$TMP/usage"
check "MEMFIT_DRAIN_DELAY=-1: usage error" test $? -eq 2

DELAY=3
start_server --drain-delay "${DELAY}s" --grace 2s "$TMP/vits_tiny.pth"
check "ready before SIGTERM" test "$(code "$URL/ready")" = 200
check "an embedding before SIGTERM" test "$(post --data-binary @"$TMP/req.json" "$URL/v1/embeddings")" = 200

# Polls every ~0.2 s from SIGTERM until the server is gone: one line per
# poll "SECONDS READY V2READY EMBED MODELS" (000: no connection).
kill -TERM "$PID"
t0=$(date +%s.%N)
while kill -0 "$PID" 2>/dev/null; do
    t=$(date +%s.%N)
    r=$(code "$URL/ready")
    v=$(code "$URL/v2/health/ready")
    e=$(post --data-binary @"$TMP/req.json" "$URL/v1/embeddings")
    m=$(code "$URL/v1/models")
    echo "$("$PY" -c "print('%.2f' % ($t - $t0))") $r $v $e $m" >>"$TMP/polls"
    sleep 0.2
done
wait "$PID"
status=$?
t_exit=$("$PY" -c "print('%.2f' % ($(date +%s.%N) - $t0))")
echo "polls (seconds after SIGTERM, /ready, /v2/health/ready, embedding, /v1/models):"
cat "$TMP/polls"
echo "exited after ${t_exit}s with status $status"

check "exit status 0" test "$status" -eq 0
check "exits after the drain delay, not before" "$PY" -c "assert $t_exit >= $DELAY - 0.05, $t_exit"
check "exits within delay + 2 s" "$PY" -c "assert $t_exit < $DELAY + 2, $t_exit"
# Every poll that began in the first DELAY - 0.5 s: not ready, yet served.
check "/ready and /v2/health/ready 503 from the first poll" \
    awk -v d="$DELAY" '$1 < d - 0.5 && ($2 != 503 || $3 != 503) {bad = 1} END {exit bad}' "$TMP/polls"
check "requests still answered 200 during the delay" \
    awk -v d="$DELAY" '$1 < d - 0.5 && ($4 != 200 || $5 != 200) {bad = 1} END {exit bad}' "$TMP/polls"
check "several polls during the delay" test "$(awk -v d="$DELAY" '$1 < d - 0.5' "$TMP/polls" | wc -l)" -ge 5
check "the first poll came at once" awk 'NR == 1 {exit !($1 < 0.5)}' "$TMP/polls"
check "the log says it drains" grep -q "draining for 3000 ms" "$TMP/err"

# A second SIGTERM cuts a long drain short.
start_server --drain-delay 60s "$TMP/vits_tiny.pth"
kill -TERM "$PID"
sleep 0.3
check "draining: /ready 503" test "$(code "$URL/ready")" = 503
t0=$(date +%s.%N)
kill -TERM "$PID"
wait "$PID"
status=$?
check "second SIGTERM: exit 0" test "$status" -eq 0
check "second SIGTERM: stops at once" "$PY" -c "assert $(date +%s.%N) - $t0 < 5"

finish
