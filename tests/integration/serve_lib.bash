# Helpers of the `memfit serve` integration tests (sourced after lib.bash).

# Starts `memfit serve --port 0 ARGS...` in the background; sets PID and URL
# (from its "listening on" line). Output: $TMP/out, log: $TMP/err.
start_server() { start_server_in "" "$@"; }

# The same inside the cgroup CG (a directory from make_cgroup; "" for none):
# start_server_in CG ARGS... PID is memfit itself, so signals reach it.
start_server_in() {
    local cg=$1
    shift
    rm -f "$TMP/out" # else the last server's line may be read before this one truncates it
    if [[ -n $cg ]]; then
        bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$MEMFIT" serve --port 0 "$@" \
            >"$TMP/out" 2>"$TMP/err" &
    else
        "$MEMFIT" serve --port 0 "$@" >"$TMP/out" 2>"$TMP/err" &
    fi
    PID=$!
    wait_listening
    [[ -n $URL ]] || { cat "$TMP/err"; fail "server did not start"; finish; }
}

# Waits (10 s at most) for the server PID to print its "listening on" line
# (plain, or a JSON log record) to $TMP/out; sets URL from it ("" if it never did).
wait_listening() {
    on_exit "kill -9 $PID 2>/dev/null"
    for _ in $(seq 200); do
        grep -q "listening on" "$TMP/out" 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    # The plain line, or (MEMFIT_LOG_FORMAT=json) the record whose msg it is.
    URL=$(sed -n 's/^listening on //p; s/^{.*"msg":"listening on \([^"]*\)"}$/\1/p' "$TMP/out")
}

# Starts the server on a manifest of one model, "dino" ($TMP/vits_tiny.pth),
# under a 1 MB budget it can never fit in: the budget refusals.
start_small_budget_server() {
    cat >"$TMP/small.yaml" <<Y
budget: 1MB
models:
  - name: dino
    family: dinov2
    sources: [$TMP/vits_tiny.pth]
Y
    start_server --manifest "$TMP/small.yaml"
}

# SIGTERM, then the exit status of the server.
stop_server() {
    kill -TERM "$PID"
    wait "$PID"
}

# curl ARGS...: the body to $TMP/body, the HTTP status printed.
code() { curl -s -o "$TMP/body" -w '%{http_code}' "$@"; }

# code for a POST with a JSON body (the server answers 415 to other Content-Types).
post() { code -H 'Content-Type: application/json' "$@"; }

# True when $TMP/body is an OpenAI-style error with this code.
is_error() {
    "$PY" -c "import json,sys; e=json.load(open(sys.argv[1]))['error']; assert e['code']==sys.argv[2] and e['message'] and e['type'], e" "$TMP/body" "$1"
}

# Writes $TMP/req.json: model $1, encoding_format $2, images $3... as data URLs
# (one image: "input" is a string; several: an array).
make_request() {
    local model=$1 enc=$2
    shift 2
    "$PY" - "$model" "$enc" "$@" >"$TMP/req.json" <<'PY'
import base64, json, sys
model, enc, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
def url(p):
    kind = "png" if p.endswith(".png") else "jpeg"
    return "data:image/%s;base64,%s" % (kind, base64.b64encode(open(p, "rb").read()).decode())
inp = [url(p) for p in paths]
print(json.dumps({"model": model, "input": inp[0] if len(inp) == 1 else inp, "encoding_format": enc}))
PY
}

# Prints the value of a Prometheus sample (the first line starting with $1), or 0.
metric() {
    curl -s "$URL/metrics" | awk -v k="$1" 'index($0, k) == 1 {print $NF; found = 1; exit} END {if (!found) print 0}'
}
