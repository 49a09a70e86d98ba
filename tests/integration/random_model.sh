#!/usr/bin/env bash
# make_random_model: SAM ViT-B and DINOv2 ViT-B/14 of random weights have
# the real parameter counts (93,735,728 and 86,580,480 with mask_token), are
# recognised as their families from the file alone, and carry the types
# `memfit quantize` gives (an F32 model quantized to Q8_0 has, tensor by
# tensor, the types of the Q8_0 model written directly); a seed gives the
# same bytes again; the DINOv2 model embeds an image into 768 finite floats.
# seeds_service.sh serves them; this runs without root, S3 or a cgroup.
source "$(dirname "$0")/lib.bash"
GEN=$BUILD/make_random_model
[[ -x $GEN ]] || skip "helper $GEN not built"

"$GEN" sam-vit-b "$TMP/sam.gguf" || { fail "sam-vit-b"; finish; }
"$GEN" dinov2-vit-b14 "$TMP/dino.gguf" --seed 2 || { fail "dinov2-vit-b14"; finish; }
"$GEN" dinov2-vit-b14 "$TMP/dino2.gguf" --seed 2 >/dev/null
"$GEN" dinov2-vit-b14 "$TMP/dino3.gguf" --seed 3 >/dev/null
"$GEN" dinov2-vit-b14 "$TMP/dino_f32.gguf" --type f32 --seed 2 >/dev/null
"$MEMFIT" quantize "$TMP/dino_f32.gguf" "$TMP/dino_q.gguf" --type q8_0 >/dev/null ||
    fail "memfit quantize"
for f in sam dino dino_q; do "$MEMFIT" inspect --json "$TMP/$f.gguf" >"$TMP/$f.json"; done

params() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['parameters'])" "$1"; }
check "SAM ViT-B: 93,735,728 parameters" [ "$(params "$TMP/sam.json")" -eq 93735728 ]
check "DINOv2 ViT-B/14: 86,580,480 parameters" [ "$(params "$TMP/dino.json")" -eq 86580480 ]
check "types as memfit quantize writes them (DINOv2 F32 -> Q8_0)" "$PY" -c '
import json, sys
a, b = (json.load(open(p))["tensors"] for p in sys.argv[1:])
assert [(t["name"], t["type"], t["shape"]) for t in a] == [(t["name"], t["type"], t["shape"]) for t in b]
' "$TMP/dino.json" "$TMP/dino_q.json"
check "SAM: matrices Q8_0, tables F32, 16x16 patch convolution F16" "$PY" -c '
import json, sys
t = {x["name"]: x for x in json.load(open(sys.argv[1]))["tensors"]}
assert t["image_encoder.blocks.2.attn.qkv.weight"]["type"] == "q8_0"
assert t["image_encoder.blocks.2.attn.rel_pos_h"]["shape"] == [127, 64]
assert t["image_encoder.blocks.3.attn.rel_pos_w"]["shape"] == [27, 64]
assert t["image_encoder.pos_embed"]["type"] == "f32"
assert t["image_encoder.pos_embed"]["shape"] == [1, 64, 64, 768]
assert t["image_encoder.patch_embed.proj.weight"]["type"] == "f16"
assert t["mask_decoder.iou_token.weight"]["type"] == "f32"
' "$TMP/sam.json"
check "a seed gives the same file" cmp -s "$TMP/dino.gguf" "$TMP/dino2.gguf"
check "another seed another file" bash -c '! cmp -s "$0" "$1"' "$TMP/dino.gguf" "$TMP/dino3.gguf"

cat >"$TMP/m.yaml" <<YAML
models:
  - {name: sam, family: auto, sources: [sam.gguf]}
  - {name: dino, family: auto, sources: [dino.gguf]}
YAML
"$MEMFIT" models "$TMP/m.yaml" >"$TMP/models" 2>/dev/null
cat "$TMP/models"
check "recognised as sam and dinov2" bash -c \
    'grep -qE "^sam +sam " "$0" && grep -qE "^dino +dinov2 " "$0"' "$TMP/models"
"$MEMFIT" embed --json "$TMP/dino.gguf" "$MEMFIT_FIXTURES/images/baseline420.jpg" >"$TMP/emb"
check "DINOv2: 768 finite floats" "$PY" -c '
import json, math, sys
e = json.loads(open(sys.argv[1]).readline())["embedding"]
assert len(e) == 768 and all(math.isfinite(x) for x in e) and max(map(abs, e)) > 0
' "$TMP/emb"
finish
