#!/usr/bin/env bash
# The monitor's own cost: `memfit monitor` sampling every 100 ms for 60 s
# against a psutil-based Python sampler doing the same work, run side by side
# (at the same time, on the same workload). Prints each one's peak RSS and
# CPU share of one core. Goals: memfit under 4 MB RSS and under 1 % CPU.
# Also times `memfit report` (goal under 20 ms).
# Usage: bench/monitor_cost.sh [SECONDS] (default 60). Needs python3-psutil
# for the comparison (scripts/install-deps --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
bin=build/release/memfit
hog=build/release/memhog
[[ -x $bin && -x $hog ]] || { echo "build first: make" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT

"$hog" --steady 64MiB --every 100ms --duration $((secs + 5))s &
work=$!
sleep 0.5
"$bin" monitor -i 100ms -d "${secs}s" -q --pid $work -l "$tmp/memfit.jsonl" &
mon=$!
have_psutil=0
if /usr/bin/python3 -c 'import psutil' 2>/dev/null; then
    /usr/bin/python3 bench/psutil_sampler.py $work 0.1 "$secs" "$tmp/psutil.jsonl" &
    py=$!
    have_psutil=1
fi

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# Read both just before their run ends (after they exit /proc is gone).
sleep "$(awk -v s="$secs" 'BEGIN {print s - 0.3}')"
m_cpu=$(cpu_ticks $mon) m_hwm=$(hwm_kb $mon)
[[ $have_psutil -eq 1 ]] && p_cpu=$(cpu_ticks $py) p_hwm=$(hwm_kb $py)
m_samples=0
wait $mon
m_samples=$(grep -c '"type":"sample"' "$tmp/memfit.jsonl")

printf '%-28s %10s %10s %8s\n' "sampler (100 ms, ${secs}s)" "peak RSS" "CPU %" samples
printf '%-28s %8.2f MB %9.2f%% %8d\n' "memfit monitor" "$(awk -v k="$m_hwm" 'BEGIN {print k/1024}')" \
    "$(awk -v t="$m_cpu" -v c="$clk" -v s="$secs" 'BEGIN {print 100*t/c/s}')" "$m_samples"
if [[ $have_psutil -eq 1 ]]; then
    wait $py || true
    printf '%-28s %8.2f MB %9.2f%% %8d\n' "python3 + psutil" "$(awk -v k="$p_hwm" 'BEGIN {print k/1024}')" \
        "$(awk -v t="$p_cpu" -v c="$clk" -v s="$secs" 'BEGIN {print 100*t/c/s}')" \
        "$(wc -l <"$tmp/psutil.jsonl")"
    printf 'ratio memfit/psutil: RSS %.2f, CPU %.2f\n' "$(awk -v a="$m_hwm" -v b="$p_hwm" 'BEGIN {print a/b}')" \
        "$(awk -v a="$m_cpu" -v b="$p_cpu" 'BEGIN {print (b ? a/b : 0)}')"
else
    echo "python3-psutil not installed: no comparison (scripts/install-deps --bench)"
fi

# memfit report wall time: median of 30 runs.
for _ in $(seq 30); do
    s=$(date +%s%N)
    "$bin" report >/dev/null
    e=$(date +%s%N)
    echo $(((e - s) / 1000))
done | sort -n | awk '{a[NR]=$1} END {printf "memfit report: median %.2f ms over %d runs (min %.2f)\n", a[int((NR+1)/2)]/1000, NR, a[1]/1000}'
