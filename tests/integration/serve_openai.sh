#!/usr/bin/env bash
# The official `openai` npm client, run by node against `memfit serve`:
# embeddings.create with image data URLs (the client's default base64
# encoding and encoding_format "float"), equal to `memfit embed --json`;
# models.list; an unknown model raising the client's NotFoundError; the API
# key sent by the client. Skipped, with the reason, when node or npm is
# missing or the package cannot be installed (no registry reachable).
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/serve_lib.bash"
command -v curl >/dev/null || skip "curl is needed"
command -v node >/dev/null || skip "node is not installed (Debian package nodejs)"
command -v npm >/dev/null || skip "npm is not installed (Debian package npm)"
mkdir -p "$TMP/npm"
(cd "$TMP/npm" && timeout 180 npm install --silent --no-audit --no-fund --no-save openai@4 \
    >"$TMP/npm.log" 2>&1) || skip "npm install openai failed: $(tail -3 "$TMP/npm.log" | tr '\n' ' ')"

FX=$MEMFIT_FIXTURES
cp "$FX/dinov2/vits_tiny.pth" "$TMP/vits_tiny.pth"
"$MEMFIT" embed --json "$TMP/vits_tiny.pth" "$FX/images/rgb8.png" "$FX/images/baseline420.jpg" \
    >"$TMP/ref.jsonl" || { fail "memfit embed"; finish; }

MEMFIT_API_KEY=test-key start_server "$TMP/vits_tiny.pth"
cat >"$TMP/npm/client.mjs" <<'JS'
import OpenAI from "openai";
import fs from "node:fs";
const [url, ref, png, jpg] = process.argv.slice(2);
const client = new OpenAI({ baseURL: url + "/v1", apiKey: "test-key", maxRetries: 0 });
const dataUrl = (p, t) => `data:image/${t};base64,` + fs.readFileSync(p).toString("base64");
const expected = fs.readFileSync(ref, "utf8").trim().split("\n").map((l) => JSON.parse(l).embedding);
const compare = (got, what) => {
  if (got.length !== expected.length) throw new Error(`${what}: ${got.length} embeddings`);
  got.forEach((d, i) => {
    const e = Array.from(d.embedding), r = expected[i];
    if (e.length !== r.length) throw new Error(`${what}: dimension ${e.length} != ${r.length}`);
    const worst = Math.max(...e.map((v, k) => Math.abs(v - r[k])));
    if (!(worst <= 1e-6)) throw new Error(`${what}: image ${i}: max difference ${worst}`);
  });
  console.log(`ok: ${what}`);
};
const input = [dataUrl(png, "png"), dataUrl(jpg, "jpeg")];
const models = await client.models.list();
if (!models.data.some((m) => m.id === "vits_tiny")) throw new Error("models.list: no vits_tiny");
console.log("ok: models.list");
let r = await client.embeddings.create({ model: "vits_tiny", input });
compare(r.data, "embeddings.create (default encoding)");
if (!(r.usage.prompt_tokens > 0)) throw new Error("usage.prompt_tokens missing");
r = await client.embeddings.create({ model: "vits_tiny", input, encoding_format: "float" });
compare(r.data, "embeddings.create (float)");
try {
  await client.embeddings.create({ model: "nope", input });
  throw new Error("unknown model: no error");
} catch (e) {
  if (!(e instanceof OpenAI.NotFoundError) || e.code !== "model_not_found") throw e;
  console.log("ok: unknown model raises NotFoundError");
}
const bad = new OpenAI({ baseURL: url + "/v1", apiKey: "wrong", maxRetries: 0 });
try {
  await bad.models.list();
  throw new Error("wrong key: no error");
} catch (e) {
  if (!(e instanceof OpenAI.AuthenticationError)) throw e;
  console.log("ok: wrong key raises AuthenticationError");
}
JS
check "openai npm client against memfit serve" \
    node "$TMP/npm/client.mjs" "$URL" "$TMP/ref.jsonl" "$FX/images/rgb8.png" "$FX/images/baseline420.jpg"
stop_server
check "SIGTERM exits 0" test $? -eq 0
finish
