#!/usr/bin/env bash
# The issue's main test: a Python trainer (stdlib and the memfit package)
# allocates batch x 4 MiB per step (touched, held for the step, freed) and
# grows its batch every step until told to stop. In a 256 MiB memory cgroup
# it is OOM-killed when run alone; under `memfit monitor -i 50ms` it reads
# the pressure channel, halves its batch when batch_factor says so (printing
# each change), finishes with exit 0, and the cgroup counts no new OOM kill.
# Skipped where a memory cgroup cannot be created or /usr/bin/python3 is missing.
source "$(dirname "$0")/lib.bash"
SYSPY=/usr/bin/python3
[[ -x $SYSPY ]] || skip "/usr/bin/python3 is missing (scripts/install-deps installs python3)"
[[ ${MEMFIT_SANITIZED:-OFF} == ON ]] && skip "timing-sensitive; not under sanitizers"
LIMIT=$((256 * 1024 * 1024))
CG=$(make_cgroup "memfit-trainer-$$" $LIMIT) || skip "$(make_cgroup x 1 2>&1 >/dev/null | tail -1)"
on_exit "remove_cgroup '$CG'"
export PYTHONPATH=$MEMFIT_SOURCE/python PYTHONDONTWRITEBYTECODE=1

cat >"$TMP/trainer.py" <<'PY'
import sys, time
import memfit

MIB = 1 << 20
STEP_MIB = 4
steps = int(sys.argv[1])


def announce(old, new, p):
    print("batch %d -> %d (%s, %.0f%%, factor %.3f)" % (old, new, p.level, p.percent, p.batch_factor),
          flush=True)


batches = memfit.BatchController(2, minimum=1, on_change=announce)
told = False
for step in range(steps):
    size = batches.update()
    told = told or bool(batches.changes)
    activations = bytearray(size * STEP_MIB * MIB)
    for i in range(0, len(activations), 4096):  # touch every page
        activations[i] = 1
    time.sleep(0.03)  # the step's work
    del activations
    if not told:
        batches.size += 1  # grow until memfit says stop
print("finished %d steps, batch %d, under monitor: %s" % (steps, batches.size, memfit.pressure() is not None),
      flush=True)
PY

oom_kills() {
    if [[ -f $CG/memory.oom_control ]]; then
        awk '/^oom_kill / {print $2}' "$CG/memory.oom_control"
    else
        awk '/^oom_kill / {print $2}' "$CG/memory.events"
    fi
}

# Alone: the batch grows past what 256 MiB holds.
run_in_cgroup "$CG" "$SYSPY" "$TMP/trainer.py" 150 >"$TMP/alone.out" 2>&1
rc=$?
tail -2 "$TMP/alone.out"
echo "alone: exit $rc, oom kills $(oom_kills)"
check "without memfit the trainer is OOM-killed" [ $rc -eq 137 ] && [ "$(oom_kills)" -ge 1 ]
KILLS=$(oom_kills)

run_in_cgroup "$CG" "$MEMFIT" monitor -i 50ms --no-gpu -l "$TMP/m.jsonl" -- \
    "$SYSPY" "$TMP/trainer.py" 150 >"$TMP/out" 2>"$TMP/err"
rc=$?
cat "$TMP/out"
tail -3 "$TMP/err"
check "under memfit monitor it finishes with exit 0" [ $rc -eq 0 ]
check "it ran under the monitor's channel" grep -q "under monitor: True" "$TMP/out"
check "it halved its batch through the channel" grep -qE "^batch [0-9]+ -> [0-9]+ \((warning|critical|danger)" "$TMP/out"
check "no new OOM kill in the cgroup" [ "$(oom_kills)" -eq "$KILLS" ]
check "the monitor log's exit record: exit 0, not OOM-killed" \
    [ "$(jq_py "$TMP/m.jsonl" "[(r.get('exit_code'), r['oom_killed']) for r in d if r['type']=='exit'][0]")" = "(0, False)" ]
finish
