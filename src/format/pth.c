/*
 * PyTorch `.pth` reader (torch.save's zip format, PyTorch >= 1.6). The zip
 * is opened with libzip over the mapping (no copy) to find and check the
 * records; libzip has no call for an entry's local-header offset, so the
 * central directory (zip64 included) is also walked here, every field
 * checked against the file, to turn each stored record into a view of the
 * mapping: data = local header + 30 + name length + extra length. torch
 * writes records uncompressed and 64-byte aligned; a compressed tensor
 * record (a re-packed archive) is inflated into a buffer the set owns, a
 * compressed data.pkl is
 * inflated into a buffer. The pickle is read by pickle.c.
 *
 * The same walk serves a header-only parse (memfit_tensors_open_pth_header)
 * that has only pieces of the file: its tail (end record and central
 * directory) and the data.pkl record, both fetched by range before a
 * download. Offsets stay file offsets; a byte range is reached through
 * span(), which finds it in the piece that holds it or tells what to read.
 * A storage record's data offset comes from torch.save's layout (below)
 * instead of its local header, which is not read.
 */
#include <stdio.h>
#include <string.h>

#include <zip.h>

#include "core/dynlib.h"
#include "format/pickle.h"
#include "format/set.h"

#define MAX_PICKLE_BYTES (1ull << 30)
/* A compressed storage record is inflated into memory: cap what one may
 * claim, and the ratio to its compressed size (deflate cannot exceed about
 * 1032:1, so a larger claim is a lie meant to make us map memory). */
#define MAX_INFLATED_BYTES (16ull << 30)
#define MAX_DEFLATE_RATIO  1100

struct zentry {
    const char *name; /* in the mapping, not NUL-terminated */
    uint16_t name_len;
    uint16_t method;
    uint64_t comp_size, size, local_offset;
};

/* A compressed storage record, inflated once into a region of the set and
 * shared by every tensor that views it. */
struct inflated {
    const struct zentry *entry;
    const uint8_t *data;
};

struct pth {
    memfit_tensors *set;
    /* The bytes at hand: the whole mapping (tail_off 0), or for a
     * header-only parse the file's tail and the data.pkl record. */
    const uint8_t *tail, *rec;
    size_t tail_len, rec_len;
    uint64_t tail_off, rec_off, file_bytes;
    struct memfit_pth_need *need; /* header-only: what to read next */
    uint64_t cd_offset;
    struct zentry *entries;
    size_t n_entries;
    const char *prefix; /* the archive's top folder, in the mapping */
    size_t prefix_len;
    zip_t *za; /* libzip's view of the archive, open while the pickle is read */
    struct inflated *inflated;
    size_t n_inflated;
};

static enum memfit_status zfail(const memfit_tensors *set, const char *what)
{
    return memfit_fail(MEMFIT_E_FORMAT, "%s: zip: %s", set->path, what);
}

/* The bytes [off, off + len) of the file when a piece at hand holds them, else NULL. */
static const uint8_t *span(const struct pth *z, uint64_t off, uint64_t len)
{
    if (off >= z->tail_off && off - z->tail_off <= z->tail_len &&
        len <= z->tail_len - (off - z->tail_off))
        return z->tail + (off - z->tail_off);
    if (z->rec && off >= z->rec_off && off - z->rec_off <= z->rec_len &&
        len <= z->rec_len - (off - z->rec_off))
        return z->rec + (off - z->rec_off);
    return NULL;
}

/*
 * A header-only parse needs the file's bytes from `from` on: asks for that
 * tail, and at least the window the end record is looked for in (a round
 * trip costs more than a few KiB: the zip64 records and the directory
 * usually come with it).
 */
static enum memfit_status need_tail(const struct pth *z, uint64_t from, const char *what)
{
    if (!z->need)
        return zfail(z->set, what);
    uint64_t window = z->file_bytes < 22 + 65535 ? z->file_bytes : 22 + 65535;
    z->need->tail_bytes = z->file_bytes - from > window ? z->file_bytes - from : window;
    return memfit_fail(MEMFIT_E_FORMAT, "%s: zip: %s lies before the %zu-byte tail read",
                       z->set->path, what, z->tail_len);
}

/*
 * Where torch.save puts a record's data: the local header (30 bytes), the
 * name, a zip64 extra field (20 bytes) for a record of 4 GiB or more, then
 * an extra field ("FB", 4 bytes of header) padding the data to 64 bytes
 * (PyTorch's caffe2 serializer, getPadding).
 */
static uint64_t torch_data_offset(uint64_t local, uint64_t name_len, uint64_t size)
{
    uint64_t start = local + 30 + name_len + 4 + (size >= 0xFFFFFFFF ? 20 : 0);
    return (start + 63) / 64 * 64;
}

/* Reads the zip64 extra field (id 1) for the fields the central entry marked 0xFFFFFFFF. */
static enum memfit_status read_zip64_extra(const memfit_tensors *set, const uint8_t *extra,
                                           size_t extra_len, struct zentry *e, bool need_size,
                                           bool need_comp, bool need_offset)
{
    size_t pos = 0;
    while (pos + 4 <= extra_len) {
        uint16_t id = mf_le16(extra + pos), len = mf_le16(extra + pos + 2);
        if (len > extra_len - pos - 4)
            return zfail(set, "central directory extra field overruns its entry");
        if (id == 1) {
            const uint8_t *q = extra + pos + 4;
            size_t left = len;
            uint64_t *fields[3] = {need_size ? &e->size : NULL, need_comp ? &e->comp_size : NULL,
                                   need_offset ? &e->local_offset : NULL};
            for (int i = 0; i < 3; i++) {
                if (!fields[i])
                    continue;
                if (left < 8)
                    return zfail(set, "zip64 extra field too short");
                *fields[i] = mf_le64(q);
                q += 8;
                left -= 8;
            }
            return MEMFIT_OK;
        }
        pos += 4 + (size_t)len;
    }
    if (need_size || need_comp || need_offset)
        return zfail(set, "entry needs a zip64 extra field and has none");
    return MEMFIT_OK;
}

static enum memfit_status read_central_directory(struct pth *z)
{
    const memfit_tensors *set = z->set;
    uint64_t len = z->file_bytes;
    if (len < 22)
        return zfail(set, "file too short for an end-of-central-directory record");
    uint64_t lowest = len - 22 > 65535 ? len - 22 - 65535 : 0;
    uint64_t from = lowest > z->tail_off ? lowest : z->tail_off;
    const uint8_t *m = NULL;
    /* Only the tail is searched: the tail runs to the file's end. */
    for (uint64_t i = len - 22 + 1; !m && i-- > from;) {
        const uint8_t *p = z->tail + (i - z->tail_off);
        if (mf_le32(p) == 0x06054b50)
            m = p;
    }
    if (!m && from > lowest)
        return need_tail(z, lowest, "the end-of-central-directory record");
    if (!m)
        return zfail(set, "no end-of-central-directory record");
    uint64_t eocd = z->tail_off + (uint64_t)(m - z->tail);
    uint64_t n = mf_le16(m + 10);
    uint64_t cd_size = mf_le32(m + 12);
    uint64_t cd_offset = mf_le32(m + 16);
    if (n == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
        if (eocd < 20)
            return zfail(set, "zip64 end-of-central-directory locator missing");
        const uint8_t *loc = span(z, eocd - 20, 20);
        if (!loc)
            return need_tail(z, eocd - 20, "the zip64 end-of-central-directory locator");
        if (mf_le32(loc) != 0x07064b50)
            return zfail(set, "zip64 end-of-central-directory locator missing");
        uint64_t z64 = mf_le64(loc + 8);
        if (z64 > len || len - z64 < 56)
            return zfail(set, "zip64 end-of-central-directory record out of bounds or bad");
        const uint8_t *r = span(z, z64, 56);
        if (!r)
            return need_tail(z, z64, "the zip64 end-of-central-directory record");
        if (mf_le32(r) != 0x06064b50)
            return zfail(set, "zip64 end-of-central-directory record out of bounds or bad");
        n = mf_le64(r + 32);
        cd_size = mf_le64(r + 40);
        cd_offset = mf_le64(r + 48);
    }
    if (cd_offset > len || cd_size > len - cd_offset)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: zip: central directory [%llu, +%llu) beyond file size %llu",
                           set->path, (unsigned long long)cd_offset, (unsigned long long)cd_size,
                           (unsigned long long)len);
    const uint8_t *p = span(z, cd_offset, cd_size);
    if (!p)
        return need_tail(z, cd_offset, "the central directory");
    z->cd_offset = cd_offset;
    if (n > cd_size / 46)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: zip: %llu entries cannot fit in a %llu-byte central directory",
                           set->path, (unsigned long long)n, (unsigned long long)cd_size);
    z->entries = memfit_calloc_in(MEMFIT_ALLOC_FORMAT, n ? n : 1, sizeof(*z->entries));
    if (!z->entries)
        return MEMFIT_E_NOMEM;
    uint64_t left = cd_size;
    for (uint64_t i = 0; i < n; i++) {
        if (left < 46 || mf_le32(p) != 0x02014b50)
            return zfail(set, "bad central directory entry");
        struct zentry *e = &z->entries[i];
        e->method = mf_le16(p + 10);
        e->comp_size = mf_le32(p + 20);
        e->size = mf_le32(p + 24);
        e->name_len = mf_le16(p + 28);
        uint16_t extra_len = mf_le16(p + 30), comment_len = mf_le16(p + 32);
        e->local_offset = mf_le32(p + 42);
        uint64_t entry_bytes = 46ull + e->name_len + extra_len + comment_len;
        if (entry_bytes > left)
            return zfail(set, "central directory entry overruns the directory");
        e->name = (const char *)p + 46;
        enum memfit_status st =
            read_zip64_extra(set, p + 46 + e->name_len, extra_len, e, e->size == 0xFFFFFFFF,
                             e->comp_size == 0xFFFFFFFF, e->local_offset == 0xFFFFFFFF);
        if (st != MEMFIT_OK)
            return st;
        p += entry_bytes;
        left -= entry_bytes;
        z->n_entries++;
    }
    return MEMFIT_OK;
}

/* The entry named prefix + "/" + rest, or NULL. */
static const struct zentry *find_record(const struct pth *z, const char *rest)
{
    size_t rl = strlen(rest);
    for (size_t i = 0; i < z->n_entries; i++) {
        const struct zentry *e = &z->entries[i];
        if (e->name_len == z->prefix_len + 1 + rl &&
            memcmp(e->name, z->prefix, z->prefix_len) == 0 && e->name[z->prefix_len] == '/' &&
            memcmp(e->name + z->prefix_len + 1, rest, rl) == 0)
            return e;
    }
    return NULL;
}

/*
 * The file offset of an entry's data, checked to lie in the file. From its
 * local header when at hand; in a header-only parse, a record whose bytes
 * are needed (`exact`: data.pkl) asks for them, another is placed where
 * torch.save puts it.
 */
static enum memfit_status record_data(const struct pth *z, const struct zentry *e, bool exact,
                                      uint64_t *out_offset)
{
    const memfit_tensors *set = z->set;
    int nl = (int)e->name_len;
    uint64_t lo = e->local_offset, len = z->file_bytes;
    const uint8_t *h = lo <= len && len - lo >= 30 ? span(z, lo, 30) : NULL;
    if (lo > len || len - lo < 30 || (h && mf_le32(h) != 0x04034b50) || (!h && !z->need))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: zip: record %.*s: bad local header at %llu",
                           set->path, nl, e->name, (unsigned long long)lo);
    uint64_t data = h ? lo + 30 + mf_le16(h + 26) + mf_le16(h + 28)
                      : torch_data_offset(lo, e->name_len, e->size);
    if (!h && exact) {
        /* The local extra field is not in the directory: ask for room for torch's padding. */
        uint64_t want = 30 + (uint64_t)e->name_len + 128 + e->comp_size;
        z->need->record_offset = lo;
        z->need->record_bytes = want < len - lo ? want : len - lo;
        return memfit_fail(MEMFIT_E_FORMAT, "%s: zip: record %.*s not read", set->path, nl,
                           e->name);
    }
    if (data > len || e->comp_size > len - data)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: zip: record %.*s: data [%llu, +%llu) beyond file size %llu",
                           set->path, nl, e->name, (unsigned long long)data,
                           (unsigned long long)e->comp_size, (unsigned long long)len);
    if (exact && z->need && !span(z, data, e->comp_size)) {
        z->need->record_offset = lo;
        z->need->record_bytes = data + e->comp_size - lo;
        return memfit_fail(MEMFIT_E_FORMAT, "%s: zip: record %.*s not read whole", set->path, nl,
                           e->name);
    }
    if (exact && z->need && data != torch_data_offset(lo, mf_le16(h + 26), e->size))
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: zip: record %.*s: data at %llu, not where torch.save puts it "
                           "(%llu): the other records cannot be placed without reading them",
                           set->path, nl, e->name, (unsigned long long)data,
                           (unsigned long long)torch_data_offset(lo, mf_le16(h + 26), e->size));
    if (e->method == 0 && e->comp_size != e->size)
        return memfit_fail(
            MEMFIT_E_FORMAT, "%s: zip: stored record %.*s: sizes differ (%llu and %llu)", set->path,
            nl, e->name, (unsigned long long)e->comp_size, (unsigned long long)e->size);
    *out_offset = data;
    return MEMFIT_OK;
}

/* libzip, loaded on first use (core/dynlib.h): only .pth files need it. */
static struct {
    __typeof__(zip_error_init) *error_init;
    __typeof__(zip_error_fini) *error_fini;
    __typeof__(zip_error_strerror) *error_strerror;
    __typeof__(zip_source_buffer_create) *source_buffer_create;
    __typeof__(zip_open_from_source) *open_from_source;
    __typeof__(zip_source_free) *source_free;
    __typeof__(zip_get_num_entries) *get_num_entries;
    __typeof__(zip_stat_init) *stat_init;
    __typeof__(zip_stat_index) *stat_index;
    __typeof__(zip_fopen_index) *fopen_index;
    __typeof__(zip_fread) *fread;
    __typeof__(zip_file_strerror) *file_strerror;
    __typeof__(zip_strerror) *strerror;
    __typeof__(zip_fclose) *fclose;
    __typeof__(zip_discard) *discard;
} zipapi;

static const struct mf_dl_symbol zip_symbols[] = {
    {"zip_error_init", &zipapi.error_init},
    {"zip_error_fini", &zipapi.error_fini},
    {"zip_error_strerror", &zipapi.error_strerror},
    {"zip_source_buffer_create", &zipapi.source_buffer_create},
    {"zip_open_from_source", &zipapi.open_from_source},
    {"zip_source_free", &zipapi.source_free},
    {"zip_get_num_entries", &zipapi.get_num_entries},
    {"zip_stat_init", &zipapi.stat_init},
    {"zip_stat_index", &zipapi.stat_index},
    {"zip_fopen_index", &zipapi.fopen_index},
    {"zip_fread", &zipapi.fread},
    {"zip_file_strerror", &zipapi.file_strerror},
    {"zip_strerror", &zipapi.strerror},
    {"zip_fclose", &zipapi.fclose},
    {"zip_discard", &zipapi.discard},
};

static struct mf_dl_library libzip =
    MF_DL_LIBRARY("libzip.so.4", "libzip4", "to read .pth files", zip_symbols);

/* Inflates a compressed storage record (torch.save never writes one, zip
 * tools re-packing an archive may) into a buffer the set owns, once. */
static enum memfit_status inflate_record(struct pth *z, const struct zentry *e, const uint8_t **out)
{
    memfit_tensors *set = z->set;
    for (size_t i = 0; i < z->n_inflated; i++) {
        if (z->inflated[i].entry == e) {
            *out = z->inflated[i].data;
            return MEMFIT_OK;
        }
    }
    if (!z->za)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: archive not open", set->path);
    if (e->size > MAX_INFLATED_BYTES || (e->comp_size == 0 && e->size > 0) ||
        e->size / MAX_DEFLATE_RATIO > e->comp_size)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: zip: record %.*s claims %llu bytes from %llu compressed "
                           "(limit %llu bytes, ratio %d)",
                           set->path, (int)e->name_len, e->name, (unsigned long long)e->size,
                           (unsigned long long)e->comp_size, (unsigned long long)MAX_INFLATED_BYTES,
                           MAX_DEFLATE_RATIO);
    struct inflated *grown =
        memfit_realloc(z->inflated, (z->n_inflated + 1) * sizeof(*z->inflated));
    if (!grown)
        return MEMFIT_E_NOMEM;
    z->inflated = grown;
    uint8_t *buf;
    enum memfit_status st = mf_set_add_region(set, (size_t)e->size, &buf);
    if (st != MEMFIT_OK)
        return st;
    zip_file_t *zf = zipapi.fopen_index(z->za, (zip_uint64_t)(e - z->entries), 0);
    if (!zf)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: zip: cannot open record %.*s: %s", set->path,
                           (int)e->name_len, e->name, zipapi.strerror(z->za));
    uint64_t done = 0;
    while (done < e->size) {
        zip_int64_t n = zipapi.fread(zf, buf + done, e->size - done);
        if (n <= 0)
            break;
        done += (uint64_t)n;
    }
    if (done != e->size) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: zip: record %.*s inflated to %llu of %llu bytes: %s",
                         set->path, (int)e->name_len, e->name, (unsigned long long)done,
                         (unsigned long long)e->size, zipapi.file_strerror(zf));
        zipapi.fclose(zf);
        return st; /* the region is freed with the set */
    }
    zipapi.fclose(zf);
    z->inflated[z->n_inflated].entry = e;
    z->inflated[z->n_inflated].data = buf;
    z->n_inflated++;
    *out = buf;
    return MEMFIT_OK;
}

static enum memfit_status add_tensor(void *ctx, const struct mf_pickle_tensor *t)
{
    struct pth *z = ctx;
    memfit_tensors *set = z->set;
    char rest[300];
    if (snprintf(rest, sizeof(rest), "data/%s", t->storage_key) >= (int)sizeof(rest))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: storage key too long", set->path,
                           t->name);
    const struct zentry *e = find_record(z, rest);
    if (!e)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: record %.*s/%s missing", set->path,
                           t->name, (int)z->prefix_len, z->prefix, rest);
    uint64_t data = 0;
    const uint8_t *owned = NULL;
    if (e->method != 0 && z->need)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: tensor %s: record %s is compressed (not a torch.save layout)",
                           set->path, t->name, rest);
    enum memfit_status st =
        e->method != 0 ? inflate_record(z, e, &owned) : record_data(z, e, false, &data);
    if (st != MEMFIT_OK)
        return st;
    uint64_t elem = memfit_type_get_info(t->type)->type_size, storage_bytes;
    if (__builtin_mul_overflow(t->storage_numel, elem, &storage_bytes) || storage_bytes > e->size)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: storage of %llu elements does not fit record %s of "
                           "%llu bytes",
                           set->path, t->name, (unsigned long long)t->storage_numel, rest,
                           (unsigned long long)e->size);
    uint64_t n_elements = 1, expect = 1;
    for (uint32_t i = t->n_dims; i-- > 0;) {
        if (t->shape[i] < 0)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: size[%u] is negative (%lld)",
                               set->path, t->name, i, (long long)t->shape[i]);
        if (t->shape[i] != 1 && t->stride[i] != (int64_t)expect && t->shape[i] != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s: stride[%u] = %lld where a contiguous tensor has "
                               "%llu (save it with .contiguous())",
                               set->path, t->name, i, (long long)t->stride[i],
                               (unsigned long long)expect);
        if (__builtin_mul_overflow(expect, (uint64_t)t->shape[i], &expect) || expect > INT64_MAX)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: element count overflows", set->path,
                               t->name);
    }
    n_elements = expect;
    uint64_t off_bytes, n_bytes, end;
    if (t->storage_offset < 0 ||
        __builtin_mul_overflow((uint64_t)t->storage_offset, elem, &off_bytes) ||
        __builtin_mul_overflow(n_elements, elem, &n_bytes) ||
        __builtin_add_overflow(off_bytes, n_bytes, &end) || end > storage_bytes)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: tensor %s: elements [%lld, +%llu) beyond its storage of %llu",
                           set->path, t->name, (long long)t->storage_offset,
                           (unsigned long long)n_elements, (unsigned long long)t->storage_numel);
    if (owned)
        return mf_set_add_tensor_owned(set, t->name, strlen(t->name), t->type, t->n_dims, t->shape,
                                       owned + off_bytes, n_bytes);
    return mf_set_add_tensor(set, t->name, strlen(t->name), t->type, t->n_dims, t->shape,
                             data + off_bytes, n_bytes);
}

/* Checks the archive with libzip, and inflates data.pkl when it is compressed. */
static enum memfit_status check_with_libzip(struct pth *z, const struct zentry *pkl,
                                            uint8_t **out_inflated)
{
    memfit_tensors *set = z->set;
    enum memfit_status loaded = mf_dl_load(&libzip);
    if (loaded != MEMFIT_OK)
        return memfit_fail(loaded, "%s: %s", set->path, memfit_last_error());
    zip_error_t err;
    zipapi.error_init(&err);
    zip_source_t *src = zipapi.source_buffer_create(set->map, set->map_bytes, 0, &err);
    if (!src) {
        zipapi.error_fini(&err);
        return MEMFIT_E_NOMEM;
    }
    zip_t *za = zipapi.open_from_source(src, ZIP_RDONLY, &err);
    if (!za) {
        enum memfit_status st =
            memfit_fail(MEMFIT_E_FORMAT, "%s: zip: %s", set->path, zipapi.error_strerror(&err));
        zipapi.source_free(src);
        zipapi.error_fini(&err);
        return st;
    }
    zipapi.error_fini(&err);
    enum memfit_status st = MEMFIT_OK;
    zip_int64_t n = zipapi.get_num_entries(za, 0);
    if (n < 0 || (uint64_t)n != z->n_entries)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: zip: libzip sees %lld entries, the directory %zu",
                         set->path, (long long)n, z->n_entries);
    for (zip_int64_t i = 0; st == MEMFIT_OK && i < n; i++) {
        zip_stat_t zs;
        zipapi.stat_init(&zs);
        const struct zentry *e = &z->entries[i];
        if (zipapi.stat_index(za, (zip_uint64_t)i, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE) ||
            !(zs.valid & ZIP_STAT_COMP_METHOD) || zs.size != e->size || zs.comp_method != e->method)
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: zip: entry %lld disagrees with libzip",
                             set->path, (long long)i);
    }
    if (st == MEMFIT_OK && pkl->method != 0) {
        if (pkl->size > MAX_PICKLE_BYTES) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: data.pkl of %llu bytes over the limit %llu",
                             set->path, (unsigned long long)pkl->size, MAX_PICKLE_BYTES);
        } else {
            uint8_t *buf = memfit_malloc_in(MEMFIT_ALLOC_FORMAT, pkl->size ? pkl->size : 1);
            zip_int64_t idx = (zip_int64_t)(pkl - z->entries);
            zip_file_t *zf = buf ? zipapi.fopen_index(za, (zip_uint64_t)idx, 0) : NULL;
            if (!buf) {
                st = MEMFIT_E_NOMEM;
            } else if (!zf || zipapi.fread(zf, buf, pkl->size) != (zip_int64_t)pkl->size) {
                st = memfit_fail(MEMFIT_E_FORMAT, "%s: zip: cannot inflate data.pkl: %s", set->path,
                                 zf ? zipapi.file_strerror(zf) : zipapi.strerror(za));
            }
            if (zf)
                zipapi.fclose(zf);
            if (st == MEMFIT_OK)
                *out_inflated = buf;
            else
                memfit_free(buf);
        }
    }
    if (st == MEMFIT_OK)
        z->za = za; /* kept for inflating compressed storage records */
    else
        zipapi.discard(za); /* also frees the source */
    return st;
}

static const uint8_t legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                       0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

/*
 * A header-only set keeps what memfit_tensors_write_standin writes: the
 * pieces read, and for each record whose local header was not read one
 * made as torch.save writes it (a padding extra field up to its data), so
 * the stand-in parses to the same offsets. Records must follow each other
 * in that layout without overlap, else the offsets are guesses: refused.
 */
static enum memfit_status keep_pieces(struct pth *z)
{
    memfit_tensors *set = z->set;
    enum memfit_status st = mf_set_add_piece(set, z->tail_off, z->tail, z->tail_len, NULL);
    if (st == MEMFIT_OK && z->rec)
        st = mf_set_add_piece(set, z->rec_off, z->rec, z->rec_len, NULL);
    for (size_t i = 0; st == MEMFIT_OK && i < z->n_entries; i++) {
        const struct zentry *e = &z->entries[i];
        uint64_t data, next = i + 1 < z->n_entries ? z->entries[i + 1].local_offset : z->cd_offset;
        if ((st = record_data(z, e, false, &data)) != MEMFIT_OK)
            break;
        if (next < e->local_offset || e->comp_size > next - data || data > next) {
            st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                             "%s: zip: record %.*s at %llu overlaps the next at %llu: not the "
                             "torch.save layout, its data cannot be placed without reading it",
                             set->path, (int)e->name_len, e->name,
                             (unsigned long long)e->local_offset, (unsigned long long)next);
            break;
        }
        if (span(z, e->local_offset, 30))
            continue;
        size_t extra = (size_t)(data - e->local_offset - 30 - e->name_len);
        uint8_t *h;
        st = mf_set_add_piece(set, e->local_offset, NULL, 30 + e->name_len + extra, &h);
        if (st != MEMFIT_OK)
            break;
        /* Little-endian fields; the rest (flags, time, CRC) stay zero. */
        h[0] = 0x50, h[1] = 0x4b, h[2] = 0x03, h[3] = 0x04;
        h[4] = 20;
        h[8] = (uint8_t)e->method, h[9] = (uint8_t)(e->method >> 8);
        uint32_t comp = e->comp_size >= 0xFFFFFFFF ? 0xFFFFFFFF : (uint32_t)e->comp_size;
        uint32_t size = e->size >= 0xFFFFFFFF ? 0xFFFFFFFF : (uint32_t)e->size;
        for (int b = 0; b < 4; b++) {
            h[18 + b] = (uint8_t)(comp >> (8 * b));
            h[22 + b] = (uint8_t)(size >> (8 * b));
        }
        h[26] = (uint8_t)e->name_len, h[27] = (uint8_t)(e->name_len >> 8);
        h[28] = (uint8_t)extra, h[29] = (uint8_t)(extra >> 8);
        memcpy(h + 30, e->name, e->name_len);
        h[30 + e->name_len] = 'F', h[31 + e->name_len] = 'B';
        h[32 + e->name_len] = (uint8_t)(extra - 4),
               h[33 + e->name_len] = (uint8_t)((extra - 4) >> 8);
    }
    return st;
}

/* Reads the archive at hand (z set up) into the set's tensors. */
static enum memfit_status parse_archive(struct pth *z, uint8_t **inflated)
{
    memfit_tensors *set = z->set;
    enum memfit_status st = read_central_directory(z);
    if (st != MEMFIT_OK)
        return st;
    if (z->n_entries == 0)
        return zfail(set, "empty archive");
    const char *slash = memchr(z->entries[0].name, '/', z->entries[0].name_len);
    if (!slash)
        return zfail(set, "first entry is not inside a folder (not a torch.save archive)");
    z->prefix = z->entries[0].name;
    z->prefix_len = (size_t)(slash - z->prefix);
    const struct zentry *pkl = find_record(z, "data.pkl");
    if (!pkl)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: no %.*s/data.pkl record (not a torch.save file)",
                           set->path, (int)z->prefix_len, z->prefix);
    if (z->need && pkl->method != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: data.pkl is compressed (not a torch.save layout)", set->path);
    uint64_t pkl_off;
    if ((st = record_data(z, pkl, true, &pkl_off)) != MEMFIT_OK)
        return st;
    if (!z->need && (st = check_with_libzip(z, pkl, inflated)) != MEMFIT_OK)
        return st;
    const struct zentry *bo = find_record(z, "byteorder");
    if (bo) {
        uint64_t bo_off;
        if ((st = record_data(z, bo, false, &bo_off)) != MEMFIT_OK)
            return st;
        const uint8_t *order = bo->method == 0 && bo->size == 3 ? span(z, bo_off, 3) : NULL;
        if (order && memcmp(order, "big", 3) == 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: big-endian PyTorch file", set->path);
    }
    const uint8_t *pk = *inflated ? *inflated : span(z, pkl_off, pkl->size);
    if (!pk) /* record_data checked it lies in the file and, header-only, at hand */
        return zfail(set, "data.pkl not at hand");
    st = mf_pickle_load_state_dict(pk, (size_t)pkl->size, set->path, add_tensor, z);
    if (st == MEMFIT_OK && z->need)
        st = keep_pieces(z);
    if (st == MEMFIT_OK)
        st = mf_set_finish(set, false);
    return st;
}

static void pth_fini(struct pth *z, uint8_t *inflated)
{
    if (z->za)
        zipapi.discard(z->za);
    memfit_free(z->inflated);
    memfit_free(inflated);
    memfit_free(z->entries);
}

enum memfit_status mf_pth_parse(memfit_tensors *set)
{
    if (set->map_bytes >= 2 && set->map[0] == 0x80) {
        bool legacy = set->map_bytes >= sizeof(legacy_magic) &&
                      memcmp(set->map, legacy_magic, sizeof(legacy_magic)) == 0;
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: %s: re-save it with torch.save(obj, path, "
                           "_use_new_zipfile_serialization=True) in a recent PyTorch",
                           set->path,
                           legacy ? "legacy (pre-1.6) PyTorch file format"
                                  : "a bare pickle, not a PyTorch zip file");
    }
    if (set->map_bytes < 4 || memcmp(set->map, "PK\x03\x04", 4) != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: not a zip file (PyTorch .pth expected)",
                           set->path);
    struct pth z;
    memset(&z, 0, sizeof(z));
    z.set = set;
    z.tail = set->map;
    z.tail_len = set->map_bytes;
    z.file_bytes = set->map_bytes;
    uint8_t *inflated = NULL;
    enum memfit_status st = parse_archive(&z, &inflated);
    pth_fini(&z, inflated);
    return st;
}

enum memfit_status mf_pth_parse_header(memfit_tensors *set, const uint8_t *tail, size_t tail_len,
                                       const uint8_t *record, size_t record_len,
                                       uint64_t record_offset, struct memfit_pth_need *need)
{
    struct pth z;
    memset(&z, 0, sizeof(z));
    z.set = set;
    z.file_bytes = set->file_bytes;
    z.tail = tail;
    z.tail_len = tail_len;
    z.tail_off = set->file_bytes - tail_len;
    z.rec = record;
    z.rec_len = record_len;
    z.rec_off = record_offset;
    z.need = need;
    uint8_t *inflated = NULL;
    enum memfit_status st = parse_archive(&z, &inflated);
    pth_fini(&z, inflated);
    return st;
}
