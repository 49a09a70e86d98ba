/*
 * PLACEHOLDER until the tokenizer branch is merged: that branch has the real
 * src/models/tokenizer_json.c (Hugging Face tokenizer.json to GGUF
 * metadata). This file only lets the LLM converter (llm_convert.c) link
 * before then; when merging, take the tokenizer branch's file whole and
 * drop this one.
 */
#include "memfit/models.h"

enum memfit_status memfit_tokenizer_json_to_gguf(const char *tokenizer_json,
                                                 const char *tokenizer_config_json,
                                                 memfit_writer *w)
{
    (void)tokenizer_config_json;
    (void)w;
    return memfit_fail(MEMFIT_E_UNSUPPORTED,
                       "%s: this build has no tokenizer.json converter yet (placeholder; convert "
                       "without the tokenizer)",
                       tokenizer_json ? tokenizer_json : "tokenizer.json");
}
