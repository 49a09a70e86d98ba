#!/usr/bin/env bash
# The dashboard (GET /) in headless Chromium, with a DINOv2 model loaded,
# unloaded and loaded again (so the event list has loads and an unload): the
# page must log no uncaught exception and no console message, and must have
# received data (the script sets the title to "memfit · live" on the first
# sample of the event stream, read back with --dump-dom). A screenshot is
# left in $MEMFIT_BUILD/serve_dashboard.png for a person to look at. Then
# `serve --gpu` over a fake NVML (tests/fixtures/gpu/fake_nvml.c): the GPU
# panel lists each GPU's name, memory used / total and level.
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
check "no GPU read: the GPU panel stays hidden" grep -q 'id="gpu-panel" hidden' "$TMP/dom.html"
stop_server

# ---- GPUs (serve --gpu), from a fake libnvidia-ml.
LIB=$(build_fake_nvml) || { echo "SKIPPED part: $(build_fake_nvml 2>&1 >/dev/null)"; finish; }
GIB=1073741824
printf 'gpu %s %s Fake A100\ngpu %s %s Fake H100\n' $((10 * GIB)) $((92 * GIB / 10)) $((20 * GIB)) $GIB \
    >"$TMP/nvml.state"
MEMFIT_NVML_LIBRARY=$LIB FAKE_NVML_STATE=$TMP/nvml.state start_server --gpu "$TMP/vits_tiny.pth"
chrome --dump-dom "$TMP/gdom.log" >"$TMP/gdom.html"
check "gpu: the page received a sample" grep -q "<title>memfit · live</title>" "$TMP/gdom.html"
check "gpu: the panel is shown" bash -c "grep -q 'id=\"gpu-panel\"' '$TMP/gdom.html' && ! grep -q 'id=\"gpu-panel\" hidden' '$TMP/gdom.html'"
# Rows counted inside the GPU table's body only (the page's script holds the
# row template too), across lines; the dump is kept for a failure.
ROWS=$(perl -0777 -ne 'print /<tbody id="gpus">(.*?)<\/tbody>/s ? scalar(() = $1 =~ /<tr class="gpu">/g) : 0' "$TMP/gdom.html")
check "gpu: one row per GPU (found $ROWS)" test "$ROWS" = 2
[[ $ROWS == 2 ]] || cp "$TMP/gdom.html" "$BUILD/serve_dashboard_gpu.html"
check "gpu: names" bash -c "grep -q '<td>Fake A100</td>' '$TMP/gdom.html' && grep -q '<td>Fake H100</td>' '$TMP/gdom.html'"
check "gpu: GPU 0 used / total" grep -q 'class="gpu-mem">9.20 GiB / 10.0 GiB<' "$TMP/gdom.html"
check "gpu: GPU 1 used / total" grep -q 'class="gpu-mem">1.00 GiB / 20.0 GiB<' "$TMP/gdom.html"
check "gpu: GPU 0 critical" grep -q 'gpu-level">critical 92.0%<' "$TMP/gdom.html"
check "gpu: GPU 1 ok" grep -q 'gpu-level">ok 5.0%<' "$TMP/gdom.html"
check "gpu: no uncaught exception or console message" bash -c "! grep -E 'CONSOLE|Uncaught' '$TMP/gdom.log'"
stop_server
finish
