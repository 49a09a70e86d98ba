/*
 * Printing DINOv2 embeddings, shared by `memfit embed` (the engine directly)
 * and `memfit run` (through the model manager), so both print the same
 * lines and JSON objects.
 */
#ifndef MEMFIT_CLI_EMBED_COMMON_H
#define MEMFIT_CLI_EMBED_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/memfit.h"

/* "cls", "mean", "both", "patches", indexed by enum memfit_vit_output. */
extern const char *const cli_vit_output_names[4];

/* --output KIND: cls, mean, both or patches; on other text a usage error and false. */
bool cli_opt_vit_output(const char *command, const char *text, enum memfit_vit_output *out);

/* Writes `s` as a JSON string (quotes, escapes) to stdout. */
void cli_print_json_string(const char *s);

/*
 * Prints one image's output: with `json` the object
 * {"image", "width", "height", "output", "embedding"} (patches nested per
 * token), else "NAME: KIND N floats (WxH): v1 v2 ...". `dim` is D.
 */
void cli_print_embedding(bool json, enum memfit_vit_output output, const char *name, uint32_t w,
                         uint32_t h, const float *v, size_t n, size_t dim);

#endif
