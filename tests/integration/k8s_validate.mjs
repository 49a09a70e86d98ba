// Validates Kubernetes YAML files offline, for tests/integration/deploy_manifests.sh:
// every document of a built-in kind against the Kubernetes OpenAPI schema
// (npm kubernetes-models: a model's validate() throws on a wrong type, an
// unknown enum value or a missing required field), KServe's ServingRuntime and
// InferenceService structurally (no schema package exists for them), and a
// Kustomization's references to its files.
// Usage: node k8s_validate.mjs FILE.yaml... ; prints "ok: FILE: Kind/name" per
// document, or "invalid: FILE: Kind/name: why", and exits 1 if any is invalid.
// Run with NODE_PATH=tools/npm/node_modules (scripts/install-deps --browser).
import { createRequire } from "node:module";
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const require = createRequire(resolve(process.env.NODE_PATH || ".", "x.js"));
const YAML = require("yaml");

let bad = 0;
const report = (file, doc, why) => {
    const what = `${doc?.kind ?? "?"}/${doc?.metadata?.name ?? "?"}`;
    if (why) {
        bad++;
        console.log(`invalid: ${file}: ${what}: ${why}`);
    } else {
        console.log(`ok: ${file}: ${what}`);
    }
};

// kubernetes-models/<group>/<version>/<Kind> for apiVersion "group/version",
// kubernetes-models/v1/<Kind> for the core group.
function builtinModel(doc) {
    const path = `kubernetes-models/${doc.apiVersion}/${doc.kind}`;
    try {
        return require(path)[doc.kind];
    } catch {
        return null;
    }
}

function need(obj, path, type) {
    let v = obj;
    for (const k of path.split(".")) v = v?.[k];
    if (v === undefined || v === null) throw new Error(`${path} is missing`);
    if (type === "array" ? !Array.isArray(v) : typeof v !== type)
        throw new Error(`${path} is not ${type === "array" ? "a list" : `a ${type}`}`);
    return v;
}

function only(obj, path, keys) {
    for (const k of Object.keys(obj))
        if (!keys.includes(k)) throw new Error(`${path}.${k}: unknown field (known: ${keys.join(", ")})`);
}

// The fields of KServe's v1alpha1 ServingRuntimeSpec and v1beta1 predictor
// used here, checked by hand; the containers against the core Container schema.
const Container = require("kubernetes-models/v1/Container").Container;
const crds = {
    "serving.kserve.io/v1alpha1/ServingRuntime"(doc) {
        const s = need(doc, "spec", "object");
        only(s, "spec", ["supportedModelFormats", "protocolVersions", "multiModel", "containers",
            "annotations", "labels", "disabled", "builtInAdapter", "grpcEndpoint",
            "grpcDataEndpoint", "httpDataEndpoint", "replicas", "storageHelper", "volumes",
            "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "workerSpec"]);
        for (const f of need(doc, "spec.supportedModelFormats", "array")) {
            need(f, "name", "string");
            only(f, "spec.supportedModelFormats[]", ["name", "version", "autoSelect", "priority"]);
        }
        for (const p of s.protocolVersions ?? [])
            if (!["v1", "v2", "grpc-v1", "grpc-v2"].includes(p)) throw new Error(`protocolVersions: ${p}`);
        const cs = need(doc, "spec.containers", "array");
        if (cs.length === 0) throw new Error("spec.containers is empty");
        for (const c of cs) new Container(c).validate();
    },
    "serving.kserve.io/v1beta1/InferenceService"(doc) {
        const m = need(doc, "spec.predictor.model", "object");
        need(m, "modelFormat.name", "string");
        for (const k of ["resources", "env", "ports", "args"])
            if (m[k] !== undefined) new Container({ name: "x", [k]: m[k] }).validate();
        if (m.protocolVersion && !["v1", "v2", "grpc-v1", "grpc-v2"].includes(m.protocolVersion))
            throw new Error(`protocolVersion: ${m.protocolVersion}`);
    },
    "kustomize.config.k8s.io/v1beta1/Kustomization"(doc, file) {
        const dir = dirname(file);
        const files = [...(doc.resources ?? [])];
        for (const g of doc.configMapGenerator ?? [])
            files.push(...(g.files ?? []).map((f) => f.split("=").pop()));
        for (const f of files)
            if (!existsSync(join(dir, f))) throw new Error(`${f}: no such file beside it`);
    },
};

for (const file of process.argv.slice(2)) {
    let docs;
    try {
        docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
    } catch (e) {
        report(file, null, e.message);
        continue;
    }
    for (const d of docs) {
        if (d.errors.length) {
            report(file, null, d.errors[0].message);
            continue;
        }
        const doc = d.toJS();
        if (!doc) continue;
        try {
            need(doc, "apiVersion", "string");
            need(doc, "kind", "string");
            const key = `${doc.apiVersion}/${doc.kind}`;
            if (crds[key]) {
                if (doc.kind !== "Kustomization") need(doc, "metadata.name", "string");
                crds[key](doc, file);
            } else {
                const Model = builtinModel(doc);
                if (!Model) throw new Error(`no schema for ${key}`);
                new Model(doc).validate();
            }
            report(file, doc);
        } catch (e) {
            report(file, doc, e.message.split("\n").slice(0, 3).join(" "));
        }
    }
}
process.exit(bad ? 1 : 0);
