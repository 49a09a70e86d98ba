# The pressure channel (docs/channel.md): the wrapped command reads
# $MEMFIT_PRESSURE_FILE in a tight loop while the monitor rewrites it; every
# read must parse as one whole JSON line with the documented fields, seq must
# rise, and the private directory must be gone once the monitor exits (also
# after SIGTERM, and when the command fails). In a memory cgroup with a limit
# (skipped with a note when none can be made) the level in the file must
# change as a helper's memory grows.
source "$(dirname "$0")/lib.bash"

# Reads the state file for SECONDS; writes what it saw as JSON to OUT.
cat >"$TMP/reader.py" <<'PY'
import json, os, sys, time
path, out, seconds = os.environ["MEMFIT_PRESSURE_FILE"], sys.argv[1], float(sys.argv[2])
fields = ["v", "seq", "time", "interval_s", "monitor_pid", "pid", "scope", "level",
          "level_since", "percent", "in_use_bytes", "limit_bytes", "available_bytes",
          "headroom_bytes", "step_bytes", "batch_factor"]
seen = {"path": path, "monitor_pid_env": int(os.environ["MEMFIT_MONITOR_PID"]), "reads": 0,
        "bad": [], "seqs": [], "levels": [], "scopes": [], "missing": [], "backwards": 0,
        "mode": oct(os.stat(os.path.dirname(path)).st_mode & 0o777), "last": None, "peak": None}
end = time.time() + seconds
while time.time() < end:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        time.sleep(0.001)
        continue
    seen["reads"] += 1
    try:
        d = json.loads(text)
        assert text.endswith("\n") and text.count("\n") == 1
    except Exception as e:
        seen["bad"].append(text[:200])
        continue
    seen["missing"] += [k for k in fields if k not in d and k not in seen["missing"]]
    if seen["seqs"] and d["seq"] < seen["seqs"][-1]:
        seen["backwards"] += 1
    if not seen["seqs"] or d["seq"] != seen["seqs"][-1]:
        seen["seqs"].append(d["seq"])
    if d["level"] not in seen["levels"]:
        seen["levels"].append(d["level"])
    if d["scope"] not in seen["scopes"]:
        seen["scopes"].append(d["scope"])
    seen["last"] = d
    if seen["peak"] is None or d["percent"] > seen["peak"]["percent"]:
        seen["peak"] = d
json.dump(seen, open(out, "w"))
PY

field() { # file, python expression over `s` (what the reader saw)
    "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print($2)" "$1"
}

"$MEMFIT" monitor -i 20ms --no-gpu -q -l "$TMP/c.jsonl" -- "$PY" "$TMP/reader.py" "$TMP/seen.json" 1.5
check "command exits 0" [ $? -eq 0 ]
cat "$TMP/seen.json" | head -c 600
echo
check "the file was read many times" [ "$(field "$TMP/seen.json" "s['reads']")" -ge 100 ]
check "every read parsed as one whole line" [ "$(field "$TMP/seen.json" "len(s['bad'])")" = 0 ]
check "every documented field is there" [ "$(field "$TMP/seen.json" "s['missing']")" = "[]" ]
check "seq never goes back" [ "$(field "$TMP/seen.json" "s['backwards']")" = 0 ]
check "seq rises (at least 30 states seen)" [ "$(field "$TMP/seen.json" "len(s['seqs'])")" -ge 30 ]
check "directory is private (0700)" [ "$(field "$TMP/seen.json" "s['mode']")" = 0o700 ]
check "MEMFIT_MONITOR_PID matches monitor_pid" \
    [ "$(field "$TMP/seen.json" "s['monitor_pid_env'] == s['last']['monitor_pid']")" = True ]
check "pid is the command's" \
    [ "$(field "$TMP/seen.json" "s['last']['pid']")" = "$(jq_py "$TMP/c.jsonl" "d[0]['pid']")" ]
check "scope agrees with the log" \
    [ "$(field "$TMP/seen.json" "s['last']['scope']")" = "$(jq_py "$TMP/c.jsonl" "d[0]['scope']")" ]
dir=$(field "$TMP/seen.json" "__import__('os').path.dirname(s['path'])")
check "directory named memfit-channel-XXXXXX under \$TMPDIR or /tmp" \
    grep -Eq "^${TMPDIR:-/tmp}/memfit-channel-.{6}\$" <<<"$dir"
check "directory removed after exit" [ ! -e "$dir" ]

# A failing command, and a monitor stopped by SIGTERM, leave nothing behind.
export TMPDIR=$TMP/tmpdir
mkdir "$TMPDIR"
"$MEMFIT" monitor -i 20ms --no-gpu -q -- sh -c 'test -f "$MEMFIT_PRESSURE_FILE" || sleep 0.2; exit 3'
check "failing command: status passed through" [ $? -eq 3 ]
check "failing command: directory removed" [ -z "$(ls -A "$TMPDIR")" ]
"$MEMFIT" monitor -i 20ms --no-gpu -q -- /nonexistent/program 2>/dev/null
check "missing program: directory removed" [ -z "$(ls -A "$TMPDIR")" ]
"$MEMFIT" monitor -i 20ms --no-gpu -q -- sleep 30 &
mon=$!
for _ in $(seq 100); do compgen -G "$TMPDIR/memfit-channel-*/state.json" >/dev/null && break; sleep 0.02; done
check "state file exists while running" [ -f "$(echo "$TMPDIR"/memfit-channel-*/state.json)" ]
kill -TERM $mon
wait $mon
check "SIGTERM: monitor exits 143 (the command's death passed through)" [ $? -eq 143 ]
check "SIGTERM: directory removed" [ -z "$(ls -A "$TMPDIR")" ]
"$MEMFIT" monitor -i 20ms --no-gpu -q --no-channel -- sh -c 'test -z "${MEMFIT_PRESSURE_FILE:-}"'
check "--no-channel: no state file given" [ $? -eq 0 ]
unset TMPDIR

# --pid with --channel-dir: DIR/state.json, removed (with DIR, made here) after.
sleep 30 &
sleeper=$!
on_exit "kill $sleeper 2>/dev/null"
"$MEMFIT" monitor -i 20ms -d 1s --no-gpu -q --pid $sleeper --channel-dir "$TMP/chan" &
mon=$!
for _ in $(seq 100); do [ -f "$TMP/chan/state.json" ] && break; sleep 0.02; done
check "--pid --channel-dir: state file names the pid" \
    [ "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$TMP/chan/state.json")" = $sleeper ]
wait $mon
check "--pid --channel-dir: directory removed" [ ! -e "$TMP/chan" ]

# In a cgroup: the level in the file follows the memory of a growing helper.
limit=$((128 * 1024 * 1024))
if cg=$(make_cgroup "memfit-test-channel-$$" $limit 2>"$TMP/cgerr"); then
    on_exit "remove_cgroup $cg"
    run_in_cgroup "$cg" "$MEMFIT" monitor -i 20ms --no-gpu -q -l "$TMP/cg.jsonl" -- \
        bash -c '"$0" --step 4MiB --every 30ms --max 104MiB --duration 3s & "$1" "$2" "$3" 2; wait' \
        "$BUILD/memhog" "$PY" "$TMP/reader.py" "$TMP/cg.json"
    check "cgroup run exits 0" [ $? -eq 0 ]
    field "$TMP/cg.json" "s['levels'], s['scopes'], len(s['bad']), s['peak'], s['last']"
    check "cgroup: scope cgroup" [ "$(field "$TMP/cg.json" "s['scopes']")" = "['cgroup']" ]
    check "cgroup: level went from ok to warning or higher" \
        [ "$(field "$TMP/cg.json" "s['levels'][0] == 'ok' and len(s['levels']) >= 2")" = True ]
    check "cgroup: every read parsed" [ "$(field "$TMP/cg.json" "len(s['bad'])")" = 0 ]
    # At the fullest state seen: the end may come after the kernel killed the
    # helper (sanitized builds use more memory than the limit leaves).
    check "cgroup: a step and a factor below 1 at the fullest" \
        [ "$(field "$TMP/cg.json" "s['peak']['step_bytes'] > 0 and s['peak']['batch_factor'] <= 0.5")" = True ]
else
    echo "SKIPPED (part): level changes in a cgroup: $(tail -1 "$TMP/cgerr")"
fi
finish
