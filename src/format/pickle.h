/*
 * A minimal, safe pickle reader for PyTorch state dicts (the `data.pkl`
 * record of a torch.save zip). It never executes anything: it builds plain
 * values (None, bool, int, float, str, tuple, list, dict) and recognizes a
 * short allow-list of globals (collections.OrderedDict,
 * torch._utils._rebuild_tensor(_v2), torch._utils._rebuild_parameter and the
 * torch.*Storage classes); any other global is an E_UNSUPPORTED error naming
 * it. Stack size, memo size, object count and nesting are bounded.
 */
#ifndef MF_FORMAT_PICKLE_H
#define MF_FORMAT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "memfit/format.h"

/* A tensor found in the state dict; strings are valid during the callback only. */
struct mf_pickle_tensor {
    const char *name; /* nested dict keys joined with '.' */
    enum memfit_type type;
    uint32_t n_dims;
    int64_t shape[MEMFIT_TENSOR_MAX_DIMS];
    int64_t stride[MEMFIT_TENSOR_MAX_DIMS]; /* in elements */
    int64_t storage_offset;                 /* in elements */
    const char *storage_key;                /* the record data/<key> */
    uint64_t storage_numel;                 /* elements of the storage */
};

typedef enum memfit_status (*mf_pickle_tensor_fn)(void *ctx, const struct mf_pickle_tensor *t);

/*
 * Runs the pickle in [data, data + len) and calls `fn` for each tensor of the
 * result, in order. The result must be a dict; nested dicts are flattened
 * ("model" -> {"w": T} gives "model.w"), integer keys are written in
 * decimal, and values that are neither tensors nor dicts (epoch numbers,
 * lists, None) are skipped. `path` names the file in messages.
 */
enum memfit_status mf_pickle_load_state_dict(const uint8_t *data, size_t len, const char *path,
                                             mf_pickle_tensor_fn fn, void *ctx);

#endif
