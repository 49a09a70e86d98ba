/*
 * The body the format fuzz targets share: opens the input as an in-memory
 * tensor set of the given format (forced, so every input reaches that
 * parser) and, when it opens, reads every tensor and metadata entry the way
 * a caller would.
 */
#ifndef MF_FUZZ_TENSORS_H
#define MF_FUZZ_TENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format/set.h"

static inline int fuzz_tensors(const uint8_t *data, size_t size, enum memfit_format format)
{
    struct memfit_tensors_options opts;
    memfit_tensors_options_default(&opts);
    opts.format = format;
    memfit_tensors *set = NULL;
    if (mf_tensors_open_memory(data, size, "fuzz", &opts, &set) != MEMFIT_OK)
        return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < memfit_tensors_count(set); i++) {
        struct memfit_tensor_info t;
        memfit_tensors_get(set, i, &t);
        memfit_tensors_find(set, t.name, NULL, NULL);
        if (t.n_bytes)
            sink ^= ((const uint8_t *)t.data)[0] ^ ((const uint8_t *)t.data)[t.n_bytes - 1];
    }
    for (size_t i = 0; i < memfit_tensors_meta_count(set); i++) {
        const char *key;
        struct memfit_meta_value v, e;
        memfit_tensors_meta_get(set, i, &key, &v);
        memfit_tensors_meta_find(set, key, NULL);
        if (v.type == MEMFIT_META_STRING && v.v.str.len)
            sink ^= (uint8_t)v.v.str.data[v.v.str.len - 1];
        uint64_t cursor = 0, n = 0;
        while (memfit_meta_array_next(&v, &cursor, &e) && n++ < 1000)
            if (e.type == MEMFIT_META_STRING && e.v.str.len)
                sink ^= (uint8_t)e.v.str.data[0];
        if (v.type == MEMFIT_META_ARRAY && v.v.array.count)
            memfit_meta_array_get(&v, v.v.array.count - 1, &e);
    }
    (void)sink;
    memfit_tensors_close(set);
    return 0;
}

#endif
