#!/usr/bin/env bash
# `memfit analyze` and `memfit plot` end to end on logs written here (awk):
# exit codes (0, 1 for no samples, 2 for usage and unreadable logs), the
# JSON report, and a chart that rsvg-convert renders to a PNG. Skips (77)
# when rsvg-convert (Debian librsvg2-bin) is missing.
set -uo pipefail
: "${MEMFIT_BIN:?MEMFIT_BIN is not set}"
if ! command -v rsvg-convert >/dev/null 2>&1; then
    echo "SKIPPED: rsvg-convert not installed (Debian package librsvg2-bin)"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
check() { # description, expected exit code, command...
    local what=$1 want=$2
    shift 2
    "$@" >"$dir/out" 2>"$dir/err"
    local got=$?
    if [[ $got -ne $want ]]; then
        echo "FAIL: $what: exit $got, expected $want"
        cat "$dir/out" "$dir/err"
        fails=$((fails + 1))
    else
        echo "ok: $what"
    fi
}

# A leaking command: 1 MB per 100 ms for 40 s, an OOM kill at the end.
awk 'BEGIN {
    limit = 512 * 1048576
    printf "{\"type\":\"start\",\"v\":1,\"t\":0,\"time\":\"2026-11-23T19:40:00.123Z\",\"hostname\":\"ci\",\"pid\":42,\"command\":[\"python3\",\"leak.py\"],\"interval_s\":0.1,\"limit_bytes\":%d,\"limit_source\":\"cgroup\",\"thresholds\":{\"warning_percent\":80,\"critical_percent\":90,\"danger_available_bytes\":20000000}}\n", limit
    for (i = 1; i <= 400; i++) {
        if (i > 200 && i <= 215) continue
        ws = 100000000 + i * 1000000 + (i % 7) * 20000
        pct = 100 * ws / limit
        level = pct >= 90 ? "critical" : pct >= 80 ? "warning" : "ok"
        printf "{\"type\":\"sample\",\"t\":%.1f,\"working_set_bytes\":%d,\"limit_bytes\":%d,\"percent\":%.1f,\"rss_bytes\":%d,\"level\":\"%s\",\"process\":{\"pid\":42}}\n", i / 10, ws, limit, pct, ws * 0.9, level
    }
    print "{\"type\":\"oom\",\"t\":40.05,\"oom_kill\":1,\"source\":\"cgroup\"}"
    print "{\"type\":\"exit\",\"t\":40.1,\"pid\":42,\"exit_code\":null,\"signal\":9,\"oom_killed\":true}"
    print "this line is not JSON"
}' >"$dir/leak.jsonl"

check "analyze" 0 "$MEMFIT_BIN" analyze "$dir/leak.jsonl"
grep -q "leak; at this rate the limit is reached in ~" "$dir/out" || {
    echo "FAIL: analyze: no leak verdict with a time to the limit"
    cat "$dir/out"
    fails=$((fails + 1))
}
grep -q "1 malformed line (line 389)" "$dir/out" || {
    echo "FAIL: analyze: the malformed line is not reported"
    fails=$((fails + 1))
}
check "analyze --json" 0 "$MEMFIT_BIN" analyze "$dir/leak.jsonl" --json --warmup 20%
grep -q '"verdict": "leak"' "$dir/out" || {
    echo "FAIL: analyze --json: no leak verdict"
    fails=$((fails + 1))
}
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["runs"][0]["oom_events"] == 1' \
        "$dir/out" || {
        echo "FAIL: analyze --json: not the expected JSON"
        fails=$((fails + 1))
    }
fi
check "analyze from stdin" 0 bash -c '"$1" analyze - <"$2"' _ "$MEMFIT_BIN" "$dir/leak.jsonl"
check "plot" 0 "$MEMFIT_BIN" plot "$dir/leak.jsonl" -o "$dir/chart.svg" --title "CI <leak> & co"
check "render the chart" 0 rsvg-convert "$dir/chart.svg" -o "$dir/chart.png"
if [[ "$(head -c 8 "$dir/chart.png" | od -An -tx1 | tr -d ' \n')" != "89504e470d0a1a0a" ]]; then
    echo "FAIL: rsvg-convert did not write a PNG"
    fails=$((fails + 1))
fi
check "plot --width --height" 0 "$MEMFIT_BIN" plot "$dir/leak.jsonl" -o "$dir/small.svg" \
    --width 400 --height 300
check "render the small chart" 0 rsvg-convert "$dir/small.svg" -o "$dir/small.png"
ls "$dir"/*.tmp.* >/dev/null 2>&1 && {
    echo "FAIL: a temporary file was left behind"
    fails=$((fails + 1))
}

# Errors and their exit codes.
check "missing file" 2 "$MEMFIT_BIN" analyze "$dir/nope.jsonl"
grep -q "nope.jsonl" "$dir/err" || {
    echo "FAIL: the error does not name the file"
    fails=$((fails + 1))
}
check "a folder" 2 "$MEMFIT_BIN" analyze "$dir"
: >"$dir/empty.jsonl"
check "empty log" 1 "$MEMFIT_BIN" analyze "$dir/empty.jsonl"
grep -q "no samples" "$dir/err" || {
    echo "FAIL: empty log: no 'no samples' message"
    fails=$((fails + 1))
}
echo '{"type":"start","t":0}' >"$dir/start.jsonl"
check "start only" 1 "$MEMFIT_BIN" analyze "$dir/start.jsonl"
check "plot of a log without samples" 1 "$MEMFIT_BIN" plot "$dir/start.jsonl" -o "$dir/none.svg"
[[ -e "$dir/none.svg" ]] && {
    echo "FAIL: a chart was written for a log without samples"
    fails=$((fails + 1))
}
check "plot without -o" 2 "$MEMFIT_BIN" plot "$dir/leak.jsonl"
check "plot into a missing folder" 1 "$MEMFIT_BIN" plot "$dir/leak.jsonl" -o "$dir/no/x.svg"
check "bad --warmup" 2 "$MEMFIT_BIN" analyze "$dir/leak.jsonl" --warmup 95%
check "bad --width" 2 "$MEMFIT_BIN" plot "$dir/leak.jsonl" -o "$dir/x.svg" --width 5
check "run beyond the log" 2 "$MEMFIT_BIN" analyze "$dir/leak.jsonl" --run 2
check "unknown option" 2 "$MEMFIT_BIN" analyze "$dir/leak.jsonl" --frobnicate
check "no file" 2 "$MEMFIT_BIN" analyze
check "help" 0 "$MEMFIT_BIN" help analyze
grep -q "R^2 >= 0.8" "$dir/out" || {
    echo "FAIL: help analyze does not state the leak rules"
    fails=$((fails + 1))
}
check "plot --help" 0 "$MEMFIT_BIN" plot --help

if [[ $fails -ne 0 ]]; then
    echo "plot_render: $fails failure(s)"
    exit 1
fi
echo "plot_render: all passed"
