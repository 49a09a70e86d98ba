#!/usr/bin/env bash
# Store download throughput: a 1 GB file from nginx on loopback, fetched by
# `memfit pull` (SHA-256 while streaming, fsync, rename into the cache) and
# by the `curl` command (plain write), best of N runs each; and the peak RSS
# of `memfit pull` during the download (getrusage of the child).
# Goals: throughput ratio memfit/curl >= 0.9, peak RSS < 20 MB.
# Usage: bench/store_throughput.sh [BUILD_DIR] [SIZE (default 1G)] [RUNS (default 5)]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
size=${2:-1G}
runs=${3:-5}
export MEMFIT_BIN="$build/memfit" MEMFIT_BUILD="$build" MEMFIT_SOURCE="$root"
[[ -x "$MEMFIT_BIN" ]] || { echo "build first: cmake --build --preset release"; exit 1; }
source "$root/tests/integration/store_lib.bash"
start_nginx
make_file big.bin "$size"
cat "$T/www/big.bin" >/dev/null # both readers start from a warm page cache
bytes=$(stat -c %s "$T/www/big.bin")

# run_measured OUT CMD...: prints "SECONDS MAXRSS_KB" of the command.
run_measured() {
    "$PY" - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
with open(sys.argv[1], "w") as out:
    subprocess.run(sys.argv[2:], stdout=out, check=True)
dt = time.monotonic() - t
print("%.3f %d" % (dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
PY
}

best_curl=999999 best_curl_sync=999999 best_ours=999999 peak_rss=0
for i in $(seq 1 "$runs"); do
    rm -f "$T/curl.out"
    sync
    read -r t _ < <(run_measured /dev/null curl -sf -o "$T/curl.out" "$NGINX/big.bin")
    best_curl=$("$PY" -c "print(min($best_curl, $t))")
    rm -f "$T/curl.out"
    sync
    read -r t _ < <(run_measured /dev/null sh -c "curl -sf -o '$T/curl.out' '$NGINX/big.bin' && sync '$T/curl.out'")
    best_curl_sync=$("$PY" -c "print(min($best_curl_sync, $t))")
    rm -f "$T/curl.out"
    sync
    rm -rf "$MEMFIT_CACHE_DIR"
    read -r t rss < <(run_measured "$T/pull.out" "$MEMFIT_BIN" pull "$NGINX/big.bin")
    best_ours=$("$PY" -c "print(min($best_ours, $t))")
    ((rss > peak_rss)) && peak_rss=$rss
    cmp -s "$(cat "$T/pull.out")" "$T/www/big.bin" || fail "pulled file differs"
done
"$PY" - "$bytes" "$best_curl" "$best_ours" "$peak_rss" "$best_curl_sync" <<'PY'
import sys
n, curl, ours, rss = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
curl_sync = float(sys.argv[5])
mb = n / 1e6
print("store_throughput: %.0f MB from nginx on loopback, best of runs" % mb)
print("  curl         %6.3f s  %7.1f MB/s" % (curl, mb / curl))
print("  curl + fsync %6.3f s  %7.1f MB/s" % (curl_sync, mb / curl_sync))
print("  memfit pull  %6.3f s  %7.1f MB/s  (sha256 + fsync included)" % (ours, mb / ours))
print("  ratio memfit/curl throughput: %.2f (goal >= 0.9)" % (curl / ours))
print("  ratio memfit/(curl + fsync): %.2f" % (curl_sync / ours))
print("  peak RSS of memfit pull: %.1f MB (goal < 20 MB)" % (rss / 1024))
PY
