# memfit monitor wraps a child that allocates in steps inside a memory cgroup
# limited to 64 MB: the log must show the limit, rising usage, the warning
# and critical transitions and the OOM kill, and memfit must exit 137 and say
# the child was OOM-killed. Skipped where a memory cgroup cannot be created.
source "$(dirname "$0")/lib.bash"

limit=$((64 * 1024 * 1024))
cg=$(make_cgroup "memfit-test-oom-$$" $limit) || skip "$(make_cgroup x 1 2>&1 >/dev/null | tail -1)"
on_exit "remove_cgroup $cg"

log=$TMP/oom.jsonl
run_in_cgroup "$cg" "$MEMFIT" monitor -i 50ms --no-gpu -l "$log" -- \
    "$BUILD/memhog" --step 2MiB --every 40ms >"$TMP/out" 2>"$TMP/err"
rc=$?
cat "$TMP/err"

check "exit status is 137 (SIGKILL passed through)" [ $rc -eq 137 ]
check "stderr says OOM-killed" grep -q "OOM-killed" "$TMP/err"
check "start record has the 64 MiB cgroup limit" \
    [ "$(jq_py "$log" "[r['limit_bytes'] for r in d if r['type']=='start'][0], [r['limit_source'] for r in d if r['type']=='start'][0]")" = "($limit, 'cgroup')" ]
check "working set rises" \
    [ "$(jq_py "$log" "(lambda w: max(w) > w[0] + 20*2**20)([r['working_set_bytes'] for r in d if r['type']=='sample'])")" = True ]
check "ok -> warning transition logged" \
    [ "$(jq_py "$log" "any(r['type']=='level' and r['to']=='warning' for r in d)")" = True ]
check "critical transition logged" \
    [ "$(jq_py "$log" "any(r['type']=='level' and r['to'] in ('critical','danger') and r['from'] in ('warning','critical') for r in d)")" = True ]
check "oom record logged" [ "$(jq_py "$log" "sum(r['type']=='oom' for r in d)")" -ge 1 ]
check "exit record: signal 9, oom_killed" \
    [ "$(jq_py "$log" "[(r['signal'], r['oom_killed']) for r in d if r['type']=='exit'][0]")" = "(9, True)" ]
check "peak RSS near the limit" \
    [ "$(jq_py "$log" "[r['peak_rss_bytes'] for r in d if r['type']=='exit'][0] > 40*2**20")" = True ]
finish
