#!/usr/bin/env bash
# The Dockerfile: builds the image with podman on a Debian 12 base made here
# with debootstrap (no image registry is reachable; the base is cached in
# podman's storage for the week), runs it with --memory 512m and a read-only
# root filesystem, a manifest at the default path and a random DINOv2 model,
# and checks: /health, /v1/models, the HEALTHCHECK, the process's user (not
# root), the budget (80 % of the 512 MiB cgroup limit), the cache volume
# writable, an embedding, the JSON log, PORT as Render sets it, and a
# graceful stop on SIGTERM (exit 0). Prints the RSS figures docs/deploy.md
# quotes.
# Needs root, podman with a runtime that works here (crun, or runc where
# crun refuses a hybrid cgroup tree) and debootstrap plus Debian's mirror
# for the base: scripts/install-deps --container. MEMFIT_CONTAINER_BASE=IMAGE
# uses that base instead (e.g. debian:bookworm-slim where a registry is).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
SRC=${MEMFIT_SOURCE:?MEMFIT_SOURCE not set}
IMAGE=localhost/memfit-test:latest
NAME=memfit-test-$$

[[ ${MEMFIT_SANITIZED:-OFF} != ON ]] ||
    skip "the image builds memfit from source with its own Dockerfile; the release run covers it"
[[ $(id -u) -eq 0 ]] || skip "not root: rootful podman needed (cgroup limits, runc)"
command -v podman >/dev/null || skip "podman not installed (scripts/install-deps --container)"
GEN=$BUILD/make_random_model
[[ -x $GEN ]] || skip "helper $GEN not built"

# Limits the runtime may set without CAP_SYS_RESOURCE (podman's defaults
# raise them, which fails in a container or VM that lacks it).
nofile=$(ulimit -Hn)
[[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)

# ---- The base image: Debian 12 minbase, made once a week ---------------------------------
mirror() { # the Debian mirror apt uses here
    local m
    m=$(grep -hoE '^(deb|URIs:) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+' |
        grep -E '/debian/?$' | head -1)
    echo "${m:-http://deb.debian.org/debian}"
}
if [[ -n ${MEMFIT_CONTAINER_BASE:-} ]]; then
    BASE=$MEMFIT_CONTAINER_BASE
else
    BASE=localhost/memfit-test-base:bookworm-$(date +%Gw%V)
    if ! podman image exists "$BASE"; then
        command -v debootstrap >/dev/null ||
            skip "debootstrap not installed (scripts/install-deps --container)"
        echo "making $BASE with debootstrap from $(mirror) (once a week, about 90 s)"
        root=$TMP/rootfs
        if ! debootstrap --variant=minbase bookworm "$root" "$(mirror)" >"$TMP/debootstrap.log" 2>&1; then
            tail -5 "$TMP/debootstrap.log"
            skip "debootstrap of Debian 12 failed (no mirror reachable?): see above"
        fi
        tar -C "$root" -c . | podman import -q - "$BASE" >/dev/null || fail "podman import of the base"
        rm -rf "$root"
        # the earlier weeks' bases
        podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/memfit-test-base:' |
            grep -vx "$BASE" | xargs -r podman rmi -f >/dev/null 2>&1
    fi
fi

# ---- A runtime that works here ------------------------------------------------------------
RT=
why=
for rt in crun runc; do
    command -v "$rt" >/dev/null || continue
    if out=$(podman run --rm --runtime "$rt" "${LIMITS[@]}" --network none --memory 64m "$BASE" true 2>&1); then
        RT=$rt
        break
    fi
    why+="$rt: $out; "
done
[[ -n $RT ]] || skip "no OCI runtime can run a container with a memory limit here: ${why:-neither crun nor runc installed}"
echo "runtime: $RT"

# ---- Build ---------------------------------------------------------------------------------
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
t0=$(date +%s)
# --format docker: OCI images have no HEALTHCHECK. --network host: the build
# stage's apt-get reaches the mirror whatever podman's networking can do here.
if ! podman build --runtime "$RT" "${LIMITS[@]}" --network host --format docker \
    --build-arg "BASE=$BASE" -t "$IMAGE" -f "$SRC/Dockerfile" "$SRC" >"$TMP/build.log" 2>&1; then
    tail -30 "$TMP/build.log"
    fail "podman build"
    finish
fi
echo "built $IMAGE in $(($(date +%s) - t0)) s"
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
[[ -z $old || $old == "$new" ]] || podman rmi "$old" >/dev/null 2>&1 || true
check "the build compiled without a warning" bash -c "! grep ': warning: ' '$TMP/build.log'"
# Build stages of earlier sources (the latest stays as the next build's cache).
podman image prune -f --filter until=24h >/dev/null 2>&1
podman image inspect "$IMAGE" >"$TMP/inspect.json"
check "image: non-root numeric USER, EXPOSE 8080, VOLUME, STOPSIGNAL, HEALTHCHECK, env" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))[0]
c = d["Config"]
assert c["User"] == "10001:10001", c["User"]
assert "8080/tcp" in c["ExposedPorts"], c["ExposedPorts"]
assert "/var/cache/memfit" in c["Volumes"], c["Volumes"]
assert c["StopSignal"] in ("SIGTERM", "15"), c["StopSignal"]
h = d.get("Healthcheck") or c.get("Healthcheck")  # where podman, docker put it
assert h and "/health" in " ".join(h["Test"]), h
env = dict(e.split("=", 1) for e in c["Env"])
assert env["MEMFIT_HOST"] == "0.0.0.0" and env["MEMFIT_CACHE_DIR"] == "/var/cache/memfit", env
assert env["MEMFIT_LOG_FORMAT"] == "json" and "MEMFIT_MAX_MEMORY_MB" not in env, env
assert c["WorkingDir"] == "/etc/memfit", c["WorkingDir"]
' "$TMP/inspect.json"

# ---- Run it in 512 MiB ---------------------------------------------------------------------
mkdir -p "$TMP/models"
"$GEN" dinov2-vit-b14 "$TMP/models/dino.gguf" --type q8_0 --seed 2 >/dev/null || fail "make_random_model"
chmod -R a+rX "$TMP"
cat >"$TMP/memfit.yaml" <<'YAML'
models:
  - name: dino
    family: dinov2
    sources: [/models/dino.gguf]
YAML
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Host networking with MEMFIT_PORT: no dependence on podman's bridge here.
on_exit "podman rm -f -t 0 $NAME >/dev/null 2>&1"
podman run -d --name "$NAME" --runtime "$RT" "${LIMITS[@]}" --network host --memory 512m \
    --memory-swap 512m --read-only --tmpfs /tmp -e MEMFIT_PORT="$port" \
    -v "$TMP/memfit.yaml:/etc/memfit/memfit.yaml:ro" -v "$TMP/models:/models:ro" \
    "$IMAGE" >/dev/null 2>"$TMP/podman.log" || {
    cat "$TMP/podman.log"
    fail "podman run"
    finish
}
URL=http://127.0.0.1:$port
for _ in $(seq 100); do
    curl -fs -o /dev/null "$URL/health" && break
    sleep 0.1
done
podman logs "$NAME" >"$TMP/log" 2>&1
check "GET /health answers 200" [ "$(code "$URL/health")" = 200 ]
check "GET /v1/models lists the manifest's model (read from /etc/memfit/memfit.yaml)" \
    bash -c "[ \"\$(curl -s -o '$TMP/models.json' -w '%{http_code}' '$URL/v1/models')\" = 200 ] &&
        grep -q '\"dino\"' '$TMP/models.json'"
check "GET /ready answers 200" [ "$(code "$URL/ready")" = 200 ]
check "the HEALTHCHECK passes (podman healthcheck run)" podman healthcheck run "$NAME" 2>>"$TMP/podman.log"
uid=$(podman exec "$NAME" sh -c 'awk "/^Uid:/ {print \$2}" /proc/1/status')
check "the server runs as uid 10001, not root (uid $uid)" [ "$uid" = 10001 ]
check "the cache volume is writable by the server's user" \
    podman exec "$NAME" sh -c 'touch /var/cache/memfit/.probe && rm /var/cache/memfit/.probe'
check "the root filesystem is read-only to it" podman exec "$NAME" sh -c '! touch /etc/memfit/x 2>/dev/null'
curl -s "$URL/api/memory" >"$TMP/mem0.json"
check "the budget is 80 % of the 512 MiB cgroup limit" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
limit, budget = d["summary"]["limit_bytes"], d["budget"]["size_bytes"]
print("limit %d (%s), budget %d" % (limit, d["summary"]["limit_source"], budget))
assert limit == 512 << 20, limit
assert abs(budget - 0.8 * limit) <= 1 << 20, budget
' "$TMP/mem0.json"
check "the log is JSON lines and names the budget's source" "$PY" -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
b = [r["msg"] for r in recs if r["msg"].startswith("budget:")]
print(b[0] if b else "no budget line")
assert b and "cgroup" in b[0] and "512" in b[0], b
' "$TMP/log"

make_request dino float "${MEMFIT_FIXTURES:?}/images/photo600x400.jpg"
check "an embedding of the random DINOv2 model" [ "$(post -d @"$TMP/req.json" "$URL/v1/embeddings")" = 200 ]
curl -s "$URL/api/memory" >"$TMP/mem1.json"
"$PY" - "$TMP/mem0.json" "$TMP/mem1.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
mib = lambda x: x / 1048576
print("figures: idle RSS %.1f MiB (cgroup working set %.1f MiB); after an embedding with DINOv2 "
      "ViT-B/14 Q8_0: RSS %.1f MiB, reserved %.1f MiB of the %.1f MiB budget, working set %.1f MiB"
      % (mib(a["process"]["rss_bytes"]), mib(a["summary"]["working_set_bytes"]),
         mib(b["process"]["rss_bytes"]), mib(b["budget"]["reserved_bytes"]),
         mib(b["budget"]["size_bytes"]), mib(b["summary"]["working_set_bytes"])))
PY

# ---- PORT, as Render and Cloud Run set it -----------------------------------------------------
port2=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
on_exit "podman rm -f -t 0 $NAME-port >/dev/null 2>&1"
podman run -d --name "$NAME-port" --runtime "$RT" "${LIMITS[@]}" --network host --memory 256m \
    -e PORT="$port2" "$IMAGE" >/dev/null 2>>"$TMP/podman.log" || fail "podman run with PORT"
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port2/health" && break
    sleep 0.1
done
check "with PORT=$port2 it listens there, and its HEALTHCHECK follows" \
    bash -c "curl -fs -o /dev/null http://127.0.0.1:$port2/health &&
             podman healthcheck run $NAME-port 2>>'$TMP/podman.log'"
podman rm -f -t 0 "$NAME-port" >/dev/null 2>&1

# ---- Graceful stop --------------------------------------------------------------------------
# (podman's complaints that it has no systemd for timed health checks: in podman.log)
podman stop -t 20 "$NAME" >/dev/null 2>>"$TMP/podman.log"
rc=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
podman logs "$NAME" >"$TMP/log" 2>&1
check "SIGTERM stops it gracefully (exit $rc)" [ "$rc" = 0 ]
check "the log says it shut down on SIGTERM" grep -q 'SIGTERM: shutting down' "$TMP/log"
finish
