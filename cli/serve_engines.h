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

#endif
