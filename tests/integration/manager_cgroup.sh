#!/bin/bash
# The manager with the real DINOv2 driver under a tight memory cgroup:
# four random ViT-S/14-shaped models (depth 4; F32, F16, Q8_0, Q4_0, made
# here) whose total exceeds the cgroup limit while each fits the budget;
# 1000 requests from 4 threads in random order (56x56 inputs). Checks: no
# OOM kill, every request served or refused with E_BUDGET/E_TIMEOUT, the
# reservations never above the budget, the sampled working set never above
# the limit, and RSS and working set back within 5 MB of the start once
# every model is unloaded; then each model loaded and unloaded alone gives
# its memory back (within 5 MB). Skipped where a cgroup cannot be made.
source "$(dirname "$0")/lib.bash"
HELPER=$BUILD/manager_stress
[[ ${MEMFIT_SANITIZED:-OFF} == OFF ]] || skip "sanitized build: RSS and working-set figures mean nothing under ASan/TSan"
[[ -x $HELPER ]] || skip "helper $HELPER not built"
LIMIT=$((56 * 1024 * 1024))
BUDGET_MB=40
"$HELPER" gen "$TMP" || { fail "generating the models"; finish; }
MODELS=("$TMP/vits_f32.gguf" "$TMP/vits_f16.gguf" "$TMP/vits_q8_0.gguf" "$TMP/vits_q4_0.gguf")
total=$(stat -c %s "${MODELS[@]}" | awk '{s+=$1} END {print s}')
check "the models together exceed the limit" [ "$total" -gt "$LIMIT" ]

CG=$(make_cgroup "memfit-mgr-$$" "$LIMIT") || skip "$(make_cgroup "memfit-mgr-$$" "$LIMIT" 2>&1 >/dev/null)"
on_exit "remove_cgroup '$CG'"
if [[ -f $CG/memory.limit_in_bytes ]]; then VER=1; else VER=2; fi
oom_kills() {
    if [[ $VER == 1 ]]; then awk '/^oom_kill /{print $2}' "$CG/memory.oom_control"
    else awk '/^oom_kill /{print $2}' "$CG/memory.events"; fi
}
before=$(oom_kills)
[[ -n $before ]] || before=0
# The input files' page cache belongs to this shell's cgroup: drop it so
# the child's faults charge the test cgroup.
for m in "${MODELS[@]}"; do dd if="$m" iflag=nocache count=0 status=none 2>/dev/null; done

run_in_cgroup "$CG" "$HELPER" stress "$CG" "$VER" "$BUDGET_MB" 1000 4 "${MODELS[@]}" >"$TMP/stress.txt" 2>"$TMP/stress.err"
rc=$?
cat "$TMP/stress.txt" "$TMP/stress.err"
after=$(oom_kills)
[[ -n $after ]] || after=0
check "stress helper exits 0 (no request failed otherwise)" [ $rc -eq 0 ]
check "no OOM kill ($before -> $after)" [ "$after" -eq "$before" ]
get() { grep -o "\b$1=[0-9.]*" "$TMP/$2" | head -1 | cut -d= -f2; }
served=$(get served stress.txt)
refused=$(get refused stress.txt)
check "1000 requests served or refused ($served + $refused)" [ "$((served + refused))" -eq 1000 ]
check "most requests served" [ "$served" -gt 900 ]
check "evictions happened (the models do not fit together)" [ "$(get evictions stress.txt)" -gt 0 ]
check "reservations never above the budget" [ "$(get peak_reserved stress.txt)" -le "$(get budget stress.txt)" ]
check "working set never above the limit" [ "$(get peak_ws stress.txt)" -le "$LIMIT" ]
MB5=$((5 * 1024 * 1024))
within() { local a=$1 b=$2; [ $((a > b ? a - b : b - a)) -le $MB5 ]; }
check "RSS back to baseline" within "$(get rss_after stress.txt)" "$(get rss_before stress.txt)"
check "working set back to baseline" within "$(get ws_after stress.txt)" "$(get ws_before stress.txt)"

run_in_cgroup "$CG" "$HELPER" cycle "$CG" "$VER" "$BUDGET_MB" "${MODELS[@]}" >"$TMP/cycle.txt" 2>&1
check "load/unload cycles run" [ $? -eq 0 ]
cat "$TMP/cycle.txt"
while read -r line; do
    m=$(grep -o 'model=[^ ]*' <<<"$line" | xargs basename)
    v() { grep -o "\b$1=[0-9]*" <<<"$line" | cut -d= -f2; }
    check "$m: unload gives RSS back" within "$(v rss_after)" "$(v rss_before)"
    check "$m: unload gives the working set back" within "$(v ws_after)" "$(v ws_before)"
    check "$m: loading it did take memory" [ "$(v rss_loaded)" -gt "$(( $(v rss_before) + MB5 ))" ]
done < <(grep '^model=' "$TMP/cycle.txt")
finish
