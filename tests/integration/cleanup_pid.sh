#!/usr/bin/env bash
# `memfit cleanup --pid`: a Python process using the memfit package (python/)
# frees a large object graph, whose memory glibc keeps in its heap until the
# process answers the request with malloc_trim: memfit must see its RSS fall
# and print the process's own answer; --json carries both. A process that
# has a channel directory but does not answer, and one without any, make it
# exit 1 with a message saying how to enable it. Uses /usr/bin/python3.
source "$(dirname "$0")/lib.bash"
SYSPY=/usr/bin/python3
[[ -x $SYSPY ]] || skip "/usr/bin/python3 is missing (scripts/install-deps installs python3)"
MB=$((1024 * 1024))
export PYTHONPATH=$MEMFIT_SOURCE/python PYTHONDONTWRITEBYTECODE=1 XDG_RUNTIME_DIR=$TMP/run
mkdir -m 0700 "$TMP/run"

cat >"$TMP/holder.py" <<'PY'
import os, sys, time
import memfit
answering = sys.argv[1] == "answer"
if answering:
    memfit.answer_cleanup_requests(interval=0.05)
else:  # a channel directory, but nobody reads it
    os.makedirs(memfit.channel_dir(), mode=0o700)
junk = [bytearray(1000) for _ in range(300000)]  # ~300 MB of small heap blocks
del junk
print("ready", flush=True)
for _ in range(600):  # a normal exit (atexit runs) once told to stop
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.1)
PY
"$SYSPY" "$TMP/holder.py" answer "$TMP/stop" >"$TMP/holder.out" 2>&1 &
HOLDER=$!
on_exit "kill $HOLDER 2>/dev/null"
for _ in $(seq 100); do grep -q ready "$TMP/holder.out" && break; sleep 0.1; done
check "the Python process is ready" grep -q ready "$TMP/holder.out"

"$MEMFIT" cleanup --pid "$HOLDER" >"$TMP/out" 2>"$TMP/err"
check "cleanup --pid succeeds" [ $? -eq 0 ]
cat "$TMP/out" "$TMP/err"
read -r BEFORE AFTER < <(sed -n 's/^process [0-9]*: RSS \([0-9.]*\) MiB -> \([0-9.]*\) MiB.*/\1 \2/p' "$TMP/out")
check "memfit measured the RSS fall by over 200 MiB" \
    "$SYSPY" -c "import sys; sys.exit(not float('${BEFORE:-0}') - float('${AFTER:-0}') > 200)"
check "the process's own answer is printed" grep -q "^its answer: RSS .*gc,malloc_trim" "$TMP/out"
check "the request and the channel files are tidy" \
    [ ! -e "$TMP/run/memfit-$(id -u)/pid-$HOLDER/cleanup.request" ]

"$MEMFIT" cleanup --pid "$HOLDER" --json >"$TMP/json"
check "--json: both measurements and the answer" "$SYSPY" -c '
import json, sys
d = json.load(open(sys.argv[1]))["process"]
a = d["answer"]
assert d["pid"] == int(sys.argv[2]) and d["rss_after_bytes"] > 0, d
assert a["rss_before_bytes"] > 0 and "malloc_trim" in a["actions"], a
assert d["channel_dir"].endswith("/pid-" + sys.argv[2]), d' "$TMP/json" "$HOLDER"
touch "$TMP/stop"
wait "$HOLDER" 2>/dev/null
check "the fallback directory is removed at exit" [ ! -e "$TMP/run/memfit-$(id -u)/pid-$HOLDER" ]

"$SYSPY" "$TMP/holder.py" silent "$TMP/stop-silent" >"$TMP/silent.out" 2>&1 &
SILENT=$!
on_exit "kill $SILENT 2>/dev/null"
for _ in $(seq 100); do grep -q ready "$TMP/silent.out" && break; sleep 0.1; done
"$MEMFIT" cleanup --pid "$SILENT" --timeout 500ms >"$TMP/out" 2>"$TMP/err"
rc=$?
cat "$TMP/err"
check "no answer: exit 1" [ $rc -eq 1 ]
check "no answer: says so and how to enable it" \
    grep -q "did not answer.*memfit.answer_cleanup_requests()" "$TMP/err"
check "no answer: the request is withdrawn" \
    [ ! -e "$TMP/run/memfit-$(id -u)/pid-$SILENT/cleanup.request" ]

sleep 60 &
PLAIN=$!
on_exit "kill $PLAIN 2>/dev/null"
"$MEMFIT" cleanup --pid "$PLAIN" >"$TMP/out" 2>"$TMP/err"
rc=$?
cat "$TMP/err"
check "no channel: exit 1" [ $rc -eq 1 ]
check "no channel: says so and how to enable it" \
    grep -q "has no channel directory.*memfit.answer_cleanup_requests()" "$TMP/err"
"$MEMFIT" cleanup --pid 0 >/dev/null 2>&1
check "--pid 0 is a usage error" [ $? -eq 2 ]
"$MEMFIT" cleanup --json >/dev/null 2>&1
check "--json alone is a usage error" [ $? -eq 2 ]
finish
