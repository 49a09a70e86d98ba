#!/usr/bin/env bash
# `memfit plot` writing PNG itself and redrawing a live chart: a PNG by
# extension and by --format, of the size asked; plot --every rewriting the
# chart while lines are appended to the log and exiting after the exit
# record; SIGTERM and --idle ending it; and the errors (unwritable output,
# unknown format, bad --every) with their exit codes and no file left.
# Needs nothing beyond the memfit binary.
source "$(dirname "$0")/lib.bash"

sample() { # t, bytes
    printf '{"type":"sample","t":%s,"working_set_bytes":%s,"limit_bytes":536870912,"percent":1,"rss_bytes":%s,"level":"ok"}\n' \
        "$1" "$2" "$2"
}
start() {
    echo '{"type":"start","v":1,"t":0,"time":"2026-11-23T19:40:00.123Z","hostname":"ci","command":["python3","app.py"],"interval_s":0.1,"limit_bytes":536870912,"thresholds":{"warning_percent":80,"critical_percent":90}}'
}
png_size() { # prints "W H" from the IHDR chunk
    od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}'
}
is_png() { [[ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]]; }
expect_rc() { # description, expected exit code, command...
    local what=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    CHECKS=$((CHECKS + 1))
    if [[ $got -eq $want ]]; then
        echo "ok: $what"
    else
        fail "$what: exit $got, expected $want"
        cat "$TMP/out" "$TMP/err"
    fi
}

log=$TMP/run.jsonl
{
    start
    for i in $(seq 1 100); do sample "$((i / 10)).$((i % 10))" $((100000000 + i * 1000000)); done
} >"$log"

# One chart, as PNG.
expect_rc "plot -o chart.png" 0 "$MEMFIT" plot "$log" -o "$TMP/chart.png"
check "chart.png is a PNG" is_png "$TMP/chart.png"
check "chart.png is 1000 x 500" test "$(png_size "$TMP/chart.png")" = "1000 500"
expect_rc "plot --format png --width 640 --height 360" 0 "$MEMFIT" plot "$log" -o "$TMP/c.img" \
    --format png --width 640 --height 360
check "--format png writes a PNG" is_png "$TMP/c.img"
check "of 640 x 360" test "$(png_size "$TMP/c.img")" = "640 360"
expect_rc "plot -o chart.svg" 0 "$MEMFIT" plot "$log" -o "$TMP/chart.svg"
check "chart.svg is SVG" grep -q "<svg" "$TMP/chart.svg"

# Errors.
expect_rc "unknown --format" 2 "$MEMFIT" plot "$log" -o "$TMP/x.png" --format jpeg
check "names the format" grep -q "jpeg" "$TMP/err"
expect_rc "output in a missing folder" 1 "$MEMFIT" plot "$log" -o "$TMP/no/x.png"
touch "$TMP/afile"
expect_rc "output under a file" 1 "$MEMFIT" plot "$log" -o "$TMP/afile/x.png"
if [[ $(id -u) -ne 0 ]]; then
    mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
    expect_rc "output in a read-only folder" 1 "$MEMFIT" plot "$log" -o "$TMP/ro/x.png"
fi
expect_rc "output in /proc" 1 "$MEMFIT" plot "$log" -o /proc/memfit-chart.png
for bad in 0 50ms 2d abc -1s; do
    expect_rc "bad --every $bad" 2 "$MEMFIT" plot "$log" -o "$TMP/x.png" --every "$bad"
done
expect_rc "--every with standard input" 2 "$MEMFIT" plot - -o "$TMP/x.png" --every 1s
expect_rc "--idle without --every" 2 "$MEMFIT" plot "$log" -o "$TMP/x.png" --idle 5s
expect_rc "--every on a missing log" 2 "$MEMFIT" plot "$TMP/none.jsonl" -o "$TMP/x.png" --every 1s
check "no chart left by the failures" bash -c "! ls '$TMP'/x.png '$TMP'/*.tmp.* 2>/dev/null"

# A live chart: redrawn while the log grows, done after the exit record.
live=$TMP/live.jsonl
start >"$live"
"$MEMFIT" plot "$live" -o "$TMP/live.png" --every 200ms 2>"$TMP/live.err" &
pid=$!
wait_for() { # seconds, command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
check "waits for samples" wait_for 5 grep -q "waiting for samples" "$TMP/live.err"
check "no chart before samples" test ! -e "$TMP/live.png"
for i in $(seq 1 20); do sample "$i" $((100000000 + i * 1000000)); done >>"$live"
check "the chart appears" wait_for 5 test -s "$TMP/live.png"
sleep 0.3 # let a redraw that is under way finish
sum1=$(cksum <"$TMP/live.png")
for i in $(seq 21 60); do sample "$i" $((100000000 + i * 4000000)); done >>"$live"
changed() { [[ "$(cksum <"$TMP/live.png")" != "$sum1" ]]; }
check "the chart is rewritten when the log grows" wait_for 5 changed
check "status lines name the samples" wait_for 5 grep -q "60 samples" "$TMP/live.err"
check "plot --every still runs before the exit record" kill -0 "$pid"
echo '{"type":"exit","t":61,"pid":42,"exit_code":0,"signal":null,"oom_killed":false}' >>"$live"
exited() { ! kill -0 "$pid" 2>/dev/null; }
check "plot --every ends after the exit record" wait_for 5 exited
wait "$pid"
check "with exit status 0" test $? -eq 0
check "saying the run ended" grep -q "the run has ended" "$TMP/live.err"
check "plain status lines off a terminal" bash -c "! grep -q $'\r' '$TMP/live.err'"
check "the last chart is a PNG" is_png "$TMP/live.png"
check "no temporary file left" bash -c "! ls '$TMP'/*.tmp.* 2>/dev/null"

# SIGTERM ends it; so does a log that stays unchanged for --idle.
start >"$TMP/open.jsonl"
sample 1 100000000 >>"$TMP/open.jsonl"
"$MEMFIT" plot "$TMP/open.jsonl" -o "$TMP/open.svg" --every 200ms 2>"$TMP/term.err" &
pid=$!
check "the open run is drawn" wait_for 5 test -s "$TMP/open.svg"
kill -TERM "$pid"
check "SIGTERM stops plot --every" wait_for 5 exited
wait "$pid"
check "with exit status 0" test $? -eq 0
check "and says so" grep -q "stopped by SIGTERM" "$TMP/term.err"
expect_rc "--idle 1s on a quiet log" 0 timeout 10 "$MEMFIT" plot "$TMP/open.jsonl" \
    -o "$TMP/open.svg" --every 200ms --idle 1s
check "says the log went quiet" grep -q "unchanged for 1 s" "$TMP/err"

finish
