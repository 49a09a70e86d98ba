# A trainer without a cgroup: each 500 ms epoch takes 100 MiB, gives them
# back, and keeps 12 MiB. `memfit monitor -i 20ms` watches it with no cgroup
# of its own; `memfit analyze` must find the period, a leak of the process
# tree within 20 % of 12 MiB per epoch, and `memfit plot` must headline the
# same verdict on the same series (issue 16: the plot said "no leak" of the
# whole machine while the command's RSS grew).
source "$(dirname "$0")/lib.bash"

[[ ${MEMFIT_SANITIZED:-OFF} == ON ]] && skip "RSS figures are distorted under sanitizers"

"$MEMFIT" monitor -i 20ms --no-gpu -q -l "$TMP/epochs.jsonl" -- \
    "$BUILD/memhog" --epoch 64MiB --keep 12MiB --every 500ms --duration 11.5s
check "the trainer exits 0" [ $? -eq 0 ]
"$MEMFIT" analyze "$TMP/epochs.jsonl" | tee "$TMP/epochs.txt"
check "analyze exits 0" [ "${PIPESTATUS[0]}" -eq 0 ]
"$MEMFIT" analyze "$TMP/epochs.jsonl" --json >"$TMP/epochs.json"
check "analyze --json exits 0" [ $? -eq 0 ]
"$MEMFIT" plot "$TMP/epochs.jsonl" -o "$TMP/epochs.svg"
check "plot exits 0" [ $? -eq 0 ]

limit_source=$(jq_py "$TMP/epochs.jsonl" 'd[0].get("limit_source")')
if [[ $limit_source != memory ]]; then
    echo "note: this machine's memory has a cgroup limit ($limit_source): the verdict judges" \
        "the cgroup; checking the RSS trend only"
fi

# The period must be found on its own. On a machine so loaded that the
# helper cannot keep its 500 ms epochs (load average above twice the cores:
# this ran beside other work), that part is noted, not failed, and the rest
# is checked with --period 500ms; the detection itself is also covered on
# synthetic series by unit/test_monitor_analyze.
load=$(cut -d' ' -f1 /proc/loadavg)
if ! "$PY" -c 'import json, sys; p = json.load(open(sys.argv[1]))["runs"][-1]["trend"]["rss"]["period"]; sys.exit(not (p and abs(p["period_s"] - 0.5) < 0.025))' "$TMP/epochs.json"; then
    if "$PY" -c "import os, sys; sys.exit(not float('$load') > 2 * os.cpu_count())"; then
        echo "NOTE: the 500 ms period was not found at load average $load on $(nproc) cores; checking the rest with --period 500ms"
        "$MEMFIT" analyze "$TMP/epochs.jsonl" --period 500ms --json >"$TMP/epochs.json"
        "$MEMFIT" analyze "$TMP/epochs.jsonl" --period 500ms >"$TMP/epochs.txt"
        "$MEMFIT" plot "$TMP/epochs.jsonl" --period 500ms -o "$TMP/epochs.svg"
    else
        fail "the 500 ms period was not found (load average $load)"
    fi
fi
"$PY" - "$TMP/epochs.json" "$limit_source" <<'PY' || fail "periodic leak figures"
import json, sys
run = json.load(open(sys.argv[1]))["runs"][-1]
rss = run["trend"]["rss"]
p = rss["period"]
print("period", p, "verdict", rss["verdict"], "basis", rss["basis"])
assert p is not None and abs(p["period_s"] - 0.5) < 0.025, "period not within 5 % of 500 ms"
assert rss["basis"] == "period_minima" and p["periods"] >= 15, "not fitted per period"
per_epoch = p["growth_per_period_bytes"] / 2**20
print("growth per epoch %.2f MiB (truth 12)" % per_epoch)
assert abs(per_epoch - 12) < 0.2 * 12, "growth per epoch off by more than 20 %"
assert rss["verdict"] == "leak", "no leak verdict on RSS"
if sys.argv[2] == "memory":
    j = run["judged"]
    print("judged", j)
    assert j["scope"] == "process" and j["verdict"] == "leak", "verdict not on the process tree"
PY
check "period, 12 MiB per epoch within 20 %, leak" true

if [[ $limit_source == memory ]]; then
    check "analyze says: leak of the process tree" \
        grep -q "verdict       leak: process tree of pid [0-9]* (RSS), no cgroup limit" "$TMP/epochs.txt"
    headline=$(grep -o '<text x="20.0" y="52.0".*</text>' "$TMP/epochs.svg" | sed 's/<[^>]*>//g')
    echo "plot headline: $headline"
    check "plot headline agrees: leak of the process tree" \
        grep -q '^leak · process tree of pid' <<<"$headline"
fi
finish
