/*
 * memfit tensor: element types and their block layouts.
 *
 * Type ids are ggml's (`enum ggml_type`): they are written into GGUF files
 * and never change. NF4 (bitsandbytes' 4-bit NormalFloat) has no GGUF id;
 * it only lives in safetensors files and gets an id outside ggml's range.
 */
#ifndef MEMFIT_TENSOR_H
#define MEMFIT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

enum memfit_type {
    MEMFIT_TYPE_F32 = 0,
    MEMFIT_TYPE_F16 = 1,
    MEMFIT_TYPE_Q4_0 = 2,
    MEMFIT_TYPE_Q4_1 = 3,
    MEMFIT_TYPE_Q5_0 = 6,
    MEMFIT_TYPE_Q5_1 = 7,
    MEMFIT_TYPE_Q8_0 = 8,
    MEMFIT_TYPE_Q8_1 = 9,
    MEMFIT_TYPE_Q2_K = 10,
    MEMFIT_TYPE_Q3_K = 11,
    MEMFIT_TYPE_Q4_K = 12,
    MEMFIT_TYPE_Q5_K = 13,
    MEMFIT_TYPE_Q6_K = 14,
    MEMFIT_TYPE_Q8_K = 15,
    MEMFIT_TYPE_IQ4_NL = 20,
    MEMFIT_TYPE_IQ4_XS = 23,
    MEMFIT_TYPE_I8 = 24,
    MEMFIT_TYPE_I16 = 25,
    MEMFIT_TYPE_I32 = 26,
    MEMFIT_TYPE_I64 = 27,
    MEMFIT_TYPE_F64 = 28,
    MEMFIT_TYPE_BF16 = 30,
    MEMFIT_TYPE_MXFP4 = 39,
    /* Not ggml types: never written to GGUF. */
    MEMFIT_TYPE_U8 = 200,
    MEMFIT_TYPE_BOOL = 201,
    MEMFIT_TYPE_NF4 = 202,
};

/* Static facts about a type: a block of `block_size` elements takes
 * `type_size` bytes. */
struct memfit_type_info {
    enum memfit_type type;
    const char *name; /* lower case, as in file names: "q4_k", "f16" */
    uint32_t block_size;
    uint32_t type_size;
    bool is_quantized;
};

/* The facts of `type`, or NULL for an id memfit does not know. */
MEMFIT_API const struct memfit_type_info *memfit_type_get_info(enum memfit_type type);

/* The type named `name` (case-insensitive, "Q4_K" or "q4_k"); E_NOT_FOUND otherwise. */
MEMFIT_API enum memfit_status memfit_type_from_name(const char *name, enum memfit_type *out);

/*
 * Bytes taken by `n_elements` of `type`. E_FORMAT when n is not a multiple
 * of the block size, E_RANGE on overflow, E_UNSUPPORTED for an unknown type.
 */
MEMFIT_API enum memfit_status memfit_type_bytes(enum memfit_type type, uint64_t n_elements,
                                                uint64_t *out_bytes);

#ifdef __cplusplus
}
#endif

#endif
