#!/usr/bin/env bash
# deploy/: the Kubernetes and KServe manifests validate against the
# Kubernetes OpenAPI schemas offline (npm kubernetes-models; KServe's CRDs
# structurally) and say what memfit needs (deploy_semantics.mjs: probes, the
# memory limit, the drain, non-root, volumes, the manifest's mount); the
# manifest of the ConfigMap loads with memfit's own loader and its models,
# planned from random files of the same shapes, fit the budget that the
# Deployment's memory limit gives (80 %); the systemd unit passes
# `systemd-analyze verify`. Parts whose tool is missing are skipped with a
# message; node and the npm packages come from scripts/install-deps --browser.
source "$(dirname "$0")/lib.bash"
SRC=${MEMFIT_SOURCE:?MEMFIT_SOURCE not set}
NPM=${MEMFIT_NPM_DIR:-$SRC/tools/npm}/node_modules
parts=0

# ---- Kubernetes and KServe objects ----------------------------------------------------------
limit=
if ! command -v node >/dev/null; then
    echo "skipped: schema checks: node not installed (scripts/install-deps --browser)"
elif [[ ! -d $NPM/kubernetes-models || ! -d $NPM/yaml ]]; then
    echo "skipped: schema checks: kubernetes-models or yaml not in $NPM (scripts/install-deps --browser)"
else
    parts=$((parts + 1))
    export NODE_PATH=$NPM
    files=("$SRC"/deploy/kubernetes/{kustomization,deployment,service}.yaml "$SRC"/deploy/kserve/*.yaml)
    check "the manifests validate against their schemas" node "$SRC/tests/integration/k8s_validate.mjs" "${files[@]}"
    # The validator must see a fault: a wrong type and an unknown enum value.
    sed -e 's/replicas: 2/replicas: "two"/' -e 's/protocol: TCP/protocol: TPC/' \
        "$SRC/deploy/kubernetes/deployment.yaml" >"$TMP/bad.yaml"
    check "a Deployment with a wrong type and a bad enum value is refused" bash -c \
        "! node '$SRC/tests/integration/k8s_validate.mjs' '$TMP/bad.yaml' >'$TMP/bad.out' &&
         grep -q 'replicas must be integer' '$TMP/bad.out' && grep -q 'protocol' '$TMP/bad.out'"
    node "$SRC/tests/integration/deploy_semantics.mjs" "$SRC" >"$TMP/semantics" 2>&1
    while IFS= read -r line; do
        case $line in
        ok:*) CHECKS=$((CHECKS + 1)) && echo "$line" ;;
        FAIL:*) CHECKS=$((CHECKS + 1)) && fail "${line#FAIL: }" ;;
        limit_bytes\ *) limit=${line#limit_bytes } ;;
        *) echo "$line" && fail "deploy_semantics.mjs: $line" ;;
        esac
    done <"$TMP/semantics"
fi

# ---- The manifest of the ConfigMap ------------------------------------------------------------
GEN=$BUILD/make_random_model
MANIFEST=$SRC/deploy/kubernetes/memfit.yaml
if [[ ! -x $GEN ]]; then
    echo "skipped: manifest plans: helper $GEN not built"
else
    parts=$((parts + 1))
    # Each source becomes a random model of the same shape, by its file name.
    mkdir -p "$TMP/models"
    cp "$MANIFEST" "$TMP/memfit.yaml"
    for src in $(grep -oE '(s3|https?|hf)://[^ ]+' "$MANIFEST"); do
        f=$(basename "$src")
        case $f in
        dinov2_vitb14_q8_0.gguf) "$GEN" dinov2-vit-b14 "$TMP/models/$f" --type q8_0 >/dev/null ;;
        sam_vit_b_q8_0.gguf) "$GEN" sam-vit-b "$TMP/models/$f" --type q8_0 >/dev/null ;;
        *) fail "no random model for $f: teach this test its shape" ;;
        esac
        sed -i "s#$src#$TMP/models/$f#" "$TMP/memfit.yaml"
    done
    limit=${limit:-$((1 << 30))} # the Deployment's, or 1Gi when node is missing
    budget_mib=$((limit * 8 / 10 / 1048576))
    "$MEMFIT" models --budget "${budget_mib}MiB" --json "$TMP/memfit.yaml" \
        >"$TMP/models.json" 2>"$TMP/models.err"
    rc=$?
    [[ $rc -eq 0 ]] || cat "$TMP/models.err"
    check "the manifest loads, and each model fits ${budget_mib} MiB (80 % of the limit)" [ $rc = 0 ]
    check "together they fit the budget (all loaded at once)" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
total = sum(m["total_bytes"] for m in d["models"])
print("planned %.1f MiB of %.1f MiB: %s" % (total / 2**20, d["budget_bytes"] / 2**20,
      ", ".join("%s %.1f MiB" % (m["name"], m["total_bytes"] / 2**20) for m in d["models"])))
assert all(m["fits"] for m in d["models"]) and total <= d["budget_bytes"]
' "$TMP/models.json"
    # and the loader reports a broken manifest (the check above can fail)
    printf 'models:\n  - name: x\n    family: dinov2\n    sorces: [a.gguf]\n' >"$TMP/broken.yaml"
    check "a misspelt key in a manifest is refused by memfit models" bash -c \
        "! '$MEMFIT' models '$TMP/broken.yaml' 2>'$TMP/broken.err' && grep -q sorces '$TMP/broken.err'"
fi

# ---- The systemd unit ---------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null; then
    echo "skipped: systemd unit: systemd-analyze not installed (Debian's systemd package)"
else
    parts=$((parts + 1))
    # verify wants ExecStart's program to exist: this build's
    sed "s#/usr/local/bin/memfit#$MEMFIT#" "$SRC/deploy/systemd/memfit.service" >"$TMP/memfit.service"
    systemd-analyze verify "$TMP/memfit.service" >"$TMP/verify" 2>&1
    rc=$?
    check "systemd-analyze verify: no complaint (exit $rc)" \
        bash -c "[ $rc = 0 ] && ! grep -v '^\$' '$TMP/verify'"
    check "the unit has MemoryMax (the budget's source), a cache directory and no root" \
        bash -c "grep -q '^MemoryMax=' '$TMP/memfit.service' && grep -q '^CacheDirectory=memfit' '$TMP/memfit.service' &&
                 grep -q '^DynamicUser=yes' '$TMP/memfit.service'"
    # and verify would have said so of a misspelt key
    sed 's/^MemoryMax=/MemoryMaks=/' "$TMP/memfit.service" >"$TMP/bad.service"
    check "systemd-analyze verify reports a misspelt key" \
        bash -c "systemd-analyze verify '$TMP/bad.service' 2>&1 | grep -q MemoryMaks"
fi
[[ $parts -gt 0 ]] || skip "none of node with kubernetes-models, make_random_model, systemd-analyze"
finish
