/*
 * The table of element types: one row per type with its block layout. This
 * is the single source of truth for sizes; kernels hang off the same ids.
 */
#include <strings.h>

#include "memfit/tensor.h"

static const struct memfit_type_info infos[] = {
    {MEMFIT_TYPE_F32, "f32", 1, 4, false},        {MEMFIT_TYPE_F16, "f16", 1, 2, false},
    {MEMFIT_TYPE_Q4_0, "q4_0", 32, 18, true},     {MEMFIT_TYPE_Q4_1, "q4_1", 32, 20, true},
    {MEMFIT_TYPE_Q5_0, "q5_0", 32, 22, true},     {MEMFIT_TYPE_Q5_1, "q5_1", 32, 24, true},
    {MEMFIT_TYPE_Q8_0, "q8_0", 32, 34, true},     {MEMFIT_TYPE_Q8_1, "q8_1", 32, 36, true},
    {MEMFIT_TYPE_Q2_K, "q2_k", 256, 84, true},    {MEMFIT_TYPE_Q3_K, "q3_k", 256, 110, true},
    {MEMFIT_TYPE_Q4_K, "q4_k", 256, 144, true},   {MEMFIT_TYPE_Q5_K, "q5_k", 256, 176, true},
    {MEMFIT_TYPE_Q6_K, "q6_k", 256, 210, true},   {MEMFIT_TYPE_Q8_K, "q8_k", 256, 292, true},
    {MEMFIT_TYPE_IQ4_NL, "iq4_nl", 32, 18, true}, {MEMFIT_TYPE_IQ4_XS, "iq4_xs", 256, 136, true},
    {MEMFIT_TYPE_I8, "i8", 1, 1, false},          {MEMFIT_TYPE_I16, "i16", 1, 2, false},
    {MEMFIT_TYPE_I32, "i32", 1, 4, false},        {MEMFIT_TYPE_I64, "i64", 1, 8, false},
    {MEMFIT_TYPE_F64, "f64", 1, 8, false},        {MEMFIT_TYPE_BF16, "bf16", 1, 2, false},
    {MEMFIT_TYPE_MXFP4, "mxfp4", 32, 17, true},   {MEMFIT_TYPE_U8, "u8", 1, 1, false},
    {MEMFIT_TYPE_BOOL, "bool", 1, 1, false},      {MEMFIT_TYPE_NF4, "nf4", 64, 32, true},
};

const struct memfit_type_info *memfit_type_get_info(enum memfit_type type)
{
    for (size_t i = 0; i < sizeof(infos) / sizeof(infos[0]); i++)
        if (infos[i].type == type)
            return &infos[i];
    return NULL;
}

enum memfit_status memfit_type_from_name(const char *name, enum memfit_type *out)
{
    for (size_t i = 0; i < sizeof(infos) / sizeof(infos[0]); i++) {
        if (strcasecmp(infos[i].name, name) == 0) {
            *out = infos[i].type;
            return MEMFIT_OK;
        }
    }
    return memfit_fail(MEMFIT_E_NOT_FOUND, "unknown element type '%s'", name);
}

enum memfit_status memfit_type_bytes(enum memfit_type type, uint64_t n_elements,
                                     uint64_t *out_bytes)
{
    const struct memfit_type_info *info = memfit_type_get_info(type);
    if (!info)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "unknown element type id %d", (int)type);
    if (n_elements % info->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%llu elements of %s: not a multiple of its block of %u",
                           (unsigned long long)n_elements, info->name, info->block_size);
    uint64_t bytes;
    if (__builtin_mul_overflow(n_elements / info->block_size, (uint64_t)info->type_size, &bytes))
        return memfit_fail(MEMFIT_E_RANGE, "%llu elements of %s: size overflows 64 bits",
                           (unsigned long long)n_elements, info->name);
    *out_bytes = bytes;
    return MEMFIT_OK;
}
