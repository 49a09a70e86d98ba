/*
 * bitsandbytes' NF4 layout read from a tensor set: the packed codes, the
 * absmax (plain or double-quantized) and the JSON quant state that
 * Linear4bit._save_to_state_dict writes beside each weight (reference:
 * formats-and-protocols.md section 3.3). The result points into the set's
 * mapping, so an NF4 model runs as stored.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "format/set.h"

#define NAME_MAX_LEN 400

/* The tensor `name``suffix`; *found false (and OK) when absent. */
static enum memfit_status sibling(const memfit_tensors *set, const char *name, const char *suffix,
                                  struct memfit_tensor_info *t, bool *found)
{
    char full[NAME_MAX_LEN + 64];
    snprintf(full, sizeof(full), "%s%s", name, suffix);
    *found = memfit_tensors_find(set, full, t, NULL) == MEMFIT_OK;
    memfit_clear_error();
    return MEMFIT_OK;
}

/* A tensor that must be `type` with exactly n elements. */
static enum memfit_status expect(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                 enum memfit_type type, uint64_t n)
{
    if (t->type != type || t->n_elements != n)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: %s with %llu elements, expected %s "
                           "with %llu",
                           memfit_tensors_path(set), t->name,
                           memfit_type_get_info(t->type) ? memfit_type_get_info(t->type)->name
                                                         : "unknown",
                           (unsigned long long)t->n_elements, memfit_type_get_info(type)->name,
                           (unsigned long long)n);
    return MEMFIT_OK;
}

static enum memfit_status json_u32(const memfit_tensors *set, const char *what, json_t *root,
                                   const char *key, uint32_t *out)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 20)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: \"%s\": expected an integer 1..%u",
                           memfit_tensors_path(set), what, key, 1u << 20);
    *out = (uint32_t)json_integer_value(v);
    return MEMFIT_OK;
}

/* quant_type, blocksize, shape, and the nested fields from the JSON state. */
static enum memfit_status read_state(const memfit_tensors *set, const struct memfit_tensor_info *t,
                                     struct memfit_nf4_matrix *m)
{
    mf_json_clear_alloc_failure();
    json_error_t err;
    json_t *root = json_loadb(t->data, (size_t)t->n_bytes, 0, &err);
    if (!root)
        return mf_json_alloc_failed() ? MEMFIT_E_NOMEM
                                      : memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: not JSON (%s)",
                                                    memfit_tensors_path(set), t->name, err.text);
    enum memfit_status st = MEMFIT_OK;
    const char *qt = json_string_value(json_object_get(root, "quant_type"));
    json_t *shape = json_object_get(root, "shape");
    if (!qt || strcmp(qt, "nf4") != 0)
        st = memfit_fail(qt && strcmp(qt, "fp4") == 0 ? MEMFIT_E_UNSUPPORTED : MEMFIT_E_FORMAT,
                         "%s: tensor %s: quant_type \"%s\" (memfit runs nf4)",
                         memfit_tensors_path(set), t->name, qt ? qt : "(missing)");
    if (st == MEMFIT_OK)
        st = json_u32(set, t->name, root, "blocksize", &m->blocksize);
    if (st == MEMFIT_OK &&
        (!json_is_array(shape) || json_array_size(shape) != 2 ||
         !json_is_integer(json_array_get(shape, 0)) || !json_is_integer(json_array_get(shape, 1)) ||
         json_integer_value(json_array_get(shape, 0)) < 1 ||
         json_integer_value(json_array_get(shape, 1)) < 1 ||
         json_integer_value(json_array_get(shape, 0)) > (json_int_t)1 << 32 ||
         json_integer_value(json_array_get(shape, 1)) > (json_int_t)1 << 32))
        st = memfit_fail(MEMFIT_E_FORMAT,
                         "%s: tensor %s: \"shape\": expected [rows, cols] (a 2-D weight)",
                         memfit_tensors_path(set), t->name);
    if (st == MEMFIT_OK) {
        m->rows = (uint64_t)json_integer_value(json_array_get(shape, 0));
        m->cols = (uint64_t)json_integer_value(json_array_get(shape, 1));
    }
    json_t *nested = json_object_get(root, "nested_blocksize");
    if (st == MEMFIT_OK && nested) {
        m->double_quant = true;
        st = json_u32(set, t->name, root, "nested_blocksize", &m->nested_blocksize);
        json_t *off = json_object_get(root, "nested_offset");
        if (st == MEMFIT_OK && (!json_is_number(off) || !isfinite(json_number_value(off))))
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: \"nested_offset\": expected a number",
                             memfit_tensors_path(set), t->name);
        if (st == MEMFIT_OK)
            m->offset = (float)json_number_value(off);
    }
    json_decref(root);
    return st;
}

/* The file's quant_map must be NF4's table (a reader with another table would compute garbage). */
static enum memfit_status check_quant_map(const memfit_tensors *set,
                                          const struct memfit_tensor_info *t)
{
    enum memfit_status st = expect(set, t, MEMFIT_TYPE_F32, 16);
    if (st != MEMFIT_OK)
        return st;
    const float *codes = memfit_nf4_codebook();
    for (int i = 0; i < 16; i++) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
        if (!(fabsf(v - codes[i]) <= 1e-6f))
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s: entry %d is %g, not NF4's %g (another 4-bit code "
                               "table, which memfit does not run)",
                               memfit_tensors_path(set), t->name, i, (double)v, (double)codes[i]);
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_nf4(const memfit_tensors *set, const char *name,
                                      struct memfit_nf4_matrix *out)
{
    if (!set || !name || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_nf4: NULL argument");
    if (strlen(name) > NAME_MAX_LEN)
        return memfit_fail(MEMFIT_E_RANGE, "memfit_tensors_nf4: name of %zu bytes", strlen(name));
    const char *path = memfit_tensors_path(set);
    struct memfit_tensor_info w, state, absmax, t;
    bool found;
    sibling(set, name, ".quant_state.bitsandbytes__nf4", &state, &found);
    if (!found) {
        sibling(set, name, ".quant_state.bitsandbytes__fp4", &state, &found);
        if (found)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s is bitsandbytes FP4; memfit runs NF4 only", path,
                               name);
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: tensor %s has no NF4 quant state", path, name);
    }
    struct memfit_nf4_matrix m;
    memset(&m, 0, sizeof(m));
    enum memfit_status st =
        state.type == MEMFIT_TYPE_U8 && state.data
            ? read_state(set, &state, &m)
            : memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: expected U8 JSON", path, state.name);
    if (st != MEMFIT_OK)
        return st;
    uint64_t n;
    if (__builtin_mul_overflow(m.rows, m.cols, &n) || n > (uint64_t)1 << 40)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: shape %llu x %llu is too large", path,
                           name, (unsigned long long)m.rows, (unsigned long long)m.cols);
    if (memfit_tensors_find(set, name, &w, NULL) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s is missing (its quant state is there)",
                           path, name);
    if ((st = expect(set, &w, MEMFIT_TYPE_U8, (n + 1) / 2)) != MEMFIT_OK)
        return st;
    uint64_t n_blocks = (n + m.blocksize - 1) / m.blocksize;
    sibling(set, name, ".absmax", &absmax, &found);
    if (!found)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s.absmax is missing", path, name);
    st = expect(set, &absmax, m.double_quant ? MEMFIT_TYPE_U8 : MEMFIT_TYPE_F32, n_blocks);
    if (st == MEMFIT_OK && m.double_quant) {
        uint64_t n_nested = (n_blocks + m.nested_blocksize - 1) / m.nested_blocksize;
        sibling(set, name, ".nested_absmax", &t, &found);
        st = found ? expect(set, &t, MEMFIT_TYPE_F32, n_nested)
                   : memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s.nested_absmax is missing", path,
                                 name);
        m.nested_absmax = t.data;
        if (st == MEMFIT_OK) {
            sibling(set, name, ".nested_quant_map", &t, &found);
            st = found ? expect(set, &t, MEMFIT_TYPE_F32, 256)
                       : memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s.nested_quant_map is missing",
                                     path, name);
            m.nested_map = t.data;
        }
    }
    if (st == MEMFIT_OK) {
        sibling(set, name, ".quant_map", &t, &found);
        if (found)
            st = check_quant_map(set, &t);
    }
    if (st != MEMFIT_OK)
        return st;
    m.codes = w.data;
    m.absmax = absmax.data;
    if ((st = memfit_nf4_matrix_check(&m)) != MEMFIT_OK)
        return memfit_fail(st, "%s: tensor %s: %s", path, name, memfit_last_error());
    *out = m;
    return MEMFIT_OK;
}
