#!/usr/bin/env bash
# Integration test of `memfit report`: the human table and the JSON on the
# live machine, a process tree (--pid), the usage errors (a pid that does not
# exist, a bad --top), and the JSON of fixture trees (--root) checked for the
# effective limit each one must find.
set -uo pipefail
: "${MEMFIT_BIN:?MEMFIT_BIN must name the memfit binary}"
: "${MEMFIT_FIXTURES:?MEMFIT_FIXTURES must name tests/fixtures}"
PY=$(command -v python3 || echo /usr/bin/python3)
[[ -x $PY ]] || { echo "SKIPPED: python3 is needed to validate the JSON"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$MEMFIT_BIN" report >"$tmp/out" 2>"$tmp/err" || fail "report exited $?: $(cat "$tmp/err")"
for word in Level System Container "Top 5 processes" GPU; do
    grep -q "$word" "$tmp/out" || fail "report lacks '$word'"
done

"$MEMFIT_BIN" report --json >"$tmp/json" || fail "report --json exited $?"
"$PY" -m json.tool "$tmp/json" >/dev/null || fail "report --json is not valid JSON"
"$PY" - "$tmp/json" <<'PY' || fail "report --json lacks the summary"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
assert d["v"] == 1 and s["limit_bytes"] > 0 and s["level"] in ("ok", "warning", "critical", "danger")
assert 0 <= s["percent"] <= 100 and d["process"] is None and len(d["top"]) <= 5
PY

"$MEMFIT_BIN" report --pid $$ --top 2 --json >"$tmp/pid" || fail "report --pid \$\$ exited $?"
"$PY" - "$tmp/pid" "$$" <<'PY' || fail "report --pid: wrong process section"
import json, sys
d = json.load(open(sys.argv[1]))
p = d["process"]
assert p["pid"] == int(sys.argv[2]) and p["n_procs"] >= 1 and p["rss_bytes"] > 0, p
assert len(d["top"]) == 2
s = d["summary"]
# The rule monitor uses (memfit_judge): without a cgroup limit the tree is judged.
if s["limit_source"] == "memory":
    assert s["scope"] == "process" and s["in_use_bytes"] == p["rss_bytes"], s
    assert s["limit_bytes"] == p["rss_bytes"] + d["system"]["available_bytes"], s
else:
    assert s["scope"] == "cgroup", s
PY
"$MEMFIT_BIN" report --json >"$tmp/nopid" || fail "report --json"
"$PY" -c 'import json, sys; s = json.load(open(sys.argv[1]))["summary"]; assert s["scope"] in ("machine", "cgroup") and (s["scope"] == "cgroup") == (s["limit_source"] == "cgroup"), s' "$tmp/nopid" ||
    fail "report without --pid: the scope is the machine's or the cgroup's"
"$MEMFIT_BIN" report --pid $$ | grep -q "^Process" || fail "report --pid: no Process section"

"$MEMFIT_BIN" report --pid 999999999 >"$tmp/out" 2>"$tmp/err"
rc=$?
[[ $rc -eq 2 ]] || fail "report --pid 999999999 exited $rc, not 2"
grep -q "memfit report: no process with pid 999999999" "$tmp/err" || fail "message: $(cat "$tmp/err")"
for bad in "--top -1" "--top 65" "--top x" "--pid 0" "--frobnicate" "--root" "--warn 95 --critical 90" \
    "--warn x" "--critical 101" "--danger-available lots"; do
    # shellcheck disable=SC2086
    "$MEMFIT_BIN" report $bad >/dev/null 2>&1
    rc=$?
    [[ $rc -eq 2 ]] || fail "report $bad exited $rc, not 2"
done
"$MEMFIT_BIN" report --help | grep -q "^Usage: memfit report" || fail "report --help"

# Thresholds: the level follows --warn/--critical/--danger-available, and the
# JSON says which were judged with (default danger: 50 MB at most).
"$MEMFIT_BIN" report --json >"$tmp/t0" || fail "report --json"
"$MEMFIT_BIN" report --warn 0 --critical 0.001 --json >"$tmp/t1" || fail "report --warn 0 --critical 0.001"
"$MEMFIT_BIN" report --danger-available 1TiB --json >"$tmp/t2" || fail "report --danger-available 1TiB"
"$PY" - "$tmp/t0" "$tmp/t1" "$tmp/t2" <<'PY' || fail "thresholds"
import json, sys
t0, t1, t2 = (json.load(open(p))["summary"] for p in sys.argv[1:4])
assert t0["thresholds"]["warning_percent"] == 80 and t0["thresholds"]["critical_percent"] == 90, t0
assert 0 < t0["thresholds"]["danger_available_bytes"] <= 50_000_000, t0
assert t1["level"] in ("critical", "danger") and t1["thresholds"]["critical_percent"] == 0.001, t1
assert t2["level"] == "danger" and t2["thresholds"]["danger_available_bytes"] == 2**40, t2
PY

# Fixture trees: CASE LIMIT_BYTES LIMIT_SOURCE MODE
while read -r case limit source mode; do
    "$MEMFIT_BIN" report --root "$MEMFIT_FIXTURES/sys/$case" --json >"$tmp/$case" ||
        fail "report --root $case exited $?"
    "$PY" - "$tmp/$case" "$limit" "$source" "$mode" <<'PY' || fail "fixture $case"
import json, sys
d = json.load(open(sys.argv[1]))
s, c = d["summary"], d["cgroup"]
want = int(sys.argv[2])
assert s["limit_bytes"] == want and s["limit_source"] == sys.argv[3], (s, sys.argv)
assert c["mode"] == sys.argv[4], c["mode"]
assert d["gpu"]["available"] is False
PY
done <<'CASES'
v2_limit 1073741824 cgroup v2
v2_nested 1073741824 cgroup v2
v2_nolimit 8589934592 memory v2
v1_limit 536870912 cgroup v1
v1_nolimit 8589934592 memory v1
v1_container 209715200 cgroup v1
hybrid 2147483648 cgroup hybrid
no_cgroup 8589934592 memory none
CASES
echo "report: all checks passed"
