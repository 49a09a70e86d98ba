# Without a cgroup limit, `memfit monitor -- CMD` judges the command's own
# process tree, not the machine: a growing helper's log must say scope
# "process", in_use_bytes must be the tree's RSS and limit_bytes that RSS
# plus the machine's available memory; stderr says what is judged. Skipped
# where memfit itself runs under a cgroup limit.
source "$(dirname "$0")/lib.bash"

log=$TMP/scope.jsonl
"$MEMFIT" monitor -i 50ms --no-gpu --status-every 0 -l "$log" -- \
    "$BUILD/memhog" --step 4MiB --every 50ms --duration 1500ms 2>"$TMP/err"
rc=$?
cat "$TMP/err"
[[ $(jq_py "$log" "d[0]['limit_source']") == memory ]] ||
    skip "memfit runs under a cgroup limit here: the levels judge the cgroup"

check "helper exits 0" [ $rc -eq 0 ]
check "start record: scope process" [ "$(jq_py "$log" "d[0]['scope']")" = process ]
check "every sample: scope process" \
    [ "$(jq_py "$log" "all(r['scope'] == 'process' for r in d if r['type'] == 'sample')")" = True ]
check "in_use_bytes is the tree's RSS" \
    [ "$(jq_py "$log" "all(r['in_use_bytes'] == r['rss_bytes'] == r['process']['rss_bytes'] for r in d if r['type'] == 'sample')")" = True ]
check "limit_bytes = RSS + available memory" \
    [ "$(jq_py "$log" "all(r['limit_bytes'] == r['rss_bytes'] + r['system']['available_bytes'] for r in d if r['type'] == 'sample')")" = True ]
check "available_bytes = the machine's available memory" \
    [ "$(jq_py "$log" "all(r['available_bytes'] == r['system']['available_bytes'] for r in d if r['type'] == 'sample')")" = True ]
check "percent = in use / limit" \
    [ "$(jq_py "$log" "all(abs(r['percent'] - 100 * r['in_use_bytes'] / r['limit_bytes']) < 1e-3 for r in d if r['type'] == 'sample')")" = True ]
check "in use follows the helper's growth (+40 MiB or more; 120 MiB unloaded)" \
    [ "$(jq_py "$log" "(lambda u: u[-1] - u[0] >= 40 * 2**20)([r['in_use_bytes'] for r in d if r['type'] == 'sample'])")" = True ]
check "no sample after the command exited (its memory would read 0)" \
    [ "$(jq_py "$log" "[r['in_use_bytes'] for r in d if r['type'] == 'sample'][-1] > 0")" = True ]
check "stderr says the process tree is judged" \
    grep -q "no cgroup limit; judging process tree of [0-9]* (RSS) against available memory" "$TMP/err"

# Nothing watched: the machine.
"$MEMFIT" monitor -i 50ms -d 200ms --no-gpu -l "$TMP/machine.jsonl" 2>"$TMP/err2"
check "no process watched: scope machine" \
    [ "$(jq_py "$TMP/machine.jsonl" "d[0]['scope'], d[1]['scope']")" = "('machine', 'machine')" ]
check "stderr says the machine is judged" grep -q "judging the machine" "$TMP/err2"
"$MEMFIT" monitor -i 50ms -d 200ms --no-gpu -q -l /dev/null 2>"$TMP/err3"
check "-q: nothing on stderr" [ ! -s "$TMP/err3" ]
finish
