/*
 * GGUF's value encoding, shared by the reader (gguf.c) and the writer
 * (writer.c): a value is a scalar (little-endian), a string (u64 length +
 * bytes) or an array (u32 element type, u64 count, packed elements).
 */
#ifndef MF_FORMAT_GGUF_H
#define MF_FORMAT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "memfit/format.h"

#define MF_GGUF_DEFAULT_ALIGNMENT 32
#define MF_GGUF_MAX_NESTING       8  /* arrays of arrays of ... */
#define MF_GGUF_MAX_NAME          64 /* ggml: tensor names shorter than GGML_MAX_NAME */

/*
 * Checks that a value of `type` whose encoding starts at p fits in
 * `remaining` bytes (strings, counts and nested arrays included, every
 * length checked before use) and writes its encoded size. On failure the
 * message names `path` and `what` (the key). Nothing is allocated.
 */
enum memfit_status mf_gguf_check_value(enum memfit_meta_type type, const uint8_t *p,
                                       uint64_t remaining, unsigned depth, const char *path,
                                       const char *what, uint64_t *out_size);

/* Encoded size of a value already checked by mf_gguf_check_value. */
uint64_t mf_gguf_value_size(enum memfit_meta_type type, const uint8_t *p);

#endif
