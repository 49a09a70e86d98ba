#!/usr/bin/env bash
# One figure of memory in use across the tools: a process maps a 300 MB file
# in a memory cgroup (its pages charged there, mapped, on the inactive file
# list — where a server's mapped weights sit after a load), and `memfit
# report`, `memfit monitor`'s log, `memfit analyze`, and `memfit serve`'s
# /metrics and /api/memory in the same cgroup must all count it as in use,
# and agree with each other within 16 MB. The kubelet's working set (usage
# - inactive file), shown beside it, leaves most of it out. Skipped where a
# memory cgroup cannot be created.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
HELPER=$BUILD/map_file
[[ -x $HELPER ]] || skip "helper $HELPER not built"
MB=$((1000 * 1000))
CG=$(make_cgroup "memfit-mapped-$$" $((1024 * 1024 * 1024))) ||
    skip "$(make_cgroup "memfit-mapped-$$" 1 2>&1 >/dev/null)"
on_exit "remove_cgroup '$CG'"

head -c $((300 * MB)) /dev/zero | tr '\0' 'w' >"$TMP/weights.bin"
bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$HELPER" "$TMP/weights.bin" >"$TMP/map.out" &
MAPPER=$!
on_exit "kill $MAPPER 2>/dev/null"
for _ in $(seq 100); do grep -q mapped "$TMP/map.out" && break; sleep 0.1; done
check "the file is mapped" grep -q "mapped $((300 * MB))" "$TMP/map.out"

"$MEMFIT" report --json --pid "$MAPPER" --no-gpu >"$TMP/report.json"
read -r REPORT_IN_USE REPORT_WS REPORT_LEVEL < <("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
print(s["in_use_bytes"], s["working_set_bytes"], s["level"])' "$TMP/report.json")
echo "report: in use $((REPORT_IN_USE / MB)) MB, kubelet working set $((REPORT_WS / MB)) MB, level $REPORT_LEVEL"
check "report counts the mapped file as in use" [ "$REPORT_IN_USE" -ge $((300 * MB)) ]
"$MEMFIT" report --pid "$MAPPER" --no-gpu >"$TMP/report.txt"
check "report's text names mapped files" grep -q "mapped files" "$TMP/report.txt"

"$MEMFIT" monitor --pid "$MAPPER" -i 100ms -d 500ms --no-gpu -l "$TMP/m.jsonl" >/dev/null 2>&1
MONITOR_IN_USE=$(jq_py "$TMP/m.jsonl" "[r for r in d if r['type'] == 'sample'][-1]['in_use_bytes']")
echo "monitor: in use $((MONITOR_IN_USE / MB)) MB"
check "monitor's log agrees with report" [ $((MONITOR_IN_USE - REPORT_IN_USE)) -lt $((16 * MB)) ] &&
    [ $((REPORT_IN_USE - MONITOR_IN_USE)) -lt $((16 * MB)) ]
"$MEMFIT" analyze --json "$TMP/m.jsonl" >"$TMP/a.json"
ANALYZE_MAX=$("$PY" -c '
import json, sys
a = json.load(open(sys.argv[1]))
def find(o):
    if isinstance(o, dict):
        if "working_set_bytes" in o and isinstance(o["working_set_bytes"], dict):
            return o["working_set_bytes"]["max"]
        for v in o.values():
            x = find(v)
            if x is not None:
                return x
    if isinstance(o, list):
        for v in o:
            x = find(v)
            if x is not None:
                return x
print(int(find(a)))' "$TMP/a.json")
echo "analyze: peak in use $((ANALYZE_MAX / MB)) MB"
check "analyze judges the same figure" [ "$ANALYZE_MAX" -ge $((300 * MB)) ]

# The server in the same cgroup: its own few MB come on top.
start_server_in "$CG"
curl -s "$URL/metrics" >"$TMP/metrics"
METRICS_IN_USE=$(awk '/^memfit_memory_in_use_bytes / {print $2}' "$TMP/metrics")
MAPPED=$(awk '/^memfit_memory_bytes\{kind="mapped_file"\}/ {print $2}' "$TMP/metrics")
echo "/metrics: in use $((METRICS_IN_USE / MB)) MB, mapped files $((MAPPED / MB)) MB"
check "/metrics counts it as in use" [ "$METRICS_IN_USE" -ge $((300 * MB)) ]
check "/metrics agrees with report (+ the server's own memory)" \
    [ $((METRICS_IN_USE - REPORT_IN_USE)) -lt $((64 * MB)) ]
check "/metrics shows the mapped file by kind" [ "$MAPPED" -ge $((300 * MB)) ]
API_IN_USE=$(curl -s "$URL/api/memory" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["summary"]["in_use_bytes"])')
check "/api/memory agrees with /metrics" [ $((API_IN_USE - METRICS_IN_USE)) -lt $((16 * MB)) ] &&
    [ $((METRICS_IN_USE - API_IN_USE)) -lt $((16 * MB)) ]
finish
