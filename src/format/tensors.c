/*
 * The tensor set: maps a file read-only once, detects its format, hands it
 * to the format's parser and answers lookups. Everything the parsers find
 * goes through mf_set_add_tensor / mf_set_add_meta so that the bounds and
 * overflow checks, and the messages, are the same for every format.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"
#include "core/alloc.h"
#include "format/set.h"

const char *memfit_format_name(enum memfit_format format)
{
    switch (format) {
    case MEMFIT_FORMAT_GGUF:
        return "gguf";
    case MEMFIT_FORMAT_SAFETENSORS:
        return "safetensors";
    case MEMFIT_FORMAT_PTH:
        return "pth";
    default:
        return "unknown";
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

enum memfit_format memfit_format_from_path(const char *path)
{
    if (!path)
        return MEMFIT_FORMAT_UNKNOWN;
    if (ends_with(path, ".gguf"))
        return MEMFIT_FORMAT_GGUF;
    if (ends_with(path, ".safetensors"))
        return MEMFIT_FORMAT_SAFETENSORS;
    if (ends_with(path, ".pth") || ends_with(path, ".pt") || ends_with(path, ".bin"))
        return MEMFIT_FORMAT_PTH;
    return MEMFIT_FORMAT_UNKNOWN;
}

void memfit_tensors_options_default(struct memfit_tensors_options *opts)
{
    memset(opts, 0, sizeof(*opts));
}

/* The format by magic bytes, then by name. */
static enum memfit_format detect(const uint8_t *p, size_t len, const char *name)
{
    if (len >= 4 && memcmp(p, "GGUF", 4) == 0)
        return MEMFIT_FORMAT_GGUF;
    if (len >= 4 && memcmp(p, "PK\x03\x04", 4) == 0)
        return MEMFIT_FORMAT_PTH;
    /* safetensors before pickles: a header length like 0x0280 starts 80 02 too. */
    if (len >= 9) {
        uint8_t c = p[8];
        if (c == '{' || c == ' ' || c == '\t' || c == '\n' || c == '\r')
            return MEMFIT_FORMAT_SAFETENSORS;
    }
    if (len >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5) /* a bare pickle: legacy torch.save */
        return MEMFIT_FORMAT_PTH;
    return memfit_format_from_path(name);
}

static void free_set(memfit_tensors *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n_tensors; i++)
        memfit_free(set->tensors[i].name);
    for (size_t i = 0; i < set->n_meta; i++) {
        memfit_free(set->meta[i].key);
        memfit_free(set->meta[i].owned);
    }
    memfit_free(set->tensors);
    memfit_free(set->tensor_by_name);
    memfit_free(set->meta);
    memfit_free(set->meta_by_key);
    for (size_t i = 0; i < set->n_regions; i++)
        mf_unmap_anon(set->regions[i].buf, set->regions[i].bytes);
    memfit_free(set->regions);
    memfit_free(set->owned_head);
    for (size_t i = 0; i < set->n_pieces; i++)
        memfit_free(set->pieces[i].bytes);
    memfit_free(set->pieces);
    for (size_t i = 0; i < set->n_parts; i++)
        memfit_tensors_close(set->parts[i]);
    memfit_free(set->parts);
    if (set->owns_map && set->map)
        munmap((void *)set->map, set->map_bytes);
    memfit_free(set->path);
    memfit_free(set);
}

static enum memfit_status parse(memfit_tensors *set, const struct memfit_tensors_options *opts)
{
    struct memfit_tensors_options defaults;
    if (!opts) {
        memfit_tensors_options_default(&defaults);
        opts = &defaults;
    }
    enum memfit_format format = opts->format;
    if (format == MEMFIT_FORMAT_UNKNOWN)
        format = detect(set->map, set->map_bytes, set->path);
    set->format = format;
    switch (format) {
    case MEMFIT_FORMAT_GGUF:
        return mf_gguf_parse(set, opts);
    case MEMFIT_FORMAT_SAFETENSORS:
        return mf_safetensors_parse(set);
    case MEMFIT_FORMAT_PTH:
        return mf_pth_parse(set);
    default:
        if (set->map_bytes >= 4)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: unknown file format (first bytes %02x %02x %02x %02x; "
                               "expected GGUF, safetensors or a PyTorch zip)",
                               set->path, set->map[0], set->map[1], set->map[2], set->map[3]);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: unknown file format (%zu bytes)", set->path,
                           set->map_bytes);
    }
}

static memfit_tensors *new_set(const char *name)
{
    memfit_tensors *set = memfit_calloc_in(MEMFIT_ALLOC_FORMAT, 1, sizeof(*set));
    if (!set)
        return NULL;
    set->path = memfit_strdup(name ? name : "(memory)");
    if (!set->path) {
        memfit_free(set);
        return NULL;
    }
    return set;
}

enum memfit_status mf_tensors_open_memory(const void *buf, size_t len, const char *name,
                                          const struct memfit_tensors_options *opts,
                                          memfit_tensors **out)
{
    if (!out || (!buf && len))
        return memfit_fail(MEMFIT_E_MISUSE, "mf_tensors_open_memory: NULL argument");
    memfit_tensors *set = new_set(name);
    if (!set)
        return MEMFIT_E_NOMEM;
    set->map = buf;
    set->map_bytes = len;
    set->file_bytes = len;
    enum memfit_status st = parse(set, opts);
    if (st != MEMFIT_OK) {
        free_set(set);
        return st;
    }
    *out = set;
    return MEMFIT_OK;
}

enum memfit_status mf_set_need(memfit_tensors *set, uint64_t end, const char *what)
{
    if (!set->header_only || end > set->file_bytes || end <= set->map_bytes)
        return MEMFIT_OK;
    set->need_bytes = end;
    return memfit_fail(MEMFIT_E_FORMAT, "%s: %s ends at byte %llu, past the %zu-byte head read",
                       set->path, what, (unsigned long long)end, set->map_bytes);
}

enum memfit_status memfit_tensors_open_header(const void *head, size_t head_len,
                                              uint64_t file_bytes, enum memfit_format format,
                                              const char *name, memfit_tensors **out,
                                              uint64_t *out_need_bytes)
{
    if (!out || !out_need_bytes || (!head && head_len))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_open_header: NULL argument");
    if (head_len > file_bytes)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "memfit_tensors_open_header: %zu head bytes of a %llu-byte file",
                           head_len, (unsigned long long)file_bytes);
    memfit_tensors *set = new_set(name);
    if (!set)
        return MEMFIT_E_NOMEM;
    set->owned_head = memfit_malloc_in(MEMFIT_ALLOC_FORMAT, head_len ? head_len : 1);
    if (!set->owned_head) {
        free_set(set);
        return MEMFIT_E_NOMEM;
    }
    if (head_len)
        memcpy(set->owned_head, head, head_len);
    set->map = set->owned_head;
    set->map_bytes = head_len;
    set->file_bytes = file_bytes;
    set->header_only = true;
    if (format == MEMFIT_FORMAT_UNKNOWN) {
        /* The magic needs 9 bytes (safetensors' first JSON byte). */
        if (head_len < 9 && file_bytes > head_len) {
            free_set(set);
            *out = NULL;
            *out_need_bytes = file_bytes < 9 ? file_bytes : 9;
            return MEMFIT_OK;
        }
        format = detect(set->map, head_len, set->path);
    }
    if (format == MEMFIT_FORMAT_PTH) {
        enum memfit_status st = memfit_fail(
            MEMFIT_E_UNSUPPORTED,
            "%s: a .pth (zip) header cannot be read from its first bytes alone", set->path);
        free_set(set);
        return st;
    }
    struct memfit_tensors_options opts;
    memfit_tensors_options_default(&opts);
    opts.format = format;
    enum memfit_status st = parse(set, &opts);
    if (st != MEMFIT_OK && set->need_bytes > head_len) {
        uint64_t need = set->need_bytes;
        free_set(set);
        memfit_clear_error();
        *out = NULL;
        *out_need_bytes = need;
        return MEMFIT_OK;
    }
    if (st != MEMFIT_OK) {
        free_set(set);
        return st;
    }
    *out = set;
    *out_need_bytes = 0;
    return MEMFIT_OK;
}

enum memfit_status mf_set_add_piece(memfit_tensors *set, uint64_t offset, const uint8_t *bytes,
                                    size_t len, uint8_t **out_copy)
{
    struct mf_piece *grown =
        memfit_realloc(set->pieces, (set->n_pieces + 1) * sizeof(*set->pieces));
    if (!grown)
        return MEMFIT_E_NOMEM;
    set->pieces = grown;
    uint8_t *copy = memfit_calloc_in(MEMFIT_ALLOC_FORMAT, len ? len : 1, 1);
    if (!copy)
        return MEMFIT_E_NOMEM;
    if (bytes && len)
        memcpy(copy, bytes, len);
    set->pieces[set->n_pieces++] = (struct mf_piece){offset, copy, len};
    if (out_copy)
        *out_copy = copy;
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_open_pth_header(const void *tail, size_t tail_len,
                                                  const void *record, size_t record_len,
                                                  uint64_t record_offset, uint64_t file_bytes,
                                                  const char *name, memfit_tensors **out,
                                                  struct memfit_pth_need *out_need)
{
    if (!out || !out_need || (!tail && tail_len) || (!record && record_len))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_open_pth_header: NULL argument");
    if (tail_len > file_bytes ||
        (record && (record_offset > file_bytes || record_len > file_bytes - record_offset)))
        return memfit_fail(MEMFIT_E_MISUSE,
                           "memfit_tensors_open_pth_header: %zu tail bytes, %zu record bytes at "
                           "%llu of a %llu-byte file",
                           tail_len, record_len, (unsigned long long)record_offset,
                           (unsigned long long)file_bytes);
    memfit_tensors *set = new_set(name);
    if (!set)
        return MEMFIT_E_NOMEM;
    set->format = MEMFIT_FORMAT_PTH;
    set->file_bytes = file_bytes;
    set->header_only = true;
    struct memfit_pth_need need = {0, 0, 0};
    enum memfit_status st =
        mf_pth_parse_header(set, tail, tail_len, record, record_len, record_offset, &need);
    if (st == MEMFIT_E_FORMAT && (need.tail_bytes > tail_len || need.record_bytes)) {
        free_set(set);
        memfit_clear_error();
        *out = NULL;
        *out_need = need;
        return MEMFIT_OK;
    }
    if (st != MEMFIT_OK) {
        free_set(set);
        return st;
    }
    *out = set;
    memset(out_need, 0, sizeof(*out_need));
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_write_standin(const memfit_tensors *set, const char *path)
{
    if (!set || !path)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_write_standin: NULL argument");
    if (!set->header_only)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: not a header-only set", set->path);
    if (set->file_bytes > (uint64_t)INT64_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "%s: %llu bytes", path,
                           (unsigned long long)set->file_bytes);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    struct mf_piece head = {0, (uint8_t *)set->map, set->map_bytes};
    const struct mf_piece *pieces = set->n_pieces ? set->pieces : &head;
    size_t n = set->n_pieces ? set->n_pieces : 1;
    enum memfit_status st = MEMFIT_OK;
    for (size_t i = 0; st == MEMFIT_OK && i < n; i++) {
        for (size_t done = 0; st == MEMFIT_OK && done < pieces[i].len;) {
            ssize_t w = pwrite(fd, pieces[i].bytes + done, pieces[i].len - done,
                               (off_t)(pieces[i].offset + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                st = memfit_fail(errno == ENOSPC ? MEMFIT_E_NOSPACE : MEMFIT_E_IO, "%s: %s", path,
                                 w < 0 ? strerror(errno) : "short write");
            else
                done += (size_t)w;
        }
    }
    if (st == MEMFIT_OK && ftruncate(fd, (off_t)set->file_bytes) != 0)
        st = memfit_fail(MEMFIT_E_IO, "%s: cannot extend to %llu bytes: %s", path,
                         (unsigned long long)set->file_bytes, strerror(errno));
    if (close(fd) != 0 && st == MEMFIT_OK)
        st = memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    if (st != MEMFIT_OK)
        unlink(path);
    return st;
}

enum memfit_status memfit_tensors_open(const char *path, const struct memfit_tensors_options *opts,
                                       memfit_tensors **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_open: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", path,
                           strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return memfit_fail(MEMFIT_E_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: empty file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return memfit_fail(MEMFIT_E_RANGE, "%s: file too large to map", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return memfit_fail(MEMFIT_E_IO, "%s: mmap of %zu bytes: %s", path, len, strerror(e));
    memfit_tensors *set = new_set(path);
    if (!set) {
        munmap(map, len);
        return MEMFIT_E_NOMEM;
    }
    set->map = map;
    set->map_bytes = len;
    set->file_bytes = len;
    set->owns_map = true;
    enum memfit_status st = parse(set, opts);
    if (st != MEMFIT_OK) {
        free_set(set);
        return st;
    }
    *out = set;
    return MEMFIT_OK;
}

void memfit_tensors_release(const memfit_tensors *set, size_t index)
{
    struct memfit_tensor_info t;
    if (!set || set->header_only || memfit_tensors_get(set, index, &t) != MEMFIT_OK) {
        memfit_clear_error();
        return;
    }
    const uint8_t *data = t.data;
    if (t.file_offset == UINT64_MAX || !data || data < set->map ||
        t.n_bytes > set->map_bytes - (size_t)(data - set->map))
        return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t ps = page > 0 ? (uintptr_t)page : 4096;
    uintptr_t begin = ((uintptr_t)data + ps - 1) / ps * ps;
    uintptr_t end = ((uintptr_t)data + (uintptr_t)t.n_bytes) / ps * ps;
    if (end > begin)
        (void)madvise((void *)begin, end - begin, MADV_DONTNEED);
    int fd = open(set->path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)posix_fadvise(fd, (off_t)t.file_offset, (off_t)t.n_bytes, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

void memfit_tensors_close(memfit_tensors *set)
{
    free_set(set);
}

enum memfit_format memfit_tensors_format(const memfit_tensors *set)
{
    return set ? set->format : MEMFIT_FORMAT_UNKNOWN;
}

const char *memfit_tensors_path(const memfit_tensors *set)
{
    return set ? set->path : "";
}

uint64_t memfit_tensors_file_bytes(const memfit_tensors *set)
{
    return set ? set->file_bytes : 0;
}

bool memfit_tensors_header_only(const memfit_tensors *set)
{
    return set && set->header_only;
}

uint32_t memfit_tensors_version(const memfit_tensors *set)
{
    return set ? set->version : 0;
}

size_t memfit_tensors_count(const memfit_tensors *set)
{
    return set ? set->n_tensors : 0;
}

static void fill_info(const memfit_tensors *set, const struct mf_tensor *t,
                      struct memfit_tensor_info *out)
{
    memset(out, 0, sizeof(*out));
    out->name = t->name;
    out->type = t->type;
    out->n_dims = t->n_dims;
    for (uint32_t i = 0; i < MEMFIT_TENSOR_MAX_DIMS; i++)
        out->shape[i] = i < t->n_dims ? t->shape[i] : 1;
    out->n_elements = t->n_elements;
    out->n_bytes = t->n_bytes;
    out->file_offset = t->owned_data ? UINT64_MAX : t->offset;
    out->data = t->owned_data ? t->owned_data : set->header_only ? NULL : set->map + t->offset;
}

enum memfit_status memfit_tensors_get(const memfit_tensors *set, size_t index,
                                      struct memfit_tensor_info *out)
{
    if (!set || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_get: NULL argument");
    if (index >= set->n_tensors)
        return memfit_fail(MEMFIT_E_RANGE, "%s: tensor index %zu beyond count %zu", set->path,
                           index, set->n_tensors);
    fill_info(set, &set->tensors[index], out);
    return MEMFIT_OK;
}

/* Binary search of `sorted` (indices) by name; SIZE_MAX when absent. */
static size_t search(const memfit_tensors *set, const size_t *sorted, size_t n, bool tensors,
                     const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = tensors ? set->tensors[sorted[mid]].name : set->meta[sorted[mid]].key;
        int c = strcmp(s, name);
        if (c == 0)
            return sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

enum memfit_status memfit_tensors_find(const memfit_tensors *set, const char *name,
                                       struct memfit_tensor_info *out, size_t *out_index)
{
    if (!set || !name)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_find: NULL argument");
    size_t i = search(set, set->tensor_by_name, set->n_tensors, true, name);
    if (i == SIZE_MAX)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: no tensor named '%s'", set->path, name);
    if (out)
        fill_info(set, &set->tensors[i], out);
    if (out_index)
        *out_index = i;
    return MEMFIT_OK;
}

size_t memfit_tensors_meta_count(const memfit_tensors *set)
{
    return set ? set->n_meta : 0;
}

enum memfit_status memfit_tensors_meta_get(const memfit_tensors *set, size_t index,
                                           const char **out_key,
                                           struct memfit_meta_value *out_value)
{
    if (!set)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_meta_get: NULL set");
    if (index >= set->n_meta)
        return memfit_fail(MEMFIT_E_RANGE, "%s: metadata index %zu beyond count %zu", set->path,
                           index, set->n_meta);
    if (out_key)
        *out_key = set->meta[index].key;
    if (out_value)
        *out_value = set->meta[index].value;
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_meta_find(const memfit_tensors *set, const char *key,
                                            struct memfit_meta_value *out)
{
    if (!set || !key)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_meta_find: NULL argument");
    size_t i = search(set, set->meta_by_key, set->n_meta, false, key);
    if (i == SIZE_MAX)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: no metadata key '%s'", set->path, key);
    if (out)
        *out = set->meta[i].value;
    return MEMFIT_OK;
}

const char *memfit_meta_type_name(enum memfit_meta_type type)
{
    static const char *const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    if ((unsigned)type < sizeof(names) / sizeof(names[0]))
        return names[type];
    return "?";
}

size_t mf_meta_scalar_bytes(enum memfit_meta_type type)
{
    switch (type) {
    case MEMFIT_META_U8:
    case MEMFIT_META_I8:
    case MEMFIT_META_BOOL:
        return 1;
    case MEMFIT_META_U16:
    case MEMFIT_META_I16:
        return 2;
    case MEMFIT_META_U32:
    case MEMFIT_META_I32:
    case MEMFIT_META_F32:
        return 4;
    case MEMFIT_META_U64:
    case MEMFIT_META_I64:
    case MEMFIT_META_F64:
        return 8;
    default:
        return 0;
    }
}

void mf_meta_decode_scalar(enum memfit_meta_type type, const uint8_t *p,
                           struct memfit_meta_value *out)
{
    memset(out, 0, sizeof(*out));
    out->type = type;
    switch (type) {
    case MEMFIT_META_U8:
    case MEMFIT_META_BOOL:
        out->v.u = p[0];
        break;
    case MEMFIT_META_I8:
        out->v.i = (int8_t)p[0];
        break;
    case MEMFIT_META_U16:
        out->v.u = mf_le16(p);
        break;
    case MEMFIT_META_I16:
        out->v.i = (int16_t)mf_le16(p);
        break;
    case MEMFIT_META_U32:
        out->v.u = mf_le32(p);
        break;
    case MEMFIT_META_I32:
        out->v.i = (int32_t)mf_le32(p);
        break;
    case MEMFIT_META_U64:
        out->v.u = mf_le64(p);
        break;
    case MEMFIT_META_I64:
        out->v.i = (int64_t)mf_le64(p);
        break;
    case MEMFIT_META_F32: {
        uint32_t bits = mf_le32(p);
        float f;
        memcpy(&f, &bits, sizeof(f));
        out->v.f = f;
        break;
    }
    case MEMFIT_META_F64: {
        uint64_t bits = mf_le64(p);
        memcpy(&out->v.f, &bits, sizeof(out->v.f));
        break;
    }
    default:
        break;
    }
}

/* Decodes the element at p (validated at open) and returns its encoded size. */
static uint64_t decode_element(enum memfit_meta_type type, const uint8_t *p,
                               struct memfit_meta_value *out)
{
    size_t fixed = mf_meta_scalar_bytes(type);
    if (fixed) {
        mf_meta_decode_scalar(type, p, out);
        return fixed;
    }
    uint64_t size = mf_gguf_value_size(type, p);
    memset(out, 0, sizeof(*out));
    out->type = type;
    if (type == MEMFIT_META_STRING) {
        out->v.str.len = mf_le64(p);
        out->v.str.data = (const char *)p + 8;
    } else {
        out->v.array.elem_type = (enum memfit_meta_type)mf_le32(p);
        out->v.array.count = mf_le64(p + 4);
        out->v.array.raw = p + 12;
        out->v.array.raw_bytes = size - 12;
    }
    return size;
}

enum memfit_status memfit_meta_array_get(const struct memfit_meta_value *array, uint64_t index,
                                         struct memfit_meta_value *out)
{
    if (!array || !out || array->type != MEMFIT_META_ARRAY)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_meta_array_get: not an array");
    if (index >= array->v.array.count)
        return memfit_fail(MEMFIT_E_RANGE, "array index %llu beyond count %llu",
                           (unsigned long long)index, (unsigned long long)array->v.array.count);
    const uint8_t *p = array->v.array.raw;
    enum memfit_meta_type et = array->v.array.elem_type;
    size_t fixed = mf_meta_scalar_bytes(et);
    if (fixed) {
        mf_meta_decode_scalar(et, p + index * fixed, out);
        return MEMFIT_OK;
    }
    for (uint64_t i = 0; i < index; i++)
        p += mf_gguf_value_size(et, p);
    decode_element(et, p, out);
    return MEMFIT_OK;
}

bool memfit_meta_array_next(const struct memfit_meta_value *array, uint64_t *cursor,
                            struct memfit_meta_value *out)
{
    /* The cursor is a byte offset into raw for variable-size elements and an
     * index for fixed ones; both start at 0 and only this function reads it. */
    if (!array || !cursor || !out || array->type != MEMFIT_META_ARRAY)
        return false;
    enum memfit_meta_type et = array->v.array.elem_type;
    size_t fixed = mf_meta_scalar_bytes(et);
    const uint8_t *raw = array->v.array.raw;
    if (fixed) {
        if (*cursor >= array->v.array.count)
            return false;
        mf_meta_decode_scalar(et, raw + *cursor * fixed, out);
        *cursor += 1;
        return true;
    }
    if (*cursor >= array->v.array.raw_bytes)
        return false;
    *cursor += decode_element(et, raw + *cursor, out);
    return true;
}

enum memfit_status memfit_meta_value_u64(const struct memfit_meta_value *value, uint64_t *out)
{
    if (!value || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_meta_value_u64: NULL argument");
    switch (value->type) {
    case MEMFIT_META_U8:
    case MEMFIT_META_U16:
    case MEMFIT_META_U32:
    case MEMFIT_META_U64:
    case MEMFIT_META_BOOL:
        *out = value->v.u;
        return MEMFIT_OK;
    case MEMFIT_META_I8:
    case MEMFIT_META_I16:
    case MEMFIT_META_I32:
    case MEMFIT_META_I64:
        if (value->v.i < 0)
            return memfit_fail(MEMFIT_E_RANGE, "negative value %lld where a count was expected",
                               (long long)value->v.i);
        *out = (uint64_t)value->v.i;
        return MEMFIT_OK;
    default:
        return memfit_fail(MEMFIT_E_MISUSE, "a %s value is not an integer",
                           memfit_meta_type_name(value->type));
    }
}

enum memfit_status memfit_meta_value_f64(const struct memfit_meta_value *value, double *out)
{
    if (!value || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_meta_value_f64: NULL argument");
    switch (value->type) {
    case MEMFIT_META_F32:
    case MEMFIT_META_F64:
        *out = value->v.f;
        return MEMFIT_OK;
    case MEMFIT_META_I8:
    case MEMFIT_META_I16:
    case MEMFIT_META_I32:
    case MEMFIT_META_I64:
        *out = (double)value->v.i;
        return MEMFIT_OK;
    case MEMFIT_META_U8:
    case MEMFIT_META_U16:
    case MEMFIT_META_U32:
    case MEMFIT_META_U64:
    case MEMFIT_META_BOOL:
        *out = (double)value->v.u;
        return MEMFIT_OK;
    default:
        return memfit_fail(MEMFIT_E_MISUSE, "a %s value is not a number",
                           memfit_meta_type_name(value->type));
    }
}

/* ---- Helpers for the parsers ------------------------------------------- */

static enum memfit_status add_tensor(memfit_tensors *set, const char *name, size_t name_len,
                                     enum memfit_type type, uint32_t n_dims, const int64_t *shape,
                                     uint64_t offset, uint64_t expect_bytes, const uint8_t *owned)
{
    if (n_dims > MEMFIT_TENSOR_MAX_DIMS)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: tensor %.*s: %u dimensions, at most %d",
                           set->path, (int)(name_len > 200 ? 200 : name_len), name, n_dims,
                           MEMFIT_TENSOR_MAX_DIMS);
    if (name_len == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %zu has an empty name", set->path,
                           set->n_tensors);
    if (memchr(name, '\0', name_len))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %zu: name contains a NUL byte", set->path,
                           set->n_tensors);
    int nl = (int)(name_len > 200 ? 200 : name_len);
    const struct memfit_type_info *info = memfit_type_get_info(type);
    if (!info)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: tensor %.*s: unknown type id %d", set->path,
                           nl, name, (int)type);
    uint64_t n_elements = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (shape[i] < 0)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %.*s: dimension %u is negative (%lld)",
                               set->path, nl, name, i, (long long)shape[i]);
        if (__builtin_mul_overflow(n_elements, (uint64_t)shape[i], &n_elements) ||
            n_elements > (uint64_t)INT64_MAX)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %.*s: element count overflows 64 bits at dimension %u",
                               set->path, nl, name, i);
    }
    if (info->block_size > 1 && n_dims > 0 && shape[n_dims - 1] % info->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %.*s: innermost dimension %lld is not a multiple of the "
                           "%s block size %u",
                           set->path, nl, name, (long long)shape[n_dims - 1], info->name,
                           info->block_size);
    uint64_t n_bytes;
    enum memfit_status st = memfit_type_bytes(type, n_elements, &n_bytes);
    if (st != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %.*s: %s", set->path, nl, name,
                           memfit_last_error());
    if (expect_bytes != UINT64_MAX && expect_bytes != n_bytes)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %.*s: %llu bytes for %llu elements of %s, expected %llu",
                           set->path, nl, name, (unsigned long long)expect_bytes,
                           (unsigned long long)n_elements, info->name, (unsigned long long)n_bytes);
    uint64_t end;
    if (!owned && (__builtin_add_overflow(offset, n_bytes, &end) || end > set->file_bytes))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %.*s: data [%llu, +%llu) beyond file size %llu", set->path,
                           nl, name, (unsigned long long)offset, (unsigned long long)n_bytes,
                           (unsigned long long)set->file_bytes);
    if (set->n_tensors == set->cap_tensors) {
        size_t cap = set->cap_tensors ? set->cap_tensors * 2 : 16;
        struct mf_tensor *grown = memfit_realloc(set->tensors, cap * sizeof(*grown));
        if (!grown)
            return MEMFIT_E_NOMEM;
        set->tensors = grown;
        set->cap_tensors = cap;
    }
    char *copy = memfit_strndup(name, name_len);
    if (!copy)
        return MEMFIT_E_NOMEM;
    struct mf_tensor *t = &set->tensors[set->n_tensors++];
    memset(t, 0, sizeof(*t));
    t->name = copy;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t i = 0; i < n_dims; i++)
        t->shape[i] = shape[i];
    t->n_elements = n_elements;
    t->n_bytes = n_bytes;
    t->offset = offset;
    t->owned_data = owned;
    return MEMFIT_OK;
}

enum memfit_status mf_set_add_tensor(memfit_tensors *set, const char *name, size_t name_len,
                                     enum memfit_type type, uint32_t n_dims, const int64_t *shape,
                                     uint64_t offset, uint64_t expect_bytes)
{
    return add_tensor(set, name, name_len, type, n_dims, shape, offset, expect_bytes, NULL);
}

enum memfit_status mf_set_add_tensor_owned(memfit_tensors *set, const char *name, size_t name_len,
                                           enum memfit_type type, uint32_t n_dims,
                                           const int64_t *shape, const uint8_t *data,
                                           uint64_t expect_bytes)
{
    return add_tensor(set, name, name_len, type, n_dims, shape, 0, expect_bytes, data);
}

enum memfit_status mf_set_add_region(memfit_tensors *set, size_t bytes, uint8_t **out)
{
    struct mf_region *grown =
        memfit_realloc(set->regions, (set->n_regions + 1) * sizeof(*set->regions));
    if (!grown)
        return MEMFIT_E_NOMEM;
    set->regions = grown;
    uint8_t *buf = mf_map_anon(bytes ? bytes : 1);
    if (!buf)
        return MEMFIT_E_NOMEM;
    set->regions[set->n_regions].buf = buf;
    set->regions[set->n_regions].bytes = bytes ? bytes : 1;
    set->n_regions++;
    *out = buf;
    return MEMFIT_OK;
}

enum memfit_status mf_set_add_meta(memfit_tensors *set, const char *key, size_t key_len,
                                   const struct memfit_meta_value *value, char *owned)
{
    if (set->n_meta == set->cap_meta) {
        size_t cap = set->cap_meta ? set->cap_meta * 2 : 16;
        struct mf_meta *grown = memfit_realloc(set->meta, cap * sizeof(*grown));
        if (!grown) {
            memfit_free(owned);
            return MEMFIT_E_NOMEM;
        }
        set->meta = grown;
        set->cap_meta = cap;
    }
    char *copy = memfit_strndup(key, key_len);
    if (!copy) {
        memfit_free(owned);
        return MEMFIT_E_NOMEM;
    }
    struct mf_meta *m = &set->meta[set->n_meta++];
    m->key = copy;
    m->value = *value;
    m->owned = owned;
    return MEMFIT_OK;
}

/* qsort has no context argument: the set being sorted is passed through this. */
static _Thread_local const memfit_tensors *sort_set;

static int by_tensor_name(const void *a, const void *b)
{
    return strcmp(sort_set->tensors[*(const size_t *)a].name,
                  sort_set->tensors[*(const size_t *)b].name);
}

static int by_meta_key(const void *a, const void *b)
{
    return strcmp(sort_set->meta[*(const size_t *)a].key, sort_set->meta[*(const size_t *)b].key);
}

static int by_offset(const void *a, const void *b)
{
    const struct mf_tensor *x = &sort_set->tensors[*(const size_t *)a];
    const struct mf_tensor *y = &sort_set->tensors[*(const size_t *)b];
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static size_t *sorted_indices(size_t n, int (*cmp)(const void *, const void *))
{
    size_t *idx = memfit_malloc_in(MEMFIT_ALLOC_FORMAT, (n ? n : 1) * sizeof(size_t));
    if (!idx)
        return NULL;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    qsort(idx, n, sizeof(size_t), cmp);
    return idx;
}

enum memfit_status mf_set_finish(memfit_tensors *set, bool check_overlap)
{
    sort_set = set;
    size_t *names = sorted_indices(set->n_tensors, by_tensor_name);
    if (!names)
        return MEMFIT_E_NOMEM;
    for (size_t i = 1; i < set->n_tensors; i++) {
        if (strcmp(set->tensors[names[i]].name, set->tensors[names[i - 1]].name) == 0) {
            memfit_fail(MEMFIT_E_FORMAT, "%s: duplicate tensor name '%s'", set->path,
                        set->tensors[names[i]].name);
            memfit_free(names);
            return MEMFIT_E_FORMAT;
        }
    }
    size_t *keys = sorted_indices(set->n_meta, by_meta_key);
    if (!keys) {
        memfit_free(names);
        return MEMFIT_E_NOMEM;
    }
    for (size_t i = 1; i < set->n_meta; i++) {
        if (strcmp(set->meta[keys[i]].key, set->meta[keys[i - 1]].key) == 0) {
            memfit_fail(MEMFIT_E_FORMAT, "%s: duplicate metadata key '%s'", set->path,
                        set->meta[keys[i]].key);
            memfit_free(names);
            memfit_free(keys);
            return MEMFIT_E_FORMAT;
        }
    }
    if (check_overlap && set->n_tensors > 1) {
        size_t *offs = sorted_indices(set->n_tensors, by_offset);
        if (!offs) {
            memfit_free(names);
            memfit_free(keys);
            return MEMFIT_E_NOMEM;
        }
        const struct mf_tensor *prev = NULL;
        for (size_t i = 0; i < set->n_tensors; i++) {
            const struct mf_tensor *t = &set->tensors[offs[i]];
            if (t->n_bytes == 0)
                continue;
            if (prev && t->offset < prev->offset + prev->n_bytes) {
                memfit_fail(MEMFIT_E_FORMAT,
                            "%s: tensor %s at offset %llu overlaps tensor %s [%llu, %llu)",
                            set->path, t->name, (unsigned long long)t->offset, prev->name,
                            (unsigned long long)prev->offset,
                            (unsigned long long)(prev->offset + prev->n_bytes));
                memfit_free(offs);
                memfit_free(names);
                memfit_free(keys);
                return MEMFIT_E_FORMAT;
            }
            prev = t;
        }
        memfit_free(offs);
    }
    memfit_free(set->tensor_by_name);
    memfit_free(set->meta_by_key);
    set->tensor_by_name = names;
    set->meta_by_key = keys;
    return MEMFIT_OK;
}

/* ---- Composite sets ------------------------------------------------------------------ */

enum memfit_status memfit_tensors_compose_begin(const char *path, enum memfit_format format,
                                                memfit_tensors **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_compose_begin: NULL argument");
    memfit_tensors *set = memfit_calloc(1, sizeof(*set));
    if (!set)
        return MEMFIT_E_NOMEM;
    set->path = memfit_strdup(path);
    if (!set->path) {
        memfit_free(set);
        return MEMFIT_E_NOMEM;
    }
    set->format = format;
    *out = set;
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_compose_adopt(memfit_tensors *set, memfit_tensors *part)
{
    if (!set || !part) {
        memfit_tensors_close(part);
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_compose_adopt: NULL argument");
    }
    memfit_tensors **grown = memfit_realloc(set->parts, (set->n_parts + 1) * sizeof(*grown));
    if (!grown) {
        memfit_tensors_close(part);
        return MEMFIT_E_NOMEM;
    }
    set->parts = grown;
    set->parts[set->n_parts++] = part;
    set->file_bytes += part->file_bytes;
    set->map_bytes = (size_t)set->file_bytes;
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_compose_meta(memfit_tensors *set, const memfit_tensors *from)
{
    if (!set || !from)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_compose_meta: NULL argument");
    for (size_t i = 0; i < from->n_meta; i++) {
        const struct mf_meta *m = &from->meta[i];
        enum memfit_status st = mf_set_add_meta(set, m->key, strlen(m->key), &m->value, NULL);
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_tensors_compose_tensor(memfit_tensors *set, const char *name,
                                                 const memfit_tensors *from, size_t index)
{
    struct memfit_tensor_info t;
    if (!set || !name || !from)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_compose_tensor: NULL argument");
    enum memfit_status st = memfit_tensors_get(from, index, &t);
    if (st != MEMFIT_OK)
        return st;
    if (!t.data)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: tensor %s has no data (a header-only set)",
                           from->path, t.name);
    return mf_set_add_tensor_owned(set, name, strlen(name), t.type, t.n_dims, t.shape, t.data,
                                   t.n_bytes);
}

enum memfit_status memfit_tensors_compose_finish(memfit_tensors *set)
{
    if (!set)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tensors_compose_finish: NULL argument");
    return mf_set_finish(set, false);
}
