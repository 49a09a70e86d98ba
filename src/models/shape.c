/*
 * What the model loaders share: a tensor's shape as text for their error
 * messages, and the checked views of vectors and matrices.
 */
#include <stdio.h>

#include "core/alloc.h"

#include "models/shape.h"

void mf_shape_text(const struct memfit_tensor_info *t, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < t->n_dims && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "[",
                                 (long long)t->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

enum memfit_status mf_shape_error(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                  const char *expected)
{
    char got[128];
    mf_shape_text(t, got, sizeof(got));
    return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: shape %s, expected %s",
                       memfit_tensors_path(set), t->name, got, expected);
}

enum memfit_status mf_model_load_floats(enum memfit_status (*load)(void *loader), void *loader,
                                        struct mf_float_pass *pass, float **floats)
{
    pass->counting = true;
    pass->n_floats = 0;
    enum memfit_status st = load(loader);
    if (st != MEMFIT_OK)
        return st;
    if (pass->n_floats) {
        *floats = memfit_malloc_in(MEMFIT_ALLOC_MODEL, pass->n_floats * sizeof(float));
        if (!*floats)
            return MEMFIT_E_NOMEM;
    }
    pass->counting = false;
    pass->next = *floats;
    return load(loader);
}

enum memfit_status mf_model_vec(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                uint64_t n, struct mf_float_pass *pass, uint64_t *converted_bytes,
                                const float **out)
{
    if (t->n_elements != n) {
        char exp[64];
        snprintf(exp, sizeof(exp), "%llu elements", (unsigned long long)n);
        return mf_shape_error(set, t, exp);
    }
    if (t->type == MEMFIT_TYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return MEMFIT_OK;
    }
    if (pass->counting) {
        pass->n_floats += n;
        *out = NULL;
        return MEMFIT_OK;
    }
    enum memfit_status st = memfit_type_dequantize_row(t->type, t->data, pass->next, n);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "%s: tensor %s: %s", memfit_tensors_path(set), t->name,
                           memfit_last_error());
    *out = pass->next;
    pass->next += n;
    *converted_bytes += n * sizeof(float);
    return MEMFIT_OK;
}

enum memfit_status mf_model_mat(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                uint64_t rows, uint64_t cols, bool any_dims, struct vit_mat *out)
{
    if ((!any_dims && t->n_dims != 2) || t->n_dims < 1 || t->shape[0] != (int64_t)rows ||
        t->n_elements != rows * cols) {
        char exp[64];
        snprintf(exp, sizeof(exp), any_dims ? "%llu x %llu elements" : "[%llu, %llu]",
                 (unsigned long long)rows, (unsigned long long)cols);
        return mf_shape_error(set, t, exp);
    }
    enum memfit_type dot;
    const struct memfit_type_info *ti = memfit_type_get_info(t->type);
    if (!ti || memfit_type_dot_type(t->type, &dot) != MEMFIT_OK) {
        memfit_clear_error();
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: type %s has no matmul kernel",
                           memfit_tensors_path(set), t->name, ti ? ti->name : "unknown");
    }
    const struct memfit_type_info *di = memfit_type_get_info(dot);
    if (cols % ti->block_size != 0 || cols % di->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: rows of %llu elements: not a multiple of the %s block",
                           memfit_tensors_path(set), t->name, (unsigned long long)cols, ti->name);
    uint64_t row_bytes;
    enum memfit_status st = memfit_type_bytes(t->type, cols, &row_bytes);
    if (st != MEMFIT_OK)
        return st;
    out->type = t->type;
    out->data = t->data;
    out->row_bytes = (size_t)row_bytes;
    out->rows = (uint32_t)rows;
    out->cols = (uint32_t)cols;
    return MEMFIT_OK;
}
