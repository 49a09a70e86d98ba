#!/usr/bin/env bash
# The dashboard (GET /) in headless Chromium, with a DINOv2 model loaded,
# unloaded and loaded again (so the event list has loads and an unload): the
# page must log no uncaught exception and no console message, and must have
# received data (the script sets the title to "memfit · live" on the first
# sample of the event stream, read back with --dump-dom). A screenshot is
# left in $MEMFIT_BUILD/serve_dashboard.png for a person to look at.
# Skipped, with the reason, when chromium is absent (scripts/install-deps --browser).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $CHROME ]] || skip "chromium is not installed (scripts/install-deps --browser)"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
start_server "$TMP/vits_tiny.pth"
make_request vits_tiny float "$FX/images/rgb8.png"
check "embedding (model loaded)" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
check "unload" test "$(post -X POST "$URL/api/models/vits_tiny/unload")" = 200
check "embedding (loaded again)" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200

chrome() { # output option, log file
    timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$(mktemp -d "$TMP/chrome.XXXXXX")" \
        --enable-logging=stderr --v=0 --virtual-time-budget=6000 --window-size=1280,900 \
        "$1" "$URL/" 2>"$2"
}
chrome --dump-dom "$TMP/dom.log" >"$TMP/dom.html"
check "chromium dumped the page" grep -q "<h1>memfit</h1>" "$TMP/dom.html"
check "the page received a sample (title marker)" grep -q "<title>memfit · live</title>" "$TMP/dom.html"
check "the model table is filled" grep -q "<td>vits_tiny</td>" "$TMP/dom.html"
check "the events list shows the loads" grep -q 'class="ev-load"' "$TMP/dom.html"
check "the events list shows the unload" grep -q 'class="ev-unload"' "$TMP/dom.html"
check "no uncaught exception" bash -c "! grep -i 'Uncaught' '$TMP/dom.log'"
check "no console message" bash -c "! grep 'CONSOLE' '$TMP/dom.log'"
chrome --screenshot="$BUILD/serve_dashboard.png" "$TMP/shot.log" >/dev/null
check "screenshot taken" test -s "$BUILD/serve_dashboard.png"
check "no console message (screenshot run)" bash -c "! grep -E 'CONSOLE|Uncaught' '$TMP/shot.log'"
stop_server
finish
