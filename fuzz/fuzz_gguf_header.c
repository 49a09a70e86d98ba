/*
 * libFuzzer target for header-only GGUF sets (memfit_tensors_open_header):
 * the input is the head of a file whose size it also chooses (its last byte
 * adds KiB), so the "need more bytes" path and the bounds against the whole
 * file's size are both reached. An opened set is walked like a caller does.
 */
#include <stddef.h>
#include <stdint.h>

#include "format/set.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t file_bytes = (uint64_t)size + (size ? (uint64_t)data[size - 1] * 1024 : 0);
    memfit_tensors *set = NULL;
    uint64_t need = 0;
    if (memfit_tensors_open_header(data, size, file_bytes, MEMFIT_FORMAT_GGUF, "fuzz", &set,
                                   &need) != MEMFIT_OK ||
        !set) {
        if (!set && need && (need <= size || need > file_bytes))
            __builtin_trap(); /* a need must lie past the head and within the file */
        return 0;
    }
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < memfit_tensors_count(set); i++) {
        struct memfit_tensor_info t;
        memfit_tensors_get(set, i, &t);
        if (t.data || t.file_offset + t.n_bytes > file_bytes)
            __builtin_trap();
        sink ^= t.file_offset;
    }
    for (size_t i = 0; i < memfit_tensors_meta_count(set); i++) {
        const char *key;
        struct memfit_meta_value v, e;
        memfit_tensors_meta_get(set, i, &key, &v);
        if (v.type == MEMFIT_META_STRING && v.v.str.len)
            sink ^= (uint8_t)v.v.str.data[v.v.str.len - 1];
        uint64_t cursor = 0, n = 0;
        while (memfit_meta_array_next(&v, &cursor, &e) && n++ < 1000)
            if (e.type == MEMFIT_META_STRING && e.v.str.len)
                sink ^= (uint8_t)e.v.str.data[0];
    }
    (void)sink;
    memfit_tensors_close(set);
    return 0;
}
