# Shared helpers of the integration tests (sourced, not a test itself).
# CTest sets MEMFIT_BIN (the memfit binary), MEMFIT_BUILD, MEMFIT_SOURCE,
# MEMFIT_FIXTURES and MEMFIT_SANITIZED (ON in ASan/TSan builds).
set -uo pipefail

MEMFIT=${MEMFIT_BIN:?MEMFIT_BIN not set}
BUILD=${MEMFIT_BUILD:?MEMFIT_BUILD not set}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memfit-test.XXXXXX")
CLEANUPS=()
cleanup_all() {
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" || true; done
    rm -rf "$TMP"
}
trap cleanup_all EXIT
on_exit() { CLEANUPS+=("$1"); }

FAILS=0
CHECKS=0
fail() {
    echo "FAIL: $*"
    FAILS=$((FAILS + 1))
}
check() { # description, command...
    local what=$1
    shift
    CHECKS=$((CHECKS + 1))
    if "$@"; then echo "ok: $what"; else fail "$what"; fi
}
skip() {
    echo "SKIPPED: $*"
    exit 77
}
finish() {
    echo "$((CHECKS - FAILS)) passed, $FAILS failed"
    [[ $FAILS -eq 0 ]]
    exit $?
}

# JSON queries with the system Python (no third-party modules needed).
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
jq_py() { # python expression over `d` (list of records) read from file $1
    "$PY" -c "import json,sys
d=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(($2))" "$1"
}

# Creates a memory cgroup with a limit and prints its directory, or returns
# 1 with a reason on stderr. Usage: make_cgroup NAME LIMIT_BYTES
make_cgroup() {
    local name=$1 limit=$2 dir
    if [[ $(id -u) -ne 0 ]]; then
        echo "not root: cannot create a memory cgroup" >&2
        return 1
    fi
    if [[ -d /sys/fs/cgroup/memory && -w /sys/fs/cgroup/memory ]]; then
        dir=/sys/fs/cgroup/memory/$name
        mkdir "$dir" 2>/dev/null || { echo "cannot create $dir" >&2; return 1; }
        echo "$limit" >"$dir/memory.limit_in_bytes" || { rmdir "$dir"; return 1; }
        [[ -f $dir/memory.memsw.limit_in_bytes ]] && echo "$limit" >"$dir/memory.memsw.limit_in_bytes" 2>/dev/null
        echo 0 >"$dir/memory.swappiness" 2>/dev/null
    elif [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
        dir=/sys/fs/cgroup/$name
        echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
        mkdir "$dir" 2>/dev/null || { echo "cannot create $dir" >&2; return 1; }
        echo "$limit" >"$dir/memory.max" || { rmdir "$dir"; return 1; }
        echo 0 >"$dir/memory.swap.max" 2>/dev/null
    else
        echo "no writable memory cgroup hierarchy (v1 or v2)" >&2
        return 1
    fi
    echo "$dir"
}

# Removes a cgroup once its processes are gone.
remove_cgroup() {
    local dir=$1
    for _ in $(seq 50); do
        rmdir "$dir" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "warning: could not remove $dir" >&2
}

# Runs a command inside the cgroup: run_in_cgroup DIR CMD ARGS...
run_in_cgroup() {
    local dir=$1
    shift
    bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$dir" "$@"
}

# Builds the fake NVML library (tests/fixtures/gpu/fake_nvml.c, steered by
# the file FAKE_NVML_STATE names) with the system compiler and prints its
# path, or returns 1 with a reason on stderr.
build_fake_nvml() {
    local lib=$TMP/libfake-nvml.so
    command -v cc >/dev/null 2>&1 || { echo "no C compiler (cc) to build the fake NVML library" >&2; return 1; }
    # Sanitizer options of the test's environment must not reach the compiler.
    env -u ASAN_OPTIONS -u UBSAN_OPTIONS -u TSAN_OPTIONS cc -shared -fPIC -o "$lib" \
        "$MEMFIT_FIXTURES/gpu/fake_nvml.c" >&2 || { echo "cc could not build a shared library" >&2; return 1; }
    echo "$lib"
}
