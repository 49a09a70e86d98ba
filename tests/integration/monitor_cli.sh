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
check "--signal without = -> exit 2" expect_usage "is not LEVEL=SIG" monitor --signal USR1 -- true
check "--signal bad level -> exit 2" expect_usage "unknown level 'ok'" monitor --signal ok=USR1 -- true
check "--signal bad signal -> exit 2" expect_usage "unknown signal 'USR9'" monitor --signal warning=USR9 -- true
check "--signal number out of range -> exit 2" expect_usage "unknown signal '0'" monitor --signal danger=0 -- true
check "--signal with nobody to signal -> exit 2" expect_usage "needs a command or --pid" monitor --signal warning=USR1 -d 1
check "bad --repeat -> exit 2" expect_usage "--repeat: invalid duration" monitor --repeat often -- true
check "bad --status-every -> exit 2" expect_usage "--status-every: invalid duration" monitor --status-every -3 -- true
check "--channel-dir and --no-channel -> exit 2" expect_usage "exclude each other" \
    monitor --no-channel --channel-dir "$TMP/c" -- true
touch "$TMP/a-file"
check "unusable --channel-dir -> exit 2" expect_usage "--channel-dir: $TMP/a-file: not a directory" \
    monitor --channel-dir "$TMP/a-file" -- true

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

# --signal and --repeat: a process counting USR1 in a trap gets one on
# entering warning, then one per --repeat while warning persists; the hook
# repeats the same way. (--pid: the trap is in place before the first sample.)
bash -c 'n=0; trap "n=\$((n+1)); echo \$n > \"\$0/usr1\"" USR1; touch "$0/ready"
         while :; do sleep 0.02; done' "$TMP" &
counter=$!
on_exit "kill $counter 2>/dev/null"
for _ in $(seq 100); do [ -f "$TMP/ready" ] && break; sleep 0.02; done
"$MEMFIT" monitor --pid $counter -i 50ms -d 1s -q --no-gpu --warn 0.0001 --critical 99 \
    --signal warning=SIGUSR1 --repeat 200ms --on-warning "echo {level} >> $TMP/hooks" \
    -l "$TMP/sig.jsonl"
sleep 0.1
kill $counter
got=$(cat "$TMP/usr1" 2>/dev/null || echo 0)
echo "USR1 received: $got; hooks run: $(wc -l <"$TMP/hooks")"
check "several USR1 received with --repeat 200ms over 1s (3..7)" [ "$got" -ge 3 ] && [ "$got" -le 7 ]
check "each signal logged: first on entering, then repeats" \
    [ "$(jq_py "$TMP/sig.jsonl" "(lambda s: (len(s), s[0]['repeat'], all(r['repeat'] for r in s[1:]), {(r['name'], r['signal'], r['level'], r['pid']) for r in s}))([r for r in d if r['type']=='signal'])")" = "($got, False, True, {('USR1', 10, 'warning', $counter)})" ]
check "hook repeated too (3..7 runs)" [ "$(wc -l <"$TMP/hooks")" -ge 3 ] && [ "$(wc -l <"$TMP/hooks")" -le 7 ]
sleep 30 &
sleeper2=$!
"$MEMFIT" monitor --pid $sleeper2 -i 50ms -d 500ms -q --no-gpu --warn 0.0001 --critical 99 \
    --signal warning=28 --signal critical=USR1 -l "$TMP/once.jsonl" 2>/dev/null
kill $sleeper2
check "without --repeat: once on entering" \
    [ "$(jq_py "$TMP/once.jsonl" "[r['signal'] for r in d if r['type']=='signal']")" = "[28]" ]

# Off a terminal: a plain status line every --status-every, none with 0 or -q.
"$MEMFIT" monitor -i 50ms -d 1s --no-gpu --status-every 250ms 2>"$TMP/status"
status_line="^memfit monitor: +[0-9.]+s  machine in use .* / .*%\).*\[ok\]$"
n=$(grep -Ec "$status_line" "$TMP/status")
echo "status lines: $n"
check "status line every 250ms over 1s (3..5)" [ "$n" -ge 3 ] && [ "$n" -le 5 ]
"$MEMFIT" monitor -i 50ms -d 400ms --no-gpu --status-every 0 2>"$TMP/status0"
check "--status-every 0: no status line" [ "$(grep -Ec "$status_line" "$TMP/status0")" = 0 ]
"$MEMFIT" monitor -i 50ms -d 400ms --no-gpu -q --status-every 100ms 2>"$TMP/statusq"
check "-q: no status line" [ ! -s "$TMP/statusq" ]

# --plot: a live chart redrawn from the log, and the last one at the end.
check "--plot without --log -> exit 2" expect_usage "give --log FILE.jsonl too" monitor --plot "$TMP/c.png" -- true
check "--plot with --log - -> exit 2" expect_usage "give --log FILE.jsonl too" monitor -l - --plot "$TMP/c.png" -- true
check "--plot-every without --plot -> exit 2" expect_usage "--plot-every goes with --plot" monitor --plot-every 1s -- true
check "--plot-every below 100ms -> exit 2" expect_usage "below 100ms" monitor -l "$TMP/p.jsonl" --plot "$TMP/c.png" --plot-every 10ms -- true
"$MEMFIT" monitor -i 50ms --no-gpu --plot "$TMP/live.png" --plot-every 200ms -l "$TMP/live.jsonl" -- \
    bash -c "sleep 0.5; test -s '$TMP/live.png' && cp '$TMP/live.png' '$TMP/during.png'; sleep 0.4" 2>"$TMP/plot.err"
check "--plot: the chart exists while the command runs" test -s "$TMP/during.png"
check "--plot: a PNG (by its name)" bash -c "head -c 8 '$TMP/live.png' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"
check "--plot: the last chart is said at the end, with every sample" \
    bash -c "n=\$(grep -c '\"type\":\"sample\"' '$TMP/live.jsonl'); grep -q \"chart $TMP/live.png (\$n samples)\" '$TMP/plot.err'"
"$MEMFIT" monitor -i 50ms --no-gpu --plot "$TMP/bad/x.svg" -l "$TMP/bad.jsonl" -- sleep 0.3 2>"$TMP/plotbad.err"
check "--plot into a missing folder: the command still runs (exit 0)" test $? -eq 0
check "--plot into a missing folder: said once on stderr" \
    bash -c "[ \$(grep -c 'could not be drawn' '$TMP/plotbad.err') = 1 ]"
finish
