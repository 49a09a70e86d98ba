/*
 * memfit_vit_write_gguf: a DINOv2 model (any format, either naming) written
 * as a GGUF in another weight type, with the metadata that keeps its
 * interpolation default. Used to make quantized models for tests and
 * benchmarks, and by tools; streams one row at a time, so memory stays at a
 * row whatever the model size.
 */
#include <string.h>

#include "core/alloc.h"
#include "models/vit.h"

/* The type a tensor gets: 2-D weights the target, 4-D patch weights a float type, the rest F32. */
static enum memfit_type target_for(const struct memfit_tensor_info *t, enum memfit_type type)
{
    const struct memfit_type_info *ti = memfit_type_get_info(type);
    size_t len = strlen(t->name);
    bool weight = len > 7 && strcmp(t->name + len - 7, ".weight") == 0;
    int64_t inner = t->shape[t->n_dims ? t->n_dims - 1 : 0];
    if (!weight || t->n_dims < 2)
        return MEMFIT_TYPE_F32;
    if (t->n_dims == 2 && inner % ti->block_size == 0)
        return type;
    return ti->is_quantized ? MEMFIT_TYPE_F16 : type;
}

enum memfit_status memfit_vit_write_bytes(const memfit_tensors *set, enum memfit_type type,
                                          uint64_t *out_bytes)
{
    const struct memfit_type_info *ti = memfit_type_get_info(type);
    if (!ti)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "memfit_vit_write_bytes: unknown type %d",
                           (int)type);
    uint64_t total = 0;
    for (size_t i = 0; i < memfit_tensors_count(set); i++) {
        struct memfit_tensor_info t;
        uint64_t bytes;
        enum memfit_status st = memfit_tensors_get(set, i, &t);
        if (st == MEMFIT_OK)
            st = memfit_type_bytes(target_for(&t, type), t.n_elements, &bytes);
        if (st != MEMFIT_OK)
            return st;
        if (bytes > UINT64_MAX - total)
            return memfit_fail(MEMFIT_E_RANGE, "memfit_vit_write_bytes: size overflows");
        total += bytes;
    }
    *out_bytes = total;
    return MEMFIT_OK;
}

enum memfit_status memfit_vit_write_gguf(const memfit_vit *m, const char *dst_path,
                                         enum memfit_type type)
{
    const struct memfit_type_info *ti = memfit_type_get_info(type);
    uint8_t probe[64];
    float zeros[32] = {0};
    if (!ti || ti->block_size > 32 * 8 ||
        (ti->block_size <= 32 &&
         memfit_type_quantize_row(type, zeros, probe, ti->block_size) != MEMFIT_OK))
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "vit: cannot write weights as %s",
                           ti ? ti->name : "an unknown type");
    memfit_writer *w = NULL;
    enum memfit_status st = memfit_writer_create(dst_path, MEMFIT_FORMAT_GGUF, &w);
    if (st != MEMFIT_OK)
        return st;
    float *row = NULL;
    uint8_t *packed = NULL;
    size_t n = memfit_tensors_count(m->set);
    st = memfit_writer_set_meta_string(w, "general.architecture", "dinov2");
    if (st == MEMFIT_OK)
        st = memfit_writer_set_meta_string(w, MEMFIT_VIT_META_INTERPOLATION,
                                           memfit_vit_interpolation_name(m->info.interpolation));
    size_t max_inner = 0;
    for (size_t i = 0; i < n && st == MEMFIT_OK; i++) {
        struct memfit_tensor_info t;
        if ((st = memfit_tensors_get(m->set, i, &t)) != MEMFIT_OK)
            break;
        st = memfit_writer_add_tensor(w, t.name, target_for(&t, type), t.n_dims, t.shape);
        size_t inner = (size_t)t.shape[t.n_dims ? t.n_dims - 1 : 0];
        if (inner > max_inner)
            max_inner = inner;
    }
    if (st == MEMFIT_OK) {
        row = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (max_inner + 1) * sizeof(float));
        packed = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (max_inner + 1) * sizeof(float));
        if (!row || !packed)
            st = MEMFIT_E_NOMEM;
    }
    for (size_t i = 0; i < n && st == MEMFIT_OK; i++) {
        struct memfit_tensor_info t;
        if ((st = memfit_tensors_get(m->set, i, &t)) != MEMFIT_OK)
            break;
        enum memfit_type out_type = target_for(&t, type);
        uint64_t inner = (uint64_t)t.shape[t.n_dims ? t.n_dims - 1 : 0];
        uint64_t rows = inner ? t.n_elements / inner : 0;
        uint64_t in_row, out_row, offset = 0;
        if ((st = memfit_type_bytes(t.type, inner, &in_row)) != MEMFIT_OK ||
            (st = memfit_type_bytes(out_type, inner, &out_row)) != MEMFIT_OK)
            break;
        for (uint64_t r = 0; r < rows && st == MEMFIT_OK; r++) {
            st = memfit_type_dequantize_row(t.type, (const uint8_t *)t.data + r * in_row, row,
                                            inner);
            if (st == MEMFIT_OK)
                st = memfit_type_quantize_row(out_type, row, packed, inner);
            if (st == MEMFIT_OK)
                st = memfit_writer_write_tensor(w, i, offset, packed, (size_t)out_row);
            offset += out_row;
        }
        /* Converted: its source pages leave RSS and the page cache, so a
         * copy is written in the memory of its largest tensor. */
        memfit_tensors_release(m->set, i);
    }
    if (st == MEMFIT_OK)
        st = memfit_writer_commit(w);
    memfit_free(row);
    memfit_free(packed);
    memfit_writer_destroy(w);
    return st;
}
