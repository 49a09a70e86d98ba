#!/usr/bin/env bash
# `memfit serve` under an allocation failure schedule (MEMFIT_FAULT_ALLOC,
# docs/server.md): the DINOv2 fixture pinned (loaded at start, before the
# schedule is armed once the server listens), then 2% of the allocations
# fail (seeded: a periodic schedule locks onto the same allocation of a
# request loop that repeats) while a few hundred mixed requests come in: /health, /metrics,
# /api/models, /api/memory, /v1/models, an unknown route, an image that is
# not base64, embeddings. Every answer is a complete HTTP response (curl
# exit 0: no closed connection, no hang) with the status the request
# deserved or 500/503 out_of_memory, and the daemon never dies. SIGUSR2
# turns the schedule off: every route answers as without it. SIGTERM: exit
# status 0, and in a sanitizer build no report (ASan, UBSan, leaks).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
cat >"$TMP/m.yaml" <<Y
models:
  - name: dino
    family: dinov2
    sources: [$TMP/vits_tiny.pth]
    pin: true
Y
make_request dino float "$FX/images/rgb8.png"
printf '{"model":"dino","input":"data:image/png;base64,%%%%%%%%"}' >"$TMP/bad.json"

# ---- Malformed schedules: refused before anything starts.
for bad in "every=0" "every=x" "often" "random=200" "every=5,after=3" "seed=1"; do
    MEMFIT_FAULT_ALLOC=$bad "$MEMFIT" serve --port 0 --manifest "$TMP/m.yaml" \
        >"$TMP/bad.out" 2>"$TMP/bad.err"
    rc=$?
    check "MEMFIT_FAULT_ALLOC=$bad: exit 2" test "$rc" = 2
    check "MEMFIT_FAULT_ALLOC=$bad: the message names the variable" \
        grep -q "MEMFIT_FAULT_ALLOC: fault schedule '$bad'" "$TMP/bad.err"
done

# ---- 2% of the allocations fail.
MEMFIT_FAULT_ALLOC=random=2,seed=7 start_server --manifest "$TMP/m.yaml"
for _ in $(seq 100); do
    grep -q "injection is ON" "$TMP/err" && break
    sleep 0.05
done
check "start: a warning says injection is on" \
    grep -q "warn: MEMFIT_FAULT_ALLOC=random=2,seed=7: allocation failure injection is ON" "$TMP/err"

declare -A SEEN
BAD=0
# ask NAME ALLOWED CURL_ARGS...: one request; ALLOWED is a regex of the
# statuses it may get (500/503 are added); a curl error (no complete
# response) is bad. SEEN counts the statuses by NAME.
ask() {
    local name=$1 allowed=$2 status rc
    shift 2
    status=$(curl -s -m 30 -o "$TMP/body" -w '%{http_code}' "$@")
    rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "curl exit $rc (status '$status'): $*"
        BAD=$((BAD + 1))
        return
    fi
    if [[ ! $status =~ ^($allowed|500|503)$ ]]; then
        echo "status $status: $* -> $(head -c 300 "$TMP/body")"
        BAD=$((BAD + 1))
    elif [[ $status =~ ^50[03]$ ]] && ! grep -q "out_of_memory\|out of memory" "$TMP/body"; then
        echo "status $status without out_of_memory: $* -> $(head -c 300 "$TMP/body")"
        BAD=$((BAD + 1))
    fi
    SEEN[$name $status]=$((${SEEN[$name $status]:-0} + 1))
}
for _ in $(seq 40); do
    ask health 200 "$URL/health"
    ask metrics 200 "$URL/metrics"
    ask models 200 "$URL/api/models"
    ask memory 200 "$URL/api/memory"
    ask v1-models 200 "$URL/v1/models"
    ask unknown 404 "$URL/no/such/route"
    ask bad-image 400 -H 'Content-Type: application/json' -d @"$TMP/bad.json" "$URL/v1/embeddings"
    ask embed 200 -H 'Content-Type: application/json' -d @"$TMP/req.json" "$URL/v1/embeddings"
done
for k in "${!SEEN[@]}"; do echo "  $k: ${SEEN[$k]}"; done | sort
check "320 requests: every answer complete, with a status it deserved or 503" test "$BAD" = 0
check "some answers were 503 (failures were injected)" \
    test "$(grep -c "out_of_memory\|out of memory" "$TMP/err")" -gt 0
check "some embeddings succeeded under the schedule" \
    test "${SEEN["embed 200"]:-0}" -gt 0
check "the daemon is alive" kill -0 "$PID"

# ---- SIGUSR2: the schedule off; everything answers as without it.
kill -USR2 "$PID"
sleep 0.2
check "off: /health 200" test "$(code "$URL/health")" = 200
check "off: /api/memory 200" test "$(code "$URL/api/memory")" = 200
check "off: /metrics 200" test "$(code "$URL/metrics")" = 200
check "off: embeddings 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "off: the bad image 400" test "$(post -d @"$TMP/bad.json" "$URL/v1/embeddings")" = 400

stop_server
rc=$?
check "SIGTERM: exit status 0" test "$rc" = 0
check "the log counts the failures injected" \
    grep -qE "MEMFIT_FAULT_ALLOC: [1-9][0-9]* allocation\(s\) failed on purpose" "$TMP/err"
check "no crash or sanitizer report in the log" \
    bash -c '! grep -E "AddressSanitizer|LeakSanitizer|runtime error|Segmentation|Aborted" "$1"' _ "$TMP/err"
finish
