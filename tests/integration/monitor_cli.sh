# memfit monitor's command line: help, bad input (exit 2 with a clear
# message), a short run on the machine, --pid, and exit status pass-through.
source "$(dirname "$0")/lib.bash"

check "monitor --help" "$MEMFIT" monitor --help
expect_usage() { # expected-text, args...
    local want=$1
    shift
    "$MEMFIT" "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    [[ $rc -eq 2 ]] && grep -q -- "$want" "$TMP/err" || { cat "$TMP/err"; echo "rc=$rc"; return 1; }
}
check "non-existent pid -> exit 2" expect_usage "no process with pid" monitor --pid 999999999 -d 1
check "malformed threshold -> exit 2" expect_usage "invalid percentage 'lots'" monitor --warn lots
check "threshold above 100 -> exit 2" expect_usage "invalid percentage" monitor --critical 120
check "warn >= critical -> exit 2" expect_usage "must be below" monitor --warn 95 --critical 90
check "bad interval -> exit 2" expect_usage "invalid duration" monitor -i soon
check "unwritable log -> exit 2" expect_usage "/nonexistent/dir/x.jsonl" monitor -l /nonexistent/dir/x.jsonl -d 1
check "unknown option -> exit 2" expect_usage "unknown option" monitor --bogus

"$MEMFIT" monitor -i 50ms -d 300ms --no-gpu -l "$TMP/m.jsonl"
check "plain run exits 0" [ $? -eq 0 ]
check "plain run wrote start and samples" \
    [ "$(jq_py "$TMP/m.jsonl" "(d[0]['type'], sum(r['type']=='sample' for r in d) >= 4)")" = "('start', True)" ]

sleep 30 &
sleeper=$!
"$MEMFIT" monitor -i 50ms -d 200ms --no-gpu --pid $sleeper -l "$TMP/p.jsonl"
kill $sleeper
check "--pid samples the process" \
    [ "$(jq_py "$TMP/p.jsonl" "all(r['process']['pid']==$sleeper for r in d if r['type']=='sample')")" = True ]

"$MEMFIT" monitor -i 50ms -q --no-gpu -- sh -c 'exit 3'
check "command exit status passed through" [ $? -eq 3 ]
"$MEMFIT" monitor -i 50ms -q --no-gpu -- /nonexistent/program 2>/dev/null
check "missing program -> 127" [ $? -eq 127 ]
"$MEMFIT" monitor -i 50ms -q --no-gpu --warn 0.001 --critical 0.002 \
    --on-warning "echo {level} {pid} > $TMP/action" -l "$TMP/a.jsonl" -- sleep 0.3
check "action ran with substitutions" grep -Eq '^warning [0-9]+$' "$TMP/action"
check "action logged with exit code" \
    [ "$(jq_py "$TMP/a.jsonl" "[r['exit_code'] for r in d if r['type']=='action'][:1]")" = "[0]" ]
finish
