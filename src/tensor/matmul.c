/*
 * Matrix-vector and matrix-matrix products on top of the row dot products:
 * the activations are converted once to the weight type's dot type, then
 * every weight row is dotted with every activation row. Rows stay in the
 * caller's layout (a mapped file's tensor can be passed as is). Splitting
 * rows across threads is the caller's job for now.
 */
#include "core/alloc.h"
#include "tensor/kernels.h"

/* Checks the shapes and finds the kernels; fills the activation row size. */
static enum memfit_status plan(enum memfit_type type, uint64_t n, uint64_t n_cols,
                               const struct mf_type_traits **out_t, size_t *out_act_row,
                               size_t *out_work)
{
    enum memfit_type act_type;
    enum memfit_status st = memfit_type_dot_type(type, &act_type);
    if (st != MEMFIT_OK)
        return st;
    const struct memfit_type_info *info = memfit_type_get_info(type);
    const struct memfit_type_info *act = memfit_type_get_info(act_type);
    if (n % info->block_size != 0 || n % act->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "matmul: row of %llu %s elements: not a multiple of %u",
                           (unsigned long long)n, info->name,
                           info->block_size > act->block_size ? info->block_size : act->block_size);
    uint64_t act_row, work;
    if (memfit_type_bytes(act_type, n, &act_row) != MEMFIT_OK ||
        __builtin_mul_overflow(act_row, n_cols, &work) || work > SIZE_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "matmul: %llu activations of %llu elements overflow",
                           (unsigned long long)n_cols, (unsigned long long)n);
    *out_t = mf_type_traits(type);
    *out_act_row = (size_t)act_row;
    /* F32 activations are used in place. */
    *out_work = act_type == MEMFIT_TYPE_F32 ? 0 : (size_t)work;
    return MEMFIT_OK;
}

enum memfit_status memfit_matmul_work_bytes(enum memfit_type type, uint64_t n, uint64_t n_cols,
                                            size_t *out_bytes)
{
    const struct mf_type_traits *t = NULL;
    size_t act_row = 0, work = 0;
    enum memfit_status st = plan(type, n, n_cols, &t, &act_row, &work);
    if (st == MEMFIT_OK)
        *out_bytes = work;
    return st;
}

enum memfit_status memfit_matmul(enum memfit_type type, const void *w, uint64_t n_rows, uint64_t n,
                                 const float *x, uint64_t n_cols, float *y, void *work,
                                 size_t work_bytes)
{
    const struct mf_type_traits *t = NULL;
    size_t act_row = 0, need = 0;
    enum memfit_status st = plan(type, n, n_cols, &t, &act_row, &need);
    if (st != MEMFIT_OK)
        return st;
    uint64_t w_row;
    st = memfit_type_bytes(type, n, &w_row);
    if (st != MEMFIT_OK)
        return st;
    if (work && work_bytes < need)
        return memfit_fail(MEMFIT_E_MISUSE, "matmul: workspace of %zu bytes, %zu needed",
                           work_bytes, need);
    void *owned = NULL;
    if (need && !work) {
        owned = memfit_malloc_in(MEMFIT_ALLOC_TENSOR, need);
        if (!owned)
            return MEMFIT_E_NOMEM;
        work = owned;
    }
    const uint8_t *acts = (const uint8_t *)x;
    if (need) {
        const struct mf_type_traits *at = mf_type_traits(t->vec_dot_type);
        for (uint64_t c = 0; c < n_cols; c++)
            at->from_float(x + c * n, (uint8_t *)work + c * act_row, (size_t)n);
        acts = work;
    }
    const uint8_t *wb = w;
    if (t->vec_dot_rows_cols) { /* vec_dot's values, each row unpacked once for 8 columns */
        for (uint64_t c0 = 0; c0 < n_cols; c0 += 8) {
            const void *cols[8];
            size_t nc = n_cols - c0 < 8 ? (size_t)(n_cols - c0) : 8;
            for (size_t c = 0; c < nc; c++)
                cols[c] = acts + (c0 + c) * act_row;
            t->vec_dot_rows_cols((size_t)n, wb, (size_t)w_row, cols, nc, y + c0 * n_rows,
                                 (size_t)n_rows, (size_t)n_rows);
        }
        memfit_free(owned);
        return MEMFIT_OK;
    }
    /* Weight rows outside: each is streamed from memory once, however many columns. */
    for (uint64_t r = 0; r < n_rows; r++)
        for (uint64_t c = 0; c < n_cols; c++)
            y[c * n_rows + r] = t->vec_dot((size_t)n, wb + r * w_row, acts + c * act_row);
    memfit_free(owned);
    return MEMFIT_OK;
}
