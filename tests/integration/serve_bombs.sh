#!/usr/bin/env bash
# Image bombs answered by `memfit serve`: a corpus made at test time by
# tests/helpers/make_image_bombs (PNG: a 65535x65535 declared size, 1 GiB of
# zeros inflating behind a 1x1 image, a bad CRC, a cut IDAT; JPEG: a
# 65500x65500 declared size, hundreds and thousands of progressive scans on
# small and large images, an unknown marker, a segment longer than the file,
# a cut file) POSTed to /v1/embeddings (DINOv2, tests/fixtures/dinov2/
# vits_tiny.pth) and /api/segment (SAM, tests/fixtures/sam/sam_tiny.pth).
# Each must be answered 400 invalid_image naming the problem within 1 s
# (5 s under sanitizers; curl's time_total), the server must still answer a
# good image after them, and its RSS after the corpus must be within 8 MB of
# what it was before (not checked under sanitizers). Last, a server with a
# 5 ms --max-decode-time stops a large progressive JPEG on the clock.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
[[ -x $BUILD/make_image_bombs ]] || skip "make_image_bombs is not built"

FX=$MEMFIT_FIXTURES
SANITIZED=${MEMFIT_SANITIZED:-OFF}
LIMIT_S=1
[[ $SANITIZED == OFF ]] || LIMIT_S=5
mkdir -p "$TMP/bombs"
"$BUILD/make_image_bombs" "$TMP/bombs" || { fail "make_image_bombs"; finish; }
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
cp "$FX/sam/sam_tiny.pth" "$TMP/sam_tiny.pth"

# file: a piece of the message the decoder must give
declare -A WHY=(
    [png_huge_size.png]="65535x65535"
    [png_inflate_1gib.png]="compressed data continues past the image"
    [png_bad_crc.png]="CRC error"
    [png_truncated.png]="truncated file"
    [jpeg_huge_size.jpg]="65500x65500"
    [jpeg_many_scans.jpg]="more than 256 progressive scans"
    [jpeg_300_scans.jpg]="more than 256 progressive scans"
    [jpeg_many_scans_color.jpg]="more than 256 progressive scans"
    [jpeg_many_scans_big.jpg]="more than 256 progressive scans"
    [jpeg_bad_marker.jpg]="JPEG: "
    [jpeg_bad_length.jpg]="JPEG: "
    [jpeg_truncated.jpg]="JPEG: "
)

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

# seg_request OUT IMAGE: an /api/segment body with one point prompt.
seg_request() {
    "$PY" - "$1" "$2" <<'PY'
import base64, json, sys
out, path = sys.argv[1], sys.argv[2]
kind = "png" if path.endswith(".png") else "jpeg"
url = "data:image/%s;base64,%s" % (kind, base64.b64encode(open(path, "rb").read()).decode())
json.dump({"model": "sam_tiny", "image": url, "points": [[4, 4]], "labels": [1]}, open(out, "w"))
PY
}

# bomb ROUTE FILE: POSTs it, checks the status, code, message and time.
bomb() {
    local route=$1 f=$2 status t
    if [[ $route == embeddings ]]; then
        make_request vits_tiny float "$TMP/bombs/$f"
    else
        seg_request "$TMP/req.json" "$TMP/bombs/$f"
    fi
    read -r status t < <(curl -s -o "$TMP/body" -w '%{http_code} %{time_total}\n' \
        -H 'Content-Type: application/json' -d @"$TMP/req.json" "$URL/$([[ $route == embeddings ]] && echo v1/embeddings || echo api/segment)")
    printf '  %-10s %-28s %s %6.3f s  %s\n' "$route" "$f" "$status" "$t" \
        "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['error']['message'][:110])" "$TMP/body" 2>/dev/null)"
    check "$route $f: 400" test "$status" = 400
    check "$route $f: invalid_image" is_error invalid_image
    check "$route $f: the message says why (${WHY[$f]})" grep -qF "${WHY[$f]}" "$TMP/body"
    check "$route $f: answered within $LIMIT_S s ($t s)" \
        "$PY" -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$t" "$LIMIT_S"
}

start_server "$TMP/vits_tiny.pth" "$TMP/sam_tiny.pth"
# Warm up both models and the allocator with good images first.
for round in 1 2; do
    make_request vits_tiny float "$TMP/bombs/ok.png"
    check "good PNG before the corpus ($round): 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
    make_request vits_tiny float "$TMP/bombs/ok.jpg"
    check "good JPEG before the corpus ($round): 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
    seg_request "$TMP/req.json" "$TMP/bombs/ok.png"
    check "segment a good PNG ($round): 200" test "$(post -d @"$TMP/req.json" "$URL/api/segment")" = 200
done
rss_before=$(rss_kb)

for round in 1 2; do
    for f in "${!WHY[@]}"; do
        bomb embeddings "$f"
        [[ $round == 1 ]] && bomb segment "$f"
    done
done

make_request vits_tiny float "$TMP/bombs/ok.png"
check "good PNG after the corpus: 200" test "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200
seg_request "$TMP/req.json" "$TMP/bombs/ok.jpg"
check "segment a good JPEG after the corpus: 200" test "$(post -d @"$TMP/req.json" "$URL/api/segment")" = 200
rss_after=$(rss_kb)
echo "RSS before the corpus ${rss_before} kB, after ${rss_after} kB"
if [[ $SANITIZED == OFF ]]; then
    check "RSS after the corpus within 8 MB of before" test $((rss_after - rss_before)) -le 8192
fi
check "server still running" kill -0 "$PID"
stop_server

# The time budget: with --max-decode-time 5ms the 1024x1024 progressive
# JPEG stops on the clock, before its 256th scan.
start_server --max-decode-time 5ms "$TMP/vits_tiny.pth"
WHY[jpeg_many_scans_big.jpg]="the decode took more than 5 ms"
bomb embeddings jpeg_many_scans_big.jpg
stop_server
finish
