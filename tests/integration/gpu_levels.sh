#!/usr/bin/env bash
# GPU levels and per-process GPU memory without a GPU: a fake libnvidia-ml
# (tests/fixtures/gpu/fake_nvml.c, built here with cc) whose figures the test
# steers through a state file. `memfit report` (text and JSON) shows each
# device with its level crossing 80/90/95 % and the processes with their
# names; `memfit monitor` logs percent, level and processes per GPU and a
# gpu_level record when the fake's usage rises (and falls back only past
# the hysteresis); `memfit serve --gpu` /metrics carries the GPU series
# from one NVML session, and /api/memory answers from one more, opened on its
# first request and kept (sequential and concurrent requests alike).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
LIB=$(build_fake_nvml) || skip "$(build_fake_nvml 2>&1 >/dev/null)"
export MEMFIT_NVML_LIBRARY=$LIB FAKE_NVML_STATE=$TMP/nvml.state FAKE_NVML_INIT_LOG=$TMP/nvml.inits
export GIB=1073741824

# json_holds FILE EXPR / jsonl_holds FILE EXPR: the Python expression over
# `d` (the document, or the list of records of a JSON-lines file) is true.
json_holds() {
    "$PY" -c "import json,sys
d=json.load(open(sys.argv[1]))
sys.exit(0 if ($2) else 1)" "$1"
}
jsonl_holds() {
    "$PY" -c "import json,sys
d=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if ($2) else 1)" "$1"
}

# state PERCENT [PROC...]: GPU 0 (10 GiB) at PERCENT, GPU 1 (20 GiB) at 1 GiB,
# and processes "DEVICE PID USED_BYTES"; replaced in one rename.
state() {
    local used=$1
    shift
    {
        echo "gpu $((10 * GIB)) $((used * GIB / 10)) Fake A100"
        echo "gpu $((20 * GIB)) $GIB Fake H100"
        for p in "$@"; do echo "proc $p"; done
    } >"$FAKE_NVML_STATE.new"
    mv "$FAKE_NVML_STATE.new" "$FAKE_NVML_STATE"
}
export -f state

# ---- report ------------------------------------------------------------------
sleep 30 &
SLEEPER=$!
on_exit "kill $SLEEPER 2>/dev/null"
for case in "50 ok" "80 warning" "90 critical" "95 danger" "100 danger"; do
    read -r used want <<<"$case"
    state "$used" "0 $SLEEPER $((2 * GIB))" "1 $$ $GIB"
    "$MEMFIT" report --top 0 --json >"$TMP/r.json" 2>"$TMP/r.err"
    check "report --json at ${used}%: GPU 0 $want" json_holds "$TMP/r.json" \
        "d['gpu']['devices'][0]['level'] == '$want' and d['gpu']['devices'][0]['percent'] == $used and d['gpu']['devices'][1]['level'] == 'ok'"
done
check "report --json: thresholds" json_holds "$TMP/r.json" \
    "d['gpu']['thresholds'] == {'warning_percent': 80, 'critical_percent': 90, 'danger_percent': 95}"
check "report --json: processes with names" json_holds "$TMP/r.json" \
    "[(p['device'], p['pid'], p['name'], p['used_bytes']) for p in d['gpu']['processes']] == [(0, $SLEEPER, 'sleep', 2 * $GIB), (1, $$, 'bash', $GIB)]"
state 85 "0 $SLEEPER $((2 * GIB))"
"$MEMFIT" report --top 0 >"$TMP/r.txt" 2>&1
check "report: GPU 0 warning at 85%" grep -Eq "^  0 Fake A100 +warning: used 8.50 GiB of 10.0 GiB \(85.0%\)" "$TMP/r.txt"
check "report: GPU 1 ok" grep -Eq "^  1 Fake H100 +ok: used 1.00 GiB of 20.0 GiB \(5.0%\)" "$TMP/r.txt"
check "report: the process line" grep -Eq "^ +$SLEEPER  sleep +0 +2.00 GiB$" "$TMP/r.txt"
"$MEMFIT" report --top 0 --gpu-warn 50 --gpu-critical 60 --gpu-danger 85 --json >"$TMP/r2.json"
check "report --gpu-*: GPU 0 danger at 85% of 85" json_holds "$TMP/r2.json" \
    "d['gpu']['devices'][0]['level'] == 'danger' and d['gpu']['thresholds']['danger_percent'] == 85"
for bad in "--gpu-warn 90" "--gpu-critical 96" "--gpu-danger 101" "--gpu-warn x" "--gpu-danger"; do
    # shellcheck disable=SC2086
    "$MEMFIT" report $bad >/dev/null 2>"$TMP/bad.err"
    check "report $bad: usage error" test $? = 2
done
"$MEMFIT" report --gpu-warn 90 >/dev/null 2>"$TMP/bad.err"
check "report --gpu-warn 90: the message" grep -q "GPU thresholds must rise: warning 90% < critical 90%" "$TMP/bad.err"

# ---- monitor -----------------------------------------------------------------
state 50
TMP_STATE=$TMP/state91.json "$MEMFIT" monitor -i 50ms -l "$TMP/m.jsonl" -- bash -c '
    state 50 "0 $$ $((3 * GIB))"
    sleep 0.6
    state 91 "0 $$ $((3 * GIB))"
    sleep 0.6
    cp "$MEMFIT_PRESSURE_FILE" "$TMP_STATE"
    state 89 "0 $$ $((3 * GIB))"
    sleep 0.6
    state 85 "0 $$ $((3 * GIB))"
    sleep 0.6
    state 70 "0 $$ $((3 * GIB))"
    sleep 0.6
    echo $$ >"$0"' "$TMP/child.pid" 2>"$TMP/m.err"
check "monitor: exit 0" test $? = 0
CHILD=$(cat "$TMP/child.pid" 2>/dev/null || echo 0)
check "monitor: gpu_level records at 91, 85 and 70%, none at 89% (hysteresis)" jsonl_holds "$TMP/m.jsonl" \
    "[(r['index'], r['from'], r['to'], round(r['percent'])) for r in d if r['type'] == 'gpu_level'] == [(0, 'ok', 'critical', 91), (0, 'critical', 'warning', 85), (0, 'warning', 'ok', 70)]"
check "monitor: samples carry percent, level, processes" jsonl_holds "$TMP/m.jsonl" \
    "any(g['index'] == 0 and g['level'] == 'critical' and round(g['percent']) == 91 and g['processes'] == [{'pid': $CHILD, 'used_bytes': 3 * $GIB}] for r in d if r['type'] == 'sample' for g in r['gpu'])"
check "monitor: GPU 1 stays ok with no processes" jsonl_holds "$TMP/m.jsonl" \
    "all(r['gpu'][1]['level'] == 'ok' and r['gpu'][1]['processes'] == [] and r['gpu'][1]['percent'] == 5 for r in d if r['type'] == 'sample')"
check "monitor: at 89% GPU 0 stays critical" jsonl_holds "$TMP/m.jsonl" \
    "any(round(r['gpu'][0]['percent']) == 89 and r['gpu'][0]['level'] == 'critical' for r in d if r['type'] == 'sample')"
check "monitor: the channel's state file carries each GPU with its level" $PY -c '
import json, sys
g = json.load(open(sys.argv[1]))["gpu"]
assert [(x["index"], x["level"], round(x["percent"])) for x in g] == [(0, "critical", 91), (1, "ok", 5)], g
assert g[0]["used_bytes"] > 0 and g[0]["total_bytes"] > g[0]["used_bytes"]' "$TMP/state91.json"
check "monitor: the change said on stderr" grep -q "memfit monitor: GPU 0 ok -> critical at 91.0% (9.10 GiB of 10.0 GiB)" "$TMP/m.err"
"$MEMFIT" analyze "$TMP/m.jsonl" >"$TMP/a.txt" 2>&1
check "analyze: gpu_level is a known record" bash -c "! grep -q 'unknown type' '$TMP/a.txt'"
"$MEMFIT" monitor --gpu-warn 95 -d 0.1 >/dev/null 2>&1
check "monitor --gpu-warn 95: usage error" test $? = 2

# ---- serve /metrics ------------------------------------------------------------
command -v curl >/dev/null || { echo "SKIPPED part: curl is needed for /metrics"; finish; }
: >"$FAKE_NVML_INIT_LOG"
state 50
start_server --gpu
state 92 "0 $PID $((4 * GIB))"
sleep 0.6 # the server samples at most every 0.5 s
curl -s "$URL/metrics" >"$TMP/metrics"
check "metrics: used bytes" grep -qx "memfit_gpu_memory_used_bytes{gpu=\"0\"} $((92 * GIB / 10))" "$TMP/metrics"
check "metrics: total bytes" grep -qx "memfit_gpu_memory_total_bytes{gpu=\"1\"} $((20 * GIB))" "$TMP/metrics"
check "metrics: level critical (2)" grep -qx 'memfit_gpu_level{gpu="0"} 2' "$TMP/metrics"
check "metrics: level of GPU 1 ok (0)" grep -qx 'memfit_gpu_level{gpu="1"} 0' "$TMP/metrics"
check "metrics: the server's own GPU memory" grep -qx "memfit_gpu_process_memory_bytes{gpu=\"0\",pid=\"$PID\"} $((4 * GIB))" "$TMP/metrics"
for f in memfit_gpu_memory_used_bytes memfit_gpu_memory_total_bytes memfit_gpu_level memfit_gpu_process_memory_bytes; do
    check "metrics: HELP and TYPE of $f" bash -c "grep -q '^# HELP $f ' '$TMP/metrics' && grep -qx '# TYPE $f gauge' '$TMP/metrics'"
done
for _ in 1 2 3; do
    sleep 0.6
    curl -s "$URL/metrics" >/dev/null
done
check "metrics: one NVML session for all scrapes" test "$(wc -l <"$FAKE_NVML_INIT_LOG")" = 1
# /api/memory: its own session, opened by the first request, then reused.
for i in 1 2 3 4 5; do
    code "$URL/api/memory" >"$TMP/mem.code"
    cp "$TMP/body" "$TMP/mem$i.json"
    check "api/memory $i: 200" test "$(cat "$TMP/mem.code")" = 200
    check "api/memory $i: GPU 0 critical at 92%, GPU 1 ok, the server's process" json_holds "$TMP/mem$i.json" \
        "[(g['index'], g['name'], g['used_bytes'], g['total_bytes'], g['level']) for g in d['gpu']['devices']] == [(0, 'Fake A100', 92 * $GIB // 10, 10 * $GIB, 'critical'), (1, 'Fake H100', $GIB, 20 * $GIB, 'ok')] and [(p['device'], p['pid']) for p in d['gpu']['processes']] == [(0, $PID)]"
done
check "api/memory: the same GPUs in every answer" bash -c "for i in 2 3 4 5; do
    $PY -c 'import json,sys; a,b=(json.load(open(f))[\"gpu\"][\"devices\"] for f in sys.argv[1:]); assert a==b' '$TMP/mem1.json' '$TMP/mem'\$i.json || exit 1; done"
check "api/memory: one NVML session for five requests" test "$(wc -l <"$FAKE_NVML_INIT_LOG")" = 2
CURLS=()
for i in $(seq 8); do
    curl -s -o /dev/null -w '%{http_code}\n' "$URL/api/memory" >"$TMP/par$i" &
    CURLS+=($!)
done
wait "${CURLS[@]}"
check "api/memory: 8 at once all 200" test "$(cat "$TMP"/par* | sort -u)" = 200
check "api/memory: still one session after concurrent requests" test "$(wc -l <"$FAKE_NVML_INIT_LOG")" = 2
stop_server
start_server
curl -s "$URL/metrics" >"$TMP/metrics"
check "metrics without --gpu: no GPU series" bash -c "! grep -q memfit_gpu_ '$TMP/metrics'"
stop_server
finish
