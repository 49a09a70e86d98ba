/*
 * GGUF reader (v2 and v3, little-endian): header, key/values, tensor infos
 * and the aligned data section. Follows ggml's gguf.cpp checks: every count
 * and length is checked for overflow and against the bytes that remain
 * before anything is allocated, so a 10 GB string length fails at once.
 * Allocation grows with the entries actually present, never with a count
 * taken from the file. Tensor data is not touched.
 */
#include <stdio.h>
#include <string.h>

#include "format/gguf.h"
#include "format/set.h"

/* Smallest encoded key/value (empty key, type, 1-byte value) and tensor info. */
#define MIN_KV_BYTES          (8 + 4 + 1)
#define MIN_TENSOR_INFO_BYTES (8 + 4 + 4 + 8)

/*
 * mf_gguf_check_value where only the first `avail` of the `remaining` bytes
 * are at hand (a header-only set): a value that is well-formed so far but
 * runs past `avail` sets *need (bytes from p that must be at hand) and fails.
 */
static enum memfit_status check_value(enum memfit_meta_type type, const uint8_t *p, uint64_t avail,
                                      uint64_t remaining, unsigned depth, const char *path,
                                      const char *what, uint64_t *out_size, uint64_t *need);

enum memfit_status mf_gguf_check_value(enum memfit_meta_type type, const uint8_t *p,
                                       uint64_t remaining, unsigned depth, const char *path,
                                       const char *what, uint64_t *out_size)
{
    uint64_t need = 0;
    return check_value(type, p, remaining, remaining, depth, path, what, out_size, &need);
}

/* Fails when [0, n) of the value is not at hand, recording n in *need. */
#define AT_HAND(n)                                                                                 \
    do {                                                                                           \
        if ((n) > avail) {                                                                         \
            *need = (n);                                                                           \
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: value cut at the end of the head read",   \
                               path, what);                                                        \
        }                                                                                          \
    } while (0)

static enum memfit_status check_value(enum memfit_meta_type type, const uint8_t *p, uint64_t avail,
                                      uint64_t remaining, unsigned depth, const char *path,
                                      const char *what, uint64_t *out_size, uint64_t *need)
{
    size_t fixed = mf_meta_scalar_bytes(type);
    if (fixed) {
        if (remaining < fixed)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: %s value truncated (%llu bytes left)",
                               path, what, memfit_meta_type_name(type),
                               (unsigned long long)remaining);
        AT_HAND(fixed);
        if (type == MEMFIT_META_BOOL && p[0] > 1)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: bool value %u is not 0 or 1", path, what,
                               p[0]);
        *out_size = fixed;
        return MEMFIT_OK;
    }
    if (type == MEMFIT_META_STRING) {
        if (remaining < 8)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: string length truncated", path, what);
        AT_HAND(8);
        uint64_t len = mf_le64(p);
        if (len > remaining - 8)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: %s: string length %llu beyond the %llu bytes left", path, what,
                               (unsigned long long)len, (unsigned long long)(remaining - 8));
        *out_size = 8 + len;
        return MEMFIT_OK;
    }
    if (type != MEMFIT_META_ARRAY)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: unknown value type %u", path, what,
                           (unsigned)type);
    if (depth >= MF_GGUF_MAX_NESTING)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: arrays nested deeper than %d", path, what,
                           MF_GGUF_MAX_NESTING);
    if (remaining < 12)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: array header truncated", path, what);
    AT_HAND(12);
    enum memfit_meta_type et = (enum memfit_meta_type)mf_le32(p);
    uint64_t count = mf_le64(p + 4);
    uint64_t left = remaining - 12;
    size_t efixed = mf_meta_scalar_bytes(et);
    if (efixed) {
        if (count > left / efixed)
            return memfit_fail(
                MEMFIT_E_FORMAT, "%s: %s: array of %llu %s beyond the %llu bytes left", path, what,
                (unsigned long long)count, memfit_meta_type_name(et), (unsigned long long)left);
        if (et == MEMFIT_META_BOOL) {
            AT_HAND(12 + count);
            for (uint64_t i = 0; i < count; i++)
                if (p[12 + i] > 1)
                    return memfit_fail(MEMFIT_E_FORMAT,
                                       "%s: %s: bool element %llu is %u, not 0 or 1", path, what,
                                       (unsigned long long)i, p[12 + i]);
        }
        *out_size = 12 + count * efixed;
        return MEMFIT_OK;
    }
    if (et != MEMFIT_META_STRING && et != MEMFIT_META_ARRAY)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: unknown array element type %u", path, what,
                           (unsigned)et);
    /* Each string needs 8 bytes and each array 12: bound the loop first. */
    uint64_t min_elem = et == MEMFIT_META_STRING ? 8 : 12;
    if (count > left / min_elem)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: array of %llu %s beyond the %llu bytes left",
                           path, what, (unsigned long long)count, memfit_meta_type_name(et),
                           (unsigned long long)left);
    uint64_t pos = 12;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t size;
        uint64_t sub_need = 0;
        enum memfit_status st =
            check_value(et, p + pos, avail > pos ? avail - pos : 0, remaining - pos, depth + 1,
                        path, what, &size, &sub_need);
        if (st != MEMFIT_OK) {
            if (sub_need)
                *need = pos + sub_need;
            return st;
        }
        pos += size;
    }
    *out_size = pos;
    return MEMFIT_OK;
}
#undef AT_HAND

uint64_t mf_gguf_value_size(enum memfit_meta_type type, const uint8_t *p)
{
    size_t fixed = mf_meta_scalar_bytes(type);
    if (fixed)
        return fixed;
    if (type == MEMFIT_META_STRING)
        return 8 + mf_le64(p);
    enum memfit_meta_type et = (enum memfit_meta_type)mf_le32(p);
    uint64_t count = mf_le64(p + 4);
    size_t efixed = mf_meta_scalar_bytes(et);
    if (efixed)
        return 12 + count * efixed;
    uint64_t pos = 12;
    for (uint64_t i = 0; i < count; i++)
        pos += mf_gguf_value_size(et, p + pos);
    return pos;
}

/* Reads the head at hand, [0, len); `file_len` is the whole file's size
 * (larger than len only in a header-only set). */
struct reader {
    const uint8_t *base;
    uint64_t len, pos, file_len;
    const char *path;
    memfit_tensors *set;
};

static enum memfit_status need(struct reader *r, uint64_t n, const char *what)
{
    if (n > r->len - r->pos && n <= r->file_len - r->pos)
        return mf_set_need(r->set, r->pos + n, what);
    if (n > r->len - r->pos)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: %s truncated at offset %llu (%llu bytes needed, %llu left)",
                           r->path, what, (unsigned long long)r->pos, (unsigned long long)n,
                           (unsigned long long)(r->len - r->pos));
    return MEMFIT_OK;
}

static enum memfit_status read_u32(struct reader *r, const char *what, uint32_t *out)
{
    enum memfit_status st = need(r, 4, what);
    if (st == MEMFIT_OK) {
        *out = mf_le32(r->base + r->pos);
        r->pos += 4;
    }
    return st;
}

static enum memfit_status read_u64(struct reader *r, const char *what, uint64_t *out)
{
    enum memfit_status st = need(r, 8, what);
    if (st == MEMFIT_OK) {
        *out = mf_le64(r->base + r->pos);
        r->pos += 8;
    }
    return st;
}

/* A string's bytes (not copied), its length checked against what remains and `max_len`. */
static enum memfit_status read_str(struct reader *r, const char *what, uint64_t max_len,
                                   const char **out, uint64_t *out_len)
{
    uint64_t len;
    enum memfit_status st = read_u64(r, what, &len);
    if (st != MEMFIT_OK)
        return st;
    if (len > r->file_len - r->pos)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: %s: length %llu at offset %llu beyond the %llu bytes left", r->path,
                           what, (unsigned long long)len, (unsigned long long)(r->pos - 8),
                           (unsigned long long)(r->file_len - r->pos));
    if (len > max_len)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: length %llu over the limit %llu", r->path,
                           what, (unsigned long long)len, (unsigned long long)max_len);
    if (len > r->len - r->pos)
        return mf_set_need(r->set, r->pos + len, what);
    *out = (const char *)r->base + r->pos;
    *out_len = len;
    r->pos += len;
    return MEMFIT_OK;
}

static enum memfit_status read_kv(memfit_tensors *set, struct reader *r, uint64_t index,
                                  uint32_t *alignment)
{
    const char *key;
    uint64_t key_len;
    char what[64];
    snprintf(what, sizeof(what), "key %llu", (unsigned long long)index);
    enum memfit_status st = read_str(r, what, 65535, &key, &key_len);
    if (st != MEMFIT_OK)
        return st;
    if (key_len == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: key %llu is empty", set->path,
                           (unsigned long long)index);
    if (memchr(key, '\0', key_len))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: key %llu contains a NUL byte", set->path,
                           (unsigned long long)index);
    char keyname[160];
    snprintf(keyname, sizeof(keyname), "key '%.*s'", (int)(key_len > 120 ? 120 : key_len), key);
    uint32_t type;
    if ((st = read_u32(r, keyname, &type)) != MEMFIT_OK)
        return st;
    uint64_t size;
    const uint8_t *p = r->base + r->pos;
    uint64_t more = 0;
    st = check_value((enum memfit_meta_type)type, p, r->len - r->pos, r->file_len - r->pos, 0,
                     set->path, keyname, &size, &more);
    if (st != MEMFIT_OK) {
        if (more)
            mf_set_need(set, r->pos + more, keyname);
        return st;
    }
    /* The value is kept as a view into the head: all of it must be at hand. */
    if (size > r->len - r->pos)
        return mf_set_need(set, r->pos + size, keyname);
    r->pos += size;
    struct memfit_meta_value v;
    memset(&v, 0, sizeof(v));
    v.type = (enum memfit_meta_type)type;
    if (mf_meta_scalar_bytes(v.type)) {
        mf_meta_decode_scalar(v.type, p, &v);
    } else if (v.type == MEMFIT_META_STRING) {
        v.v.str.len = mf_le64(p);
        v.v.str.data = (const char *)p + 8;
    } else {
        v.v.array.elem_type = (enum memfit_meta_type)mf_le32(p);
        v.v.array.count = mf_le64(p + 4);
        v.v.array.raw = p + 12;
        v.v.array.raw_bytes = size - 12;
    }
    if (key_len == strlen("general.alignment") && memcmp(key, "general.alignment", key_len) == 0) {
        if (v.type != MEMFIT_META_U32)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: general.alignment has type %s, must be u32",
                               set->path, memfit_meta_type_name(v.type));
        if (v.v.u == 0 || (v.v.u & (v.v.u - 1)) != 0)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: general.alignment %llu is not a non-zero power of two",
                               set->path, (unsigned long long)v.v.u);
        *alignment = (uint32_t)v.v.u;
    }
    return mf_set_add_meta(set, key, key_len, &v, NULL);
}

static enum memfit_status read_tensor_info(memfit_tensors *set, struct reader *r, uint64_t index,
                                           uint64_t *out_offset)
{
    const char *name;
    uint64_t name_len;
    char what[64];
    snprintf(what, sizeof(what), "tensor %llu name", (unsigned long long)index);
    /* ggml limits names to 63 bytes; longer ones (up to a sane bound) are read anyway. */
    enum memfit_status st = read_str(r, what, 4096, &name, &name_len);
    if (st != MEMFIT_OK)
        return st;
    int nl = (int)(name_len > 120 ? 120 : name_len);
    char tname[160];
    snprintf(tname, sizeof(tname), "tensor %.*s", nl, name);
    uint32_t n_dims;
    if ((st = read_u32(r, tname, &n_dims)) != MEMFIT_OK)
        return st;
    if (n_dims > MEMFIT_TENSOR_MAX_DIMS)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: n_dims %u over the limit %d", set->path, tname,
                           n_dims, MEMFIT_TENSOR_MAX_DIMS);
    if (n_dims > 4)
        memfit_log(MEMFIT_LOG_WARN, "%s: %s: %u dimensions (ggml reads at most 4)", set->path,
                   tname, n_dims);
    int64_t shape[MEMFIT_TENSOR_MAX_DIMS];
    for (uint32_t i = 0; i < n_dims; i++) {
        uint64_t ne;
        if ((st = read_u64(r, tname, &ne)) != MEMFIT_OK)
            return st;
        if (ne > (uint64_t)INT64_MAX)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: dimension %u is %llu (over INT64_MAX)",
                               set->path, tname, i, (unsigned long long)ne);
        shape[n_dims - 1 - i] = (int64_t)ne; /* ggml order -> outermost first */
    }
    uint32_t type;
    uint64_t offset;
    if ((st = read_u32(r, tname, &type)) != MEMFIT_OK ||
        (st = read_u64(r, tname, &offset)) != MEMFIT_OK)
        return st;
    if (type >= 200 || !memfit_type_get_info((enum memfit_type)type))
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: %s: unknown ggml type id %u", set->path,
                           tname, type);
    /* The file offset is only known once the data section is found: store the
     * relative offset now (bounds are checked by the caller afterwards). */
    *out_offset = offset;
    return mf_set_add_tensor(set, name, name_len, (enum memfit_type)type, n_dims, shape, 0,
                             UINT64_MAX);
}

enum memfit_status mf_gguf_parse(memfit_tensors *set, const struct memfit_tensors_options *opts)
{
    struct reader r = {set->map, set->map_bytes, 0, set->file_bytes, set->path, set};
    enum memfit_status st = need(&r, 4, "magic");
    if (st != MEMFIT_OK)
        return st;
    if (memcmp(r.base, "GGUF", 4) != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: bad magic %02x %02x %02x %02x (expected GGUF)",
                           set->path, r.base[0], r.base[1], r.base[2], r.base[3]);
    r.pos = 4;
    uint32_t version;
    if ((st = read_u32(&r, "version", &version)) != MEMFIT_OK)
        return st;
    if ((version & 0xFFFF) == 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: version field 0x%08x: a big-endian GGUF file (not supported)",
                           set->path, version);
    if (version == 1)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: GGUF v1 is no longer supported", set->path);
    if (version > 3)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: GGUF version %u (this reads 2 and 3)",
                           set->path, version);
    set->version = version;
    uint64_t n_tensors, n_kv;
    if ((st = read_u64(&r, "tensor count", &n_tensors)) != MEMFIT_OK ||
        (st = read_u64(&r, "key/value count", &n_kv)) != MEMFIT_OK)
        return st;
    uint64_t left = r.file_len - r.pos;
    if (n_kv > left / MIN_KV_BYTES)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: key/value count %llu cannot fit in the %llu bytes left", set->path,
                           (unsigned long long)n_kv, (unsigned long long)left);
    if (n_tensors > left / MIN_TENSOR_INFO_BYTES)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor count %llu cannot fit in the %llu bytes left", set->path,
                           (unsigned long long)n_tensors, (unsigned long long)left);
    uint32_t alignment = MF_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++)
        if ((st = read_kv(set, &r, i, &alignment)) != MEMFIT_OK)
            return st;
    /* Relative offsets are kept in the tensors' offset field until the data
     * section is known; reading them needs no allocation of our own. */
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint64_t rel = 0;
        if ((st = read_tensor_info(set, &r, i, &rel)) != MEMFIT_OK)
            return st;
        set->tensors[set->n_tensors - 1].offset = rel;
    }
    uint64_t data_start = r.pos + (alignment - r.pos % alignment) % alignment;
    if (n_tensors > 0 && data_start > r.file_len)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: data section at offset %llu beyond file size %llu",
                           set->path, (unsigned long long)data_start,
                           (unsigned long long)r.file_len);
    uint64_t expected = 0;
    bool warned = false;
    for (size_t i = 0; i < set->n_tensors; i++) {
        struct mf_tensor *t = &set->tensors[i];
        uint64_t rel = t->offset, start, end;
        if (rel % alignment != 0)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: offset %llu is not a multiple of the alignment %u",
                               set->path, t->name, (unsigned long long)rel, alignment);
        if (__builtin_add_overflow(data_start, rel, &start) ||
            __builtin_add_overflow(start, t->n_bytes, &end) || end > r.file_len)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: data [%llu, +%llu) beyond file size %llu", set->path,
                               t->name, (unsigned long long)(data_start + rel),
                               (unsigned long long)t->n_bytes, (unsigned long long)r.file_len);
        t->offset = start;
        if (rel != expected && !warned) {
            if (opts->strict)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: tensor %s: offset %llu, ggml expects %llu (the padded "
                                   "sum of the tensors before it)",
                                   set->path, t->name, (unsigned long long)rel,
                                   (unsigned long long)expected);
            memfit_log(MEMFIT_LOG_WARN,
                       "%s: tensor %s: offset %llu, ggml expects %llu (the padded sum of the "
                       "tensors before it); llama.cpp would reject this file",
                       set->path, t->name, (unsigned long long)rel, (unsigned long long)expected);
            warned = true;
        }
        uint64_t padded = t->n_bytes + (alignment - t->n_bytes % alignment) % alignment;
        expected = rel + padded;
    }
    return mf_set_finish(set, true);
}
