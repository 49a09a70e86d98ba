/*
 * Streaming GGUF (v3) and safetensors writers. The header (metadata and
 * tensor table with every offset) is computed from the declarations alone,
 * so it is written first and each tensor's bytes then go straight to their
 * place with pwrite: memory stays bounded by the header whatever the model
 * size. Padding between tensors is left as file holes (zeros). The file is
 * a temporary one beside the target, fsynced and renamed only on commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "format/gguf.h"
#include "core/json.h"
#include "format/set.h"

struct wmeta {
    char *key;
    enum memfit_meta_type type;
    uint8_t *enc; /* GGUF: the value's encoding; safetensors: the NUL-terminated string */
    size_t enc_len;
};

struct wtensor {
    char *name;
    enum memfit_type type;
    uint32_t n_dims;
    int64_t shape[MEMFIT_TENSOR_MAX_DIMS];
    uint64_t n_bytes, offset, written;
};

struct memfit_writer {
    enum memfit_format format;
    char *path, *tmp_path;
    int fd;
    bool laid_out, committed;
    uint32_t alignment;
    struct wmeta *meta;
    size_t n_meta, cap_meta;
    struct wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t file_end;
};

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static enum memfit_status buf_put(struct buf *b, const void *data, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return memfit_fail(MEMFIT_E_RANGE, "header larger than memory");
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *grown = memfit_realloc(b->p, cap);
        if (!grown)
            return MEMFIT_E_NOMEM;
        b->p = grown;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return MEMFIT_OK;
}

static enum memfit_status buf_u32(struct buf *b, uint32_t v)
{
    uint8_t e[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_put(b, e, 4);
}

static enum memfit_status buf_u64(struct buf *b, uint64_t v)
{
    uint8_t e[8];
    for (int i = 0; i < 8; i++)
        e[i] = (uint8_t)(v >> (8 * i));
    return buf_put(b, e, 8);
}

static enum memfit_status buf_str(struct buf *b, const char *s, size_t n)
{
    enum memfit_status st = buf_u64(b, n);
    return st == MEMFIT_OK ? buf_put(b, s, n) : st;
}

enum memfit_status memfit_writer_create(const char *path, enum memfit_format format,
                                        memfit_writer **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_writer_create: NULL argument");
    if (format != MEMFIT_FORMAT_GGUF && format != MEMFIT_FORMAT_SAFETENSORS)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: cannot write %s files (gguf or safetensors)",
                           path, memfit_format_name(format));
    memfit_writer *w = memfit_calloc_in(MEMFIT_ALLOC_FORMAT, 1, sizeof(*w));
    if (!w)
        return MEMFIT_E_NOMEM;
    w->fd = -1;
    w->format = format;
    w->alignment = MF_GGUF_DEFAULT_ALIGNMENT;
    w->path = memfit_strdup(path);
    w->tmp_path = memfit_asprintf("%s.tmp-XXXXXX", path);
    if (!w->path || !w->tmp_path) {
        memfit_writer_destroy(w);
        return MEMFIT_E_NOMEM;
    }
    w->fd = mkstemp(w->tmp_path);
    if (w->fd < 0) {
        enum memfit_status st =
            memfit_fail(errno == ENOSPC ? MEMFIT_E_NOSPACE : MEMFIT_E_IO,
                        "%s: cannot create a temporary file: %s", path, strerror(errno));
        memfit_free(w->tmp_path);
        w->tmp_path = NULL; /* nothing to remove */
        memfit_writer_destroy(w);
        return st;
    }
    (void)fchmod(w->fd, 0644);
    *out = w;
    return MEMFIT_OK;
}

void memfit_writer_destroy(memfit_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (!w->committed && w->tmp_path)
        unlink(w->tmp_path);
    for (size_t i = 0; i < w->n_meta; i++) {
        memfit_free(w->meta[i].key);
        memfit_free(w->meta[i].enc);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        memfit_free(w->tensors[i].name);
    memfit_free(w->meta);
    memfit_free(w->tensors);
    memfit_free(w->path);
    memfit_free(w->tmp_path);
    memfit_free(w);
}

/* Encodes a value the GGUF way, validating arrays' raw bytes like the reader does. */
static enum memfit_status encode_gguf_value(const memfit_writer *w, const char *key,
                                            const struct memfit_meta_value *v, struct buf *b)
{
    size_t fixed = mf_meta_scalar_bytes(v->type);
    if (fixed) {
        uint64_t bits = 0;
        switch (v->type) {
        case MEMFIT_META_F32: {
            float f = (float)v->v.f;
            uint32_t u32;
            memcpy(&u32, &f, 4);
            bits = u32;
            break;
        }
        case MEMFIT_META_F64:
            memcpy(&bits, &v->v.f, 8);
            break;
        case MEMFIT_META_I8:
        case MEMFIT_META_I16:
        case MEMFIT_META_I32:
        case MEMFIT_META_I64:
            bits = (uint64_t)v->v.i;
            break;
        case MEMFIT_META_BOOL:
            bits = v->v.u != 0;
            break;
        default:
            bits = v->v.u;
            break;
        }
        uint8_t e[8];
        for (int i = 0; i < 8; i++)
            e[i] = (uint8_t)(bits >> (8 * i));
        return buf_put(b, e, fixed);
    }
    if (v->type == MEMFIT_META_STRING) {
        if (!v->v.str.data && v->v.str.len)
            return memfit_fail(MEMFIT_E_MISUSE, "%s: %s: string without data", w->path, key);
        return buf_str(b, v->v.str.data, v->v.str.len);
    }
    if (v->type != MEMFIT_META_ARRAY)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: %s: unknown value type %d", w->path, key,
                           (int)v->type);
    if (!v->v.array.raw && v->v.array.raw_bytes)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: %s: array without data", w->path, key);
    size_t start = b->len;
    enum memfit_status st;
    if ((st = buf_u32(b, (uint32_t)v->v.array.elem_type)) != MEMFIT_OK ||
        (st = buf_u64(b, v->v.array.count)) != MEMFIT_OK ||
        (st = buf_put(b, v->v.array.raw, v->v.array.raw_bytes)) != MEMFIT_OK)
        return st;
    uint64_t size;
    st = mf_gguf_check_value(MEMFIT_META_ARRAY, b->p + start, b->len - start, 0, w->path, key,
                             &size);
    if (st == MEMFIT_OK && size != b->len - start)
        st = memfit_fail(MEMFIT_E_MISUSE, "%s: %s: array raw_bytes %llu, its elements take %llu",
                         w->path, key, (unsigned long long)v->v.array.raw_bytes,
                         (unsigned long long)(size - 12));
    return st;
}

enum memfit_status memfit_writer_set_meta(memfit_writer *w, const char *key,
                                          const struct memfit_meta_value *value)
{
    if (!w || !key || !value)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_writer_set_meta: NULL argument");
    if (w->laid_out)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: metadata set after the first tensor write",
                           w->path);
    if (!key[0])
        return memfit_fail(MEMFIT_E_MISUSE, "%s: empty metadata key", w->path);
    struct buf b = {0};
    enum memfit_status st;
    if (w->format == MEMFIT_FORMAT_SAFETENSORS) {
        if (value->type != MEMFIT_META_STRING)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: %s: safetensors metadata holds strings only, not %s", w->path,
                               key, memfit_meta_type_name(value->type));
        if (memchr(value->v.str.data, '\0', value->v.str.len))
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: %s: string holds a NUL byte", w->path,
                               key);
        uint8_t nul = 0;
        if ((st = buf_put(&b, value->v.str.data, value->v.str.len)) == MEMFIT_OK)
            st = buf_put(&b, &nul, 1);
    } else {
        if (strcmp(key, "general.alignment") == 0) {
            if (value->type != MEMFIT_META_U32 || value->v.u == 0 ||
                (value->v.u & (value->v.u - 1)) != 0)
                return memfit_fail(MEMFIT_E_RANGE,
                                   "%s: general.alignment must be a u32 power of two", w->path);
        }
        st = encode_gguf_value(w, key, value, &b);
    }
    if (st != MEMFIT_OK) {
        memfit_free(b.p);
        return st;
    }
    struct wmeta *m = NULL;
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            m = &w->meta[i];
    if (!m) {
        if (w->n_meta == w->cap_meta) {
            size_t cap = w->cap_meta ? w->cap_meta * 2 : 16;
            struct wmeta *grown = memfit_realloc(w->meta, cap * sizeof(*grown));
            if (!grown) {
                memfit_free(b.p);
                return MEMFIT_E_NOMEM;
            }
            w->meta = grown;
            w->cap_meta = cap;
        }
        char *k = memfit_strdup(key);
        if (!k) {
            memfit_free(b.p);
            return MEMFIT_E_NOMEM;
        }
        m = &w->meta[w->n_meta++];
        m->key = k;
    } else {
        memfit_free(m->enc);
    }
    m->type = value->type;
    m->enc = b.p;
    m->enc_len = b.len;
    if (w->format == MEMFIT_FORMAT_GGUF && strcmp(key, "general.alignment") == 0)
        w->alignment = (uint32_t)value->v.u;
    return MEMFIT_OK;
}

enum memfit_status memfit_writer_set_meta_string(memfit_writer *w, const char *key,
                                                 const char *value)
{
    if (!value)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_writer_set_meta_string: NULL value");
    struct memfit_meta_value v;
    memset(&v, 0, sizeof(v));
    v.type = MEMFIT_META_STRING;
    v.v.str.data = value;
    v.v.str.len = strlen(value);
    return memfit_writer_set_meta(w, key, &v);
}

enum memfit_status memfit_writer_add_tensor(memfit_writer *w, const char *name,
                                            enum memfit_type type, uint32_t n_dims,
                                            const int64_t *shape)
{
    if (!w || !name || (!shape && n_dims))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_writer_add_tensor: NULL argument");
    if (w->laid_out)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: tensor %s added after the first tensor write",
                           w->path, name);
    size_t nl = strlen(name);
    if (nl == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: empty tensor name", w->path);
    const struct memfit_type_info *info = memfit_type_get_info(type);
    if (!info)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: tensor %s: unknown type id %d", w->path, name,
                           (int)type);
    if (w->format == MEMFIT_FORMAT_GGUF) {
        if ((int)type >= 200)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s: type %s has no GGUF (ggml) type id", w->path, name,
                               info->name);
        if (nl >= MF_GGUF_MAX_NAME) {
            /* A known long name is stored shortened (memfit_gguf_short_name). */
            char short_name[MF_GGUF_MAX_NAME];
            if (!memfit_gguf_short_name(name, short_name, sizeof(short_name)))
                return memfit_fail(MEMFIT_E_RANGE,
                                   "%s: tensor %s: name of %zu bytes, GGUF (ggml) allows at "
                                   "most %d",
                                   w->path, name, nl, MF_GGUF_MAX_NAME - 1);
            return memfit_writer_add_tensor(w, short_name, type, n_dims, shape);
        }
        if (n_dims > 4)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s: %u dimensions, GGUF (ggml) allows at most 4",
                               w->path, name, n_dims);
    } else if (!mf_safetensors_dtype_name(type)) {
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: tensor %s: type %s cannot be stored in safetensors (it has no "
                           "quantized block types; write GGUF instead)",
                           w->path, name, info->name);
    }
    if (n_dims > MEMFIT_TENSOR_MAX_DIMS)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: tensor %s: %u dimensions, at most %d",
                           w->path, name, n_dims, MEMFIT_TENSOR_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n) || n > INT64_MAX)
            return memfit_fail(MEMFIT_E_RANGE, "%s: tensor %s: bad or overflowing shape", w->path,
                               name);
    }
    if (info->block_size > 1 && (n_dims == 0 || shape[n_dims - 1] % info->block_size != 0))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: innermost dimension is not a multiple of the %s "
                           "block size %u",
                           w->path, name, info->name, info->block_size);
    uint64_t n_bytes;
    enum memfit_status st = memfit_type_bytes(type, n, &n_bytes);
    if (st != MEMFIT_OK)
        return st;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return memfit_fail(MEMFIT_E_EXISTS, "%s: tensor %s added twice", w->path, name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        struct wtensor *grown = memfit_realloc(w->tensors, cap * sizeof(*grown));
        if (!grown)
            return MEMFIT_E_NOMEM;
        w->tensors = grown;
        w->cap_tensors = cap;
    }
    char *copy = memfit_strdup(name);
    if (!copy)
        return MEMFIT_E_NOMEM;
    struct wtensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof(*t));
    t->name = copy;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t i = 0; i < n_dims; i++)
        t->shape[i] = shape[i];
    t->n_bytes = n_bytes;
    return MEMFIT_OK;
}

static enum memfit_status write_all(memfit_writer *w, const void *data, size_t n, uint64_t at)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t k = pwrite(w->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return memfit_fail(errno == ENOSPC ? MEMFIT_E_NOSPACE : MEMFIT_E_IO,
                               "%s: write at offset %llu: %s", w->tmp_path, (unsigned long long)at,
                               k < 0 ? strerror(errno) : "short write");
        p += k;
        n -= (size_t)k;
        at += (uint64_t)k;
    }
    return MEMFIT_OK;
}

static uint64_t pad_to(uint64_t x, uint64_t a)
{
    return x + (a - x % a) % a;
}

static enum memfit_status layout_gguf(memfit_writer *w)
{
    struct buf b = {0};
    enum memfit_status st;
    uint64_t rel = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = rel; /* relative until the data section is known */
        if (__builtin_add_overflow(rel, pad_to(w->tensors[i].n_bytes, w->alignment), &rel))
            return memfit_fail(MEMFIT_E_RANGE, "%s: total size overflows", w->path);
    }
    if ((st = buf_put(&b, "GGUF", 4)) != MEMFIT_OK || (st = buf_u32(&b, 3)) != MEMFIT_OK ||
        (st = buf_u64(&b, w->n_tensors)) != MEMFIT_OK || (st = buf_u64(&b, w->n_meta)) != MEMFIT_OK)
        goto out;
    for (size_t i = 0; i < w->n_meta; i++) {
        const struct wmeta *m = &w->meta[i];
        if ((st = buf_str(&b, m->key, strlen(m->key))) != MEMFIT_OK ||
            (st = buf_u32(&b, (uint32_t)m->type)) != MEMFIT_OK ||
            (st = buf_put(&b, m->enc, m->enc_len)) != MEMFIT_OK)
            goto out;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct wtensor *t = &w->tensors[i];
        if ((st = buf_str(&b, t->name, strlen(t->name))) != MEMFIT_OK ||
            (st = buf_u32(&b, t->n_dims)) != MEMFIT_OK)
            goto out;
        for (uint32_t d = t->n_dims; d-- > 0;) /* outermost-first -> ggml order */
            if ((st = buf_u64(&b, (uint64_t)t->shape[d])) != MEMFIT_OK)
                goto out;
        if ((st = buf_u32(&b, (uint32_t)t->type)) != MEMFIT_OK ||
            (st = buf_u64(&b, t->offset)) != MEMFIT_OK)
            goto out;
    }
    uint64_t data_start = pad_to(b.len, w->alignment);
    static const uint8_t zeros[64];
    while (b.len < data_start && st == MEMFIT_OK) {
        size_t n = data_start - b.len;
        st = buf_put(&b, zeros, n > sizeof(zeros) ? sizeof(zeros) : n);
    }
    if (st != MEMFIT_OK || (st = write_all(w, b.p, b.len, 0)) != MEMFIT_OK)
        goto out;
    for (size_t i = 0; i < w->n_tensors; i++)
        w->tensors[i].offset += data_start;
    w->file_end = data_start + rel;
out:
    memfit_free(b.p);
    return st;
}

static int by_align_then_name(const void *a, const void *b)
{
    const struct wtensor *x = *(const struct wtensor *const *)a;
    const struct wtensor *y = *(const struct wtensor *const *)b;
    uint32_t sx = memfit_type_get_info(x->type)->type_size;
    uint32_t sy = memfit_type_get_info(y->type)->type_size;
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static enum memfit_status layout_safetensors(memfit_writer *w)
{
    enum memfit_status st = MEMFIT_OK;
    struct wtensor **order =
        memfit_malloc_in(MEMFIT_ALLOC_FORMAT, (w->n_tensors ? w->n_tensors : 1) * sizeof(*order));
    json_t *root = json_object();
    char *text = NULL;
    if (!order || !root) {
        st = MEMFIT_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        order[i] = &w->tensors[i];
    qsort(order, w->n_tensors, sizeof(*order), by_align_then_name);
    uint64_t rel = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        struct wtensor *t = order[i];
        json_t *shape = json_array();
        json_t *entry =
            json_pack("{s:s, s:o, s:[I, I]}", "dtype", mf_safetensors_dtype_name(t->type), "shape",
                      shape, "data_offsets", (json_int_t)rel, (json_int_t)(rel + t->n_bytes));
        if (!entry) {
            st = MEMFIT_E_NOMEM;
            goto out;
        }
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d])) != 0)
                st = MEMFIT_E_NOMEM;
        if (json_object_set_new(root, t->name, entry) != 0)
            st = MEMFIT_E_NOMEM;
        if (st != MEMFIT_OK)
            goto out;
        t->offset = rel;
        rel += t->n_bytes;
    }
    if (w->n_meta) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta) != 0) {
            st = MEMFIT_E_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < w->n_meta; i++) {
            mf_json_clear_alloc_failure();
            if (json_object_set_new(meta, w->meta[i].key,
                                    json_string((const char *)w->meta[i].enc)) != 0) {
                st = mf_json_alloc_failed()
                         ? MEMFIT_E_NOMEM
                         : memfit_fail(MEMFIT_E_FORMAT, "%s: metadata %s: not valid UTF-8", w->path,
                                       w->meta[i].key);
                goto out;
            }
        }
    }
    mf_json_clear_alloc_failure();
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text && mf_json_alloc_failed()) {
        st = MEMFIT_E_NOMEM;
        goto out;
    }
    if (!text) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: cannot encode the header (a name is not UTF-8?)",
                         w->path);
        goto out;
    }
    uint64_t n = strlen(text), padded = pad_to(n, 8);
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)(padded >> (8 * i));
    if ((st = write_all(w, len_le, 8, 0)) != MEMFIT_OK ||
        (st = write_all(w, text, n, 8)) != MEMFIT_OK ||
        (st = write_all(w, "        ", padded - n, 8 + n)) != MEMFIT_OK)
        goto out;
    for (size_t i = 0; i < w->n_tensors; i++)
        w->tensors[i].offset += 8 + padded;
    w->file_end = 8 + padded + rel;
out:
    memfit_free(text); /* jansson allocates through the wrapper (core/json.h) */
    json_decref(root);
    memfit_free(order);
    return st;
}

static enum memfit_status layout(memfit_writer *w)
{
    if (w->laid_out)
        return MEMFIT_OK;
    enum memfit_status st =
        w->format == MEMFIT_FORMAT_GGUF ? layout_gguf(w) : layout_safetensors(w);
    if (st == MEMFIT_OK)
        w->laid_out = true;
    return st;
}

enum memfit_status memfit_writer_write_tensor(memfit_writer *w, size_t index, uint64_t offset,
                                              const void *data, size_t n_bytes)
{
    if (!w || (!data && n_bytes))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_writer_write_tensor: NULL argument");
    if (w->committed || w->fd < 0)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: write after commit", w->path);
    if (index >= w->n_tensors)
        return memfit_fail(MEMFIT_E_RANGE, "%s: tensor index %zu beyond count %zu", w->path, index,
                           w->n_tensors);
    struct wtensor *t = &w->tensors[index];
    if (offset != t->written)
        return memfit_fail(
            MEMFIT_E_MISUSE, "%s: tensor %s: chunk at %llu, but %llu bytes were written so far",
            w->path, t->name, (unsigned long long)offset, (unsigned long long)t->written);
    if (n_bytes > t->n_bytes - t->written)
        return memfit_fail(MEMFIT_E_RANGE, "%s: tensor %s: %llu bytes past its %llu", w->path,
                           t->name, (unsigned long long)(t->written + n_bytes),
                           (unsigned long long)t->n_bytes);
    enum memfit_status st = layout(w);
    if (st != MEMFIT_OK)
        return st;
    st = write_all(w, data, n_bytes, t->offset + offset);
    if (st == MEMFIT_OK)
        t->written += n_bytes;
    return st;
}

enum memfit_status memfit_writer_commit(memfit_writer *w)
{
    if (!w)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_writer_commit: NULL writer");
    if (w->committed || w->fd < 0)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: committed twice", w->path);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (w->tensors[i].written != w->tensors[i].n_bytes)
            return memfit_fail(MEMFIT_E_MISUSE, "%s: tensor %s: %llu of %llu bytes written",
                               w->path, w->tensors[i].name,
                               (unsigned long long)w->tensors[i].written,
                               (unsigned long long)w->tensors[i].n_bytes);
    enum memfit_status st = layout(w);
    if (st != MEMFIT_OK)
        return st;
    if (ftruncate(w->fd, (off_t)w->file_end) != 0 || fsync(w->fd) != 0)
        return memfit_fail(errno == ENOSPC ? MEMFIT_E_NOSPACE : MEMFIT_E_IO, "%s: %s", w->tmp_path,
                           strerror(errno));
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0)
        return memfit_fail(MEMFIT_E_IO, "%s: close: %s", w->tmp_path, strerror(errno));
    if (rename(w->tmp_path, w->path) != 0)
        return memfit_fail(MEMFIT_E_IO, "rename %s to %s: %s", w->tmp_path, w->path,
                           strerror(errno));
    w->committed = true;
    /* Make the rename itself durable. */
    char *dir_copy = memfit_strdup(w->path);
    if (dir_copy) {
        int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        memfit_free(dir_copy);
    }
    return MEMFIT_OK;
}

/* Long components of known models' tensor names and their GGUF forms, in
 * the order they are tried (SAM's decoder names reach 73 bytes). */
static const char *const gguf_abbreviations[][2] = {
    {"cross_attn_token_to_image", "t2i"},
    {"cross_attn_image_to_token", "i2t"},
    {"final_attn_token_to_image", "final_t2i"},
    {"output_hypernetworks_mlps", "hyper_mlps"},
    {"iou_prediction_head", "iou_head"},
    {"positional_encoding_gaussian_matrix", "pe_gaussian"},
    {"mask_decoder.", "mask_dec."},
    {"prompt_encoder.", "prompt_enc."},
    {"transformer.", "tf."},
};

bool memfit_gguf_short_name(const char *name, char *buf, size_t size)
{
    char cur[512];
    if (!name || strlen(name) >= sizeof(cur) || size == 0)
        return false;
    snprintf(cur, sizeof(cur), "%s", name);
    for (size_t i = 0; i < sizeof(gguf_abbreviations) / sizeof(gguf_abbreviations[0]); i++) {
        if (strlen(cur) < MF_GGUF_MAX_NAME)
            break;
        const char *from = gguf_abbreviations[i][0], *to = gguf_abbreviations[i][1];
        char *at;
        while ((at = strstr(cur, from)) != NULL) {
            char tail[512];
            snprintf(tail, sizeof(tail), "%s", at + strlen(from));
            snprintf(at, sizeof(cur) - (size_t)(at - cur), "%s%s", to, tail);
        }
    }
    size_t n = strlen(cur);
    if (n >= MF_GGUF_MAX_NAME || n >= size)
        return false;
    memcpy(buf, cur, n + 1);
    return true;
}
