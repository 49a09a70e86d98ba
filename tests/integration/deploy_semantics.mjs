// What the Kubernetes and KServe files of deploy/ must say for memfit to run
// as intended there, beyond their schemas (k8s_validate.mjs): the probes on
// /health and /ready at the container's port, the memory limit (the budget's
// source), a drain that fits the grace period, the Prometheus annotations,
// non-root with a read-only root and a volume for every path serve writes,
// the manifest mounted where the image reads it, the Service reaching the pods.
// Usage: node deploy_semantics.mjs SOURCE_DIR; prints "ok: ..." or "FAIL: ..."
// per check, then "limit_bytes N" (the Deployment's memory limit).
// Run with NODE_PATH=tools/npm/node_modules.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const require = createRequire(resolve(process.env.NODE_PATH || ".", "x.js"));
const YAML = require("yaml");
const src = process.argv[2];
const load = (p) => YAML.parse(readFileSync(join(src, p), "utf8"));
const check = (what, ok) => console.log(`${ok ? "ok" : "FAIL"}: ${what}`);

// Kubernetes quantities of memory: 1Gi, 512Mi, 1G, 1000000.
function bytes(q) {
    const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
    if (!m) return NaN;
    const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
    return Number(m[1]) * (m[2] ? unit[m[2]] : 1);
}
// memfit's durations as serve's --grace takes them: 20s, 500ms, 1m, 20.
function seconds(d) {
    const m = /^([0-9.]+)(ms|s|m)?$/.exec(String(d));
    if (!m) return NaN;
    return Number(m[1]) * { ms: 1e-3, s: 1, m: 60, undefined: 1 }[m[2]];
}
const argValue = (args, flag, dflt) => {
    const i = (args ?? []).indexOf(flag);
    return i >= 0 ? args[i + 1] : dflt;
};
const envValue = (c, name) => (c.env ?? []).find((e) => e.name === name)?.value;
const portOf = (c, p) => (typeof p === "number" ? p : c.ports?.find((x) => x.name === p)?.containerPort);

// The image's working directory (where ./memfit.yaml is read) and cache.
const dockerfile = readFileSync(join(src, "Dockerfile"), "utf8");
const workdir = [...dockerfile.matchAll(/^WORKDIR\s+(\S+)/gm)].pop()?.[1];
const imageEnv = /MEMFIT_CACHE_DIR=(\S+)/.exec(dockerfile)?.[1];

// ---- deploy/kubernetes ----
const kust = load("deploy/kubernetes/kustomization.yaml");
const dep = load("deploy/kubernetes/deployment.yaml");
const svc = load("deploy/kubernetes/service.yaml");
const pod = dep.spec.template.spec;
const c = pod.containers.find((x) => x.name === "memfit") ?? pod.containers[0];
const port = portOf(c, "http");
check(`the container's port "http" is 8080 (serve's default in the image), got ${port}`, port === 8080);
const servePort = Number(envValue(c, "MEMFIT_PORT") ?? argValue(c.args, "--port", 8080));
check(`serve listens on the container port (${servePort})`, servePort === port);
const probe = (p, cc = c) => p?.httpGet && `${p.httpGet.path}@${portOf(cc, p.httpGet.port)}`;
check(`liveness probe GET /health on ${port}: ${probe(c.livenessProbe)}`, probe(c.livenessProbe) === `/health@${port}`);
check(`readiness probe GET /ready on ${port}: ${probe(c.readinessProbe)}`, probe(c.readinessProbe) === `/ready@${port}`);
check(`startup probe (if any) GET /health`, !c.startupProbe || probe(c.startupProbe) === `/health@${port}`);
const lim = bytes(c.resources?.limits?.memory);
check(`a memory limit (the budget is 80 % of it): ${c.resources?.limits?.memory}`, lim > 0);
check(`memory request = limit (scheduled on what it may use)`, bytes(c.resources?.requests?.memory) === lim);
check(`no MEMFIT_MAX_MEMORY_MB: the budget follows the limit`,
    !(c.env ?? []).some((e) => /MAX_MEMORY/.test(e.name)));
const sleep = c.lifecycle?.preStop?.exec?.command;
const sleepS = sleep?.[0] === "sleep" ? Number(sleep[1]) : NaN;
const grace = seconds(argValue(c.args, "--grace", "10s"));
const tgp = pod.terminationGracePeriodSeconds ?? 30;
check(`preStop sleeps (${sleepS} s) so that the endpoints drop the pod before SIGTERM`, sleepS >= 5);
check(`terminationGracePeriodSeconds ${tgp} > preStop ${sleepS} s + serve --grace ${grace} s`,
    tgp > sleepS + grace);
const ann = dep.spec.template.metadata?.annotations ?? {};
check(`Prometheus annotations: scrape, port ${port}, path /metrics`,
    ann["prometheus.io/scrape"] === "true" && Number(ann["prometheus.io/port"]) === port &&
        ann["prometheus.io/path"] === "/metrics");
const sc = { ...pod.securityContext, ...c.securityContext };
check(`runs as non-root (runAsNonRoot, uid ${sc.runAsUser})`, sc.runAsNonRoot === true && sc.runAsUser > 0);
check(`read-only root filesystem, no privilege escalation`,
    sc.readOnlyRootFilesystem === true && sc.allowPrivilegeEscalation === false);
const mounts = Object.fromEntries((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
const vols = Object.fromEntries((pod.volumes ?? []).map((v) => [v.name, v]));
const cacheDir = envValue(c, "MEMFIT_CACHE_DIR") ?? imageEnv;
const cacheVol = vols[mounts[cacheDir]?.name];
check(`the cache ${cacheDir} is a volume with a size limit`,
    !!cacheVol && (!!cacheVol.persistentVolumeClaim || bytes(cacheVol.emptyDir?.sizeLimit) > 0));
const cacheMax = envValue(c, "MEMFIT_CACHE_MAX_GB");
check(`MEMFIT_CACHE_MAX_GB ${cacheMax} is below the cache volume's sizeLimit`,
    !cacheVol?.emptyDir || (cacheMax && bytes(cacheMax.replace(/B$/, "")) < bytes(cacheVol.emptyDir.sizeLimit)));
check(`/tmp is a volume (read-only root)`, !!mounts["/tmp"] && !!vols[mounts["/tmp"].name]);
const gen = (kust.configMapGenerator ?? []).find((g) => (g.files ?? []).some((f) => /memfit\.yaml$/.test(f)));
const mv = mounts[workdir];
check(`the manifest ConfigMap "${gen?.name}" is mounted read-only at the image's WORKDIR ${workdir}`,
    !!gen && !!mv && mv.readOnly === true && vols[mv.name]?.configMap?.name === gen.name && !mv.subPath);
check(`every resource of the kustomization is listed`,
    ["deployment.yaml", "service.yaml"].every((f) => kust.resources.includes(f)));
const labels = dep.spec.template.metadata?.labels ?? {};
const sel = svc.spec.selector ?? {};
check(`the Service selects the pods`,
    Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels[k] === v));
check(`the Deployment's selector matches its pods`,
    Object.entries(dep.spec.selector.matchLabels).every(([k, v]) => labels[k] === v));
check(`the Service's port targets the container port`,
    svc.spec.ports.every((p) => portOf(c, p.targetPort ?? p.port) === port));

// ---- deploy/kserve ----
const rt = load("deploy/kserve/servingruntime.yaml");
const isvc = load("deploy/kserve/inferenceservice.yaml");
const rc = rt.spec.containers[0];
const rtPort = rc.ports?.[0]?.containerPort;
check(`ServingRuntime: serve --port ${argValue(rc.args, "--port")} on its containerPort ${rtPort}`,
    rc.args?.[0] === "serve" && Number(argValue(rc.args, "--port")) === rtPort);
check(`ServingRuntime: the manifest from the storage initializer's /mnt/models`,
    /^\/mnt\/models\//.test(argValue(rc.args, "--manifest", "")));
check(`ServingRuntime: probes /health and /ready on ${rtPort}`,
    probe(rc.livenessProbe, rc) === `/health@${rtPort}` &&
        probe(rc.readinessProbe, rc) === `/ready@${rtPort}`);
check(`ServingRuntime: MEMFIT_HOST 0.0.0.0 and a memory limit`,
    envValue(rc, "MEMFIT_HOST") === "0.0.0.0" && bytes(rc.resources?.limits?.memory) > 0);
const m = isvc.spec.predictor.model;
check(`InferenceService: runtime ${m.runtime} and format ${m.modelFormat.name} are the ServingRuntime's`,
    m.runtime === rt.metadata.name && rt.spec.supportedModelFormats.some((f) => f.name === m.modelFormat.name));
check(`InferenceService: a memory limit`, bytes(m.resources?.limits?.memory) > 0);
console.log(`limit_bytes ${lim}`);
