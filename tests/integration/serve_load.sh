#!/usr/bin/env bash
# Load on `memfit serve` with wrk, bounded in time (about 12 s): a warm-up,
# then two rounds of /health and /metrics (10,000+ requests in all) and of
# DINOv2 embeddings (a few hundred); no non-2xx answer and no socket error,
# and the server's RSS after the second round within 2 MB of its RSS after
# the warm-up (no growth per request). Under sanitizers the counts and the
# RSS are not checked (their allocators and slowness make them meaningless),
# only the absence of errors. Skipped, with the reason, without wrk.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
command -v wrk >/dev/null || skip "wrk is not installed (Debian package wrk; scripts/install-deps --bench)"
SANITIZED=${MEMFIT_SANITIZED:-OFF}

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
start_server "$TMP/vits_tiny.pth"
make_request vits_tiny float "$FX/images/rgb8.png"
POST="$(dirname "$0")/serve_post.lua"

TOTAL_LIGHT=0
TOTAL_EMBED=0
# run NAME SECONDS CONNECTIONS PATH [lua]: wrk; checks its errors, adds its count.
run() {
    local name=$1 secs=$2 conns=$3 path=$4 script=${5:-}
    local args=(-t2 -c"$conns" -d"${secs}s" --timeout 10s)
    [[ -n $script ]] && args+=(-s "$script")
    MEMFIT_WRK_BODY="$TMP/req.json" wrk "${args[@]}" "$URL$path" >"$TMP/wrk.out" 2>&1
    local n
    n=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
    echo "$name: ${n:-0} requests in ${secs} s ($(awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out")/s)"
    check "$name: wrk ran" test -n "$n"
    check "$name: no non-2xx answer" bash -c "! grep -q 'Non-2xx' '$TMP/wrk.out'" ||
        cat "$TMP/wrk.out"
    check "$name: no socket error" bash -c "! grep -q 'Socket errors' '$TMP/wrk.out'" ||
        cat "$TMP/wrk.out"
    if [[ $path == /v1/embeddings ]]; then TOTAL_EMBED=$((TOTAL_EMBED + ${n:-0})); else TOTAL_LIGHT=$((TOTAL_LIGHT + ${n:-0})); fi
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

run "warm-up /health" 1 16 /health
run "warm-up /metrics" 1 8 /metrics
run "warm-up embeddings" 1 4 /v1/embeddings "$POST"
RSS0=$(rss_kb)
TOTAL_LIGHT=0
TOTAL_EMBED=0
for round in 1 2; do
    run "round $round /health" 2 16 /health
    run "round $round /metrics" 1 8 /metrics
    run "round $round embeddings" 3 4 /v1/embeddings "$POST"
done
RSS1=$(rss_kb)
echo "RSS after warm-up ${RSS0} kB, after two rounds ${RSS1} kB; $TOTAL_LIGHT light requests, $TOTAL_EMBED embeddings"
check "the server still answers" test "$(code "$URL/health")" = 200
# 499 is not an error: wrk closes its connections at the end with requests in flight.
check "no embedding request failed (metrics)" bash -c "! curl -s '$URL/metrics' | grep -E 'memfit_http_requests_total\{route=\"/v1/embeddings\",code=\"(4([0-8][0-9]|9[0-8])|5[0-9][0-9])\"'"
if [[ $SANITIZED == ON ]]; then
    echo "note: sanitized build: request counts and RSS not checked"
else
    check "10,000+ /health and /metrics requests" test "$TOTAL_LIGHT" -ge 10000
    check "a few hundred embeddings (at least 200)" test "$TOTAL_EMBED" -ge 200
    check "RSS flat: within 2 MB of the warm-up" test $((RSS1 - RSS0)) -le 2048
fi
stop_server
check "SIGTERM exits 0 after the load" test $? -eq 0
finish
