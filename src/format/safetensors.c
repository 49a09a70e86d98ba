/*
 * safetensors reader: an 8-byte little-endian header length, a JSON header
 * (parsed with jansson) and the byte buffer. Applies the checks of the
 * reference Rust parser (safetensors `Metadata::validate`): header at most
 * 100 MB, tensors sorted by data_offsets covering the buffer exactly with no
 * hole or overlap, and byte length = shape product * dtype size.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/json.h"
#include "format/set.h"

#define MAX_HEADER_BYTES 100000000ull /* the reference parser's MAX_HEADER_SIZE */

struct dtype_name {
    const char *name;
    enum memfit_type type; /* -1: known but unsupported */
};

static const struct dtype_name dtypes[] = {
    {"F64", MEMFIT_TYPE_F64},   {"F32", MEMFIT_TYPE_F32}, {"F16", MEMFIT_TYPE_F16},
    {"BF16", MEMFIT_TYPE_BF16}, {"I64", MEMFIT_TYPE_I64}, {"I32", MEMFIT_TYPE_I32},
    {"I16", MEMFIT_TYPE_I16},   {"I8", MEMFIT_TYPE_I8},   {"U8", MEMFIT_TYPE_U8},
    {"BOOL", MEMFIT_TYPE_BOOL},
};

const char *mf_safetensors_dtype_name(enum memfit_type type)
{
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
        if (dtypes[i].type == type)
            return dtypes[i].name;
    return NULL;
}

struct entry {
    const char *name;
    enum memfit_type type;
    uint32_t n_dims;
    int64_t shape[MEMFIT_TENSOR_MAX_DIMS];
    uint64_t begin, end;
};

static int by_begin(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static enum memfit_status parse_entry(memfit_tensors *set, const char *name, json_t *obj,
                                      struct entry *e)
{
    if (!json_is_object(obj))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: header entry is not an object",
                           set->path, name);
    json_t *dtype = json_object_get(obj, "dtype");
    json_t *shape = json_object_get(obj, "shape");
    json_t *offsets = json_object_get(obj, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets) ||
        json_array_size(offsets) != 2)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: needs \"dtype\" (string), \"shape\" (array) and "
                           "\"data_offsets\" ([begin, end])",
                           set->path, name);
    const char *dn = json_string_value(dtype);
    bool found = false;
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        if (strcmp(dn, dtypes[i].name) == 0) {
            e->type = dtypes[i].type;
            found = true;
        }
    }
    if (!found) {
        if (strcmp(dn, "U16") == 0 || strcmp(dn, "U32") == 0 || strcmp(dn, "U64") == 0 ||
            strncmp(dn, "F8_", 3) == 0 || strcmp(dn, "C64") == 0 || strcmp(dn, "F4") == 0 ||
            strncmp(dn, "F6_", 3) == 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported",
                               set->path, name, dn);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: unknown dtype '%.40s'", set->path, name,
                           dn);
    }
    size_t n_dims = json_array_size(shape);
    if (n_dims > MEMFIT_TENSOR_MAX_DIMS)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: tensor %s: %zu dimensions, at most %d",
                           set->path, name, n_dims, MEMFIT_TENSOR_MAX_DIMS);
    e->n_dims = (uint32_t)n_dims;
    for (size_t i = 0; i < n_dims; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: shape[%zu] is not a non-negative integer", set->path,
                               name, i);
        e->shape[i] = (int64_t)json_integer_value(d);
    }
    json_t *b = json_array_get(offsets, 0), *en = json_array_get(offsets, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: data_offsets must be integers 0 <= begin <= end",
                           set->path, name);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    e->name = name;
    return MEMFIT_OK;
}

static enum memfit_status parse_metadata(memfit_tensors *set, json_t *meta)
{
    if (!json_is_object(meta))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: __metadata__ is not an object", set->path);
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value)
    {
        if (!json_is_string(value))
            return memfit_fail(MEMFIT_E_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                               set->path, key);
        size_t len = json_string_length(value);
        char *copy = memfit_malloc_in(MEMFIT_ALLOC_FORMAT, len + 1);
        if (!copy)
            return MEMFIT_E_NOMEM;
        memcpy(copy, json_string_value(value), len);
        copy[len] = '\0';
        struct memfit_meta_value v;
        memset(&v, 0, sizeof(v));
        v.type = MEMFIT_META_STRING;
        v.v.str.data = copy;
        v.v.str.len = len;
        enum memfit_status st = mf_set_add_meta(set, key, strlen(key), &v, copy);
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

static enum memfit_status parse_header(memfit_tensors *set, json_t *root, uint64_t data_start)
{
    if (!json_is_object(root))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: header is not a JSON object", set->path);
    size_t n = json_object_size(root);
    struct entry *entries = memfit_calloc_in(MEMFIT_ALLOC_FORMAT, n ? n : 1, sizeof(*entries));
    if (!entries)
        return MEMFIT_E_NOMEM;
    size_t n_entries = 0;
    enum memfit_status st = MEMFIT_OK;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "__metadata__") == 0)
            st = parse_metadata(set, value);
        else
            st = parse_entry(set, key, value, &entries[n_entries++]);
        if (st != MEMFIT_OK)
            goto out;
    }
    qsort(entries, n_entries, sizeof(*entries), by_begin);
    uint64_t buffer_bytes = set->file_bytes - data_start, prev_end = 0;
    for (size_t i = 0; i < n_entries; i++) {
        struct entry *e = &entries[i];
        if (e->begin != prev_end) {
            st = memfit_fail(
                MEMFIT_E_FORMAT, "%s: tensor %s: data_offsets begin %llu, expected %llu (%s)",
                set->path, e->name, (unsigned long long)e->begin, (unsigned long long)prev_end,
                e->begin > prev_end ? "a hole before it" : "it overlaps another");
            goto out;
        }
        if (e->end > buffer_bytes) {
            st = memfit_fail(
                MEMFIT_E_FORMAT, "%s: tensor %s: data_offsets end %llu beyond the %llu-byte buffer",
                set->path, e->name, (unsigned long long)e->end, (unsigned long long)buffer_bytes);
            goto out;
        }
        st = mf_set_add_tensor(set, e->name, strlen(e->name), e->type, e->n_dims, e->shape,
                               data_start + e->begin, e->end - e->begin);
        if (st != MEMFIT_OK)
            goto out;
        prev_end = e->end;
    }
    if (prev_end != buffer_bytes)
        st = memfit_fail(MEMFIT_E_FORMAT,
                         "%s: tensors cover %llu of the %llu data bytes (file not fully covered)",
                         set->path, (unsigned long long)prev_end, (unsigned long long)buffer_bytes);
out:
    memfit_free(entries);
    return st;
}

enum memfit_status mf_safetensors_parse(memfit_tensors *set)
{
    enum memfit_status need = mf_set_need(set, 8, "the header length");
    if (need != MEMFIT_OK)
        return need;
    if (set->map_bytes < 8)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %zu bytes, too short for a safetensors header",
                           set->path, set->map_bytes);
    uint64_t n = mf_le64(set->map);
    if (n > MAX_HEADER_BYTES)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: header length %llu over the limit %llu", set->path,
                           (unsigned long long)n, MAX_HEADER_BYTES);
    if (n > set->file_bytes - 8)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: header length %llu beyond file size %llu",
                           set->path, (unsigned long long)n, (unsigned long long)set->file_bytes);
    if ((need = mf_set_need(set, 8 + n, "the JSON header")) != MEMFIT_OK)
        return need;
    const char *text = (const char *)set->map + 8;
    size_t i = 0;
    while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i == n || text[i] != '{')
        return memfit_fail(MEMFIT_E_FORMAT, "%s: header does not start with '{'", set->path);
    json_error_t err;
    mf_json_clear_alloc_failure();
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err);
    /* jansson can lose an allocation failure (a hashtable that could not
     * grow) and hand back an object missing entries: any failure is NOMEM. */
    if (mf_json_alloc_failed()) {
        json_decref(root);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory parsing the header", set->path);
    }
    if (!root)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: header JSON at byte %d: %s", set->path,
                           err.position, err.text);
    enum memfit_status st = parse_header(set, root, 8 + n);
    json_decref(root);
    if (st != MEMFIT_OK)
        return st;
    return mf_set_finish(set, true);
}
