/*
 * A tensor's shape as text for error messages ("[384, 3, 14, 14]"), shared
 * by the model loaders so every "shape X, expected Y" reads the same.
 */
#ifndef MF_MODELS_SHAPE_H
#define MF_MODELS_SHAPE_H

#include <stddef.h>

#include "memfit/format.h"
#include "memfit/tensor.h"

/* Writes "[d0, d1, ...]" (outermost first) into buf, truncated to size. */
void mf_shape_text(const struct memfit_tensor_info *t, char *buf, size_t size);

/* E_FORMAT "PATH: tensor NAME: shape [..], expected EXPECTED". */
enum memfit_status mf_shape_error(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                  const char *expected);

/* A weight matrix in place: `rows` rows of `cols` elements of `type`. */
struct vit_mat {
    enum memfit_type type;
    const void *data;
    size_t row_bytes;
    uint32_t rows;
    uint32_t cols;
};

/*
 * The parameters a vision loader converts to float (those not stored as
 * aligned F32) share one buffer. The loader runs twice: the first pass
 * (counting) only counts their floats, the second converts them into it.
 */
struct mf_float_pass {
    bool counting;
    size_t n_floats;
    float *next;
};

/*
 * Runs load(loader) counting, allocates *floats (MEMFIT_ALLOC_MODEL) for
 * what it counted (NULL when nothing), and runs it again converting into
 * them; `pass` is the loader's. *floats is the caller's to free, also on
 * failure. The first failure of either pass, or E_NOMEM.
 */
enum memfit_status mf_model_load_floats(enum memfit_status (*load)(void *loader), void *loader,
                                        struct mf_float_pass *pass, float **floats);

/*
 * The vision loaders' two kinds of parameter, from a tensor found in `set`:
 * mf_model_vec: a vector of n floats (any shape of n elements): in place
 *   when stored as aligned F32; else, when pass->counting, n is added to
 *   pass->n_floats and *out is NULL; else it is converted into pass->next
 *   (which advances) and *converted_bytes grows.
 * mf_model_mat: a matrix of `rows` rows of `cols` elements (a 2-D tensor,
 *   or with any_dims any shape [rows, ...] of rows * cols elements) whose
 *   type has a matmul kernel and whose rows are whole blocks.
 * E_FORMAT naming the file, the tensor and the shapes.
 */
enum memfit_status mf_model_vec(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                uint64_t n, struct mf_float_pass *pass, uint64_t *converted_bytes,
                                const float **out);
enum memfit_status mf_model_mat(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                uint64_t rows, uint64_t cols, bool any_dims, struct vit_mat *out);

#endif
