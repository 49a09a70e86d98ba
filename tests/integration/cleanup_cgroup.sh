#!/usr/bin/env bash
# `memfit cleanup --cgroup DIR`: a memory cgroup holding ~150 MB of page cache
# (a file read inside it) gives it back: usage falls by over 100 MB, memory
# in use does not rise, the --json figures agree. Bad directories are
# refused. Skipped where a memory cgroup cannot be created.
source "$(dirname "$0")/lib.bash"
MB=$((1000 * 1000))
CG=$(make_cgroup "memfit-reclaim-$$" $((1024 * 1024 * 1024))) ||
    skip "$(make_cgroup "memfit-reclaim-$$" 1 2>&1 >/dev/null)"
on_exit "remove_cgroup '$CG'"

head -c $((150 * MB)) /dev/urandom >"$TMP/data.bin"
# Drop the file's pages (charged to whoever wrote it; written back first, as
# dirty pages cannot be dropped), then read it inside the cgroup.
sync "$TMP/data.bin"
dd if="$TMP/data.bin" iflag=nocache count=0 status=none 2>/dev/null
run_in_cgroup "$CG" cat "$TMP/data.bin" >/dev/null
run_in_cgroup "$CG" cat "$TMP/data.bin" >/dev/null

"$MEMFIT" cleanup --cgroup "$CG" --json >"$TMP/r.json" 2>"$TMP/err"
check "cleanup --cgroup succeeds" [ $? -eq 0 ]
cat "$TMP/err"
"$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))["cgroup"]
b, a = c["before"], c["after"]
print("%s: usage %d -> %d MB, page cache %d -> %d MB, in use %d -> %d MB" % (c["method"],
      b["usage_bytes"] / 1e6, a["usage_bytes"] / 1e6, b["file_bytes"] / 1e6,
      a["file_bytes"] / 1e6, b["in_use_bytes"] / 1e6, a["in_use_bytes"] / 1e6))' "$TMP/r.json"
check "there was page cache to reclaim" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))["cgroup"]
sys.exit(not c["before"]["file_bytes"] > 100e6)' "$TMP/r.json"
check "usage fell by over 100 MB" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))["cgroup"]
sys.exit(not (c["freed_bytes"] > 100e6 and c["freed_bytes"] == c["before"]["usage_bytes"] - c["after"]["usage_bytes"]))' "$TMP/r.json"
check "memory in use did not rise, nothing went to swap" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))["cgroup"]
b, a = c["before"], c["after"]
sys.exit(not (a["in_use_bytes"] <= b["in_use_bytes"] and (a["swap_bytes"] or 0) <= (b["swap_bytes"] or 0)))' "$TMP/r.json"

"$MEMFIT" cleanup --cgroup "$CG" >"$TMP/out"
check "text output names the method and the figures" grep -q "^cgroup $CG (v[12], memory\.[a-z_]*): usage .* -> .*freed" "$TMP/out"
"$MEMFIT" cleanup --cgroup "$TMP" >/dev/null 2>"$TMP/err"
check "a directory that is no cgroup: exit 1" [ $? -eq 1 ]
check "... with a message" grep -q "not a memory cgroup directory" "$TMP/err"
finish
