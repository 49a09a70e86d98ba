/*
 * The embedding engines `memfit serve` hands to the server
 * (struct memfit_embed_engine, memfit/server.h). The server depends on no
 * model family; the program decides which families it serves.
 */
#ifndef MEMFIT_CLI_SERVE_ENGINES_H
#define MEMFIT_CLI_SERVE_ENGINES_H

#include "memfit/memfit.h"

/*
 * DINOv2 (family "dinov2"): images in, the CLS token out, preprocessed as
 * `memfit embed` does (shorter side 256, bicubic, centre crop 224, ImageNet
 * mean/std), so the server's embedding of an image equals
 * `memfit embed --json`'s. A quick-start model (family "auto") is accepted
 * when its tensors are DINOv2's.
 */
extern const struct memfit_embed_engine cli_dinov2_engine;

/*
 * Qwen2 and LLaMA GGUF models (families "qwen2" and "llama"; "llm" takes
 * either): text generation for /v1/completions and /v1/chat/completions,
 * the conversation rendered with the model's chat template (ChatML when it
 * has none memfit knows). A quick-start model is taken by the engine whose
 * family is the file's general.architecture.
 */
extern const struct memfit_embed_engine cli_qwen2_engine;
extern const struct memfit_embed_engine cli_llama_engine;

#endif
