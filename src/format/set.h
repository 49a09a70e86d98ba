/*
 * Internal side of the tensor set (include/memfit/format.h): the struct
 * behind the handle, the bounded reader every parser uses, and the helpers
 * the three parsers (gguf.c, safetensors.c, pth.c) share to add tensors and
 * metadata with the same checks and messages.
 */
#ifndef MF_FORMAT_SET_H
#define MF_FORMAT_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/format.h"

struct mf_tensor {
    char *name;
    enum memfit_type type;
    uint32_t n_dims;
    int64_t shape[MEMFIT_TENSOR_MAX_DIMS]; /* outermost first */
    uint64_t n_elements;
    uint64_t n_bytes;
    uint64_t offset;           /* from the start of the file */
    const uint8_t *owned_data; /* data outside the mapping (an inflated record), else NULL */
};

/* Bytes of the file at `offset` held by a header-only set (owned). */
struct mf_piece {
    uint64_t offset;
    uint8_t *bytes;
    size_t len;
};

/* A buffer the set owns: an anonymous mapping holding an inflated record. */
struct mf_region {
    uint8_t *buf;
    size_t bytes;
};

struct mf_meta {
    char *key;
    struct memfit_meta_value value;
    char *owned; /* string storage the value points to, when not in the mapping */
};

struct memfit_tensors {
    char *path;
    enum memfit_format format;
    uint32_t version;
    const uint8_t *map;
    size_t map_bytes;
    bool owns_map;
    struct mf_tensor *tensors;
    size_t n_tensors, cap_tensors;
    size_t *tensor_by_name; /* indices sorted by name */
    struct mf_meta *meta;
    size_t n_meta, cap_meta;
    size_t *meta_by_key; /* indices sorted by key */
    struct mf_region *regions;
    size_t n_regions;
    /*
     * A header-only set (memfit_tensors_open_header): `map` holds the first
     * map_bytes bytes of a file of file_bytes bytes (a copy the set owns in
     * owned_head); tensor data is bounds-checked against file_bytes and not
     * readable. A parser that runs past map_bytes but not past file_bytes
     * sets need_bytes (the head length that lets it go on) and fails.
     */
    uint64_t file_bytes; /* == map_bytes for a mapped or in-memory file */
    bool header_only;
    uint8_t *owned_head;
    uint64_t need_bytes;
    /*
     * A header-only `.pth` set holds pieces of the file instead of a head
     * (the tail, the data.pkl record, synthesized local headers), kept for
     * memfit_tensors_write_standin.
     */
    struct mf_piece *pieces;
    size_t n_pieces;
    /* A composite set (memfit_tensors_compose_*): the sets whose tensors and
     * metadata it shows, closed with it; `map` is NULL. */
    memfit_tensors **parts;
    size_t n_parts;
};

/*
 * In a header-only set, records that the parser needs the head to reach
 * `end` (it lies within the file) and returns the E_FORMAT to stop with;
 * for other sets (or past the file's end) returns MEMFIT_OK so the caller
 * reports the format error itself.
 */
enum memfit_status mf_set_need(memfit_tensors *set, uint64_t end, const char *what);

/*
 * Parses `len` bytes at `buf` (which must outlive the set) as a tensor set
 * without mapping a file; `name` is used in messages. The fuzz targets and
 * tests use it. Same failures as memfit_tensors_open().
 */
enum memfit_status mf_tensors_open_memory(const void *buf, size_t len, const char *name,
                                          const struct memfit_tensors_options *opts,
                                          memfit_tensors **out);

/* The parsers: fill `set` (map, path set) or fail; the caller frees the set on failure. */
enum memfit_status mf_gguf_parse(memfit_tensors *set, const struct memfit_tensors_options *opts);
enum memfit_status mf_safetensors_parse(memfit_tensors *set);
enum memfit_status mf_pth_parse(memfit_tensors *set);

/*
 * The header-only `.pth` parse (memfit_tensors_open_pth_header): `set` has
 * header_only, file_bytes and path set and no map. When a piece is missing
 * fills *need and fails with E_FORMAT; the caller tells by *need.
 */
enum memfit_status mf_pth_parse_header(memfit_tensors *set, const uint8_t *tail, size_t tail_len,
                                       const uint8_t *record, size_t record_len,
                                       uint64_t record_offset, struct memfit_pth_need *need);

/* Adds a piece of `len` bytes at `offset` to a header-only set, copying `bytes`. */
enum memfit_status mf_set_add_piece(memfit_tensors *set, uint64_t offset, const uint8_t *bytes,
                                    size_t len, uint8_t **out_copy);

/*
 * Adds a tensor: copies the name, computes elements and bytes with overflow
 * checks (memfit_type_bytes), and checks [offset, offset + bytes) lies in the
 * file. `shape` is outermost-first. `expect_bytes`, when not UINT64_MAX, must
 * equal the computed size.
 */
enum memfit_status mf_set_add_tensor(memfit_tensors *set, const char *name, size_t name_len,
                                     enum memfit_type type, uint32_t n_dims, const int64_t *shape,
                                     uint64_t offset, uint64_t expect_bytes);

/* Adds a metadata entry (key copied; `owned` is taken over, freed even on failure). */
/*
 * Like mf_set_add_tensor for data that is not in the mapping but in a region
 * of the set (see mf_set_add_region): `data` must lie inside one.
 */
enum memfit_status mf_set_add_tensor_owned(memfit_tensors *set, const char *name, size_t name_len,
                                           enum memfit_type type, uint32_t n_dims,
                                           const int64_t *shape, const uint8_t *data,
                                           uint64_t expect_bytes);

/* A new zero-filled buffer of `bytes` owned by the set (freed with it). */
enum memfit_status mf_set_add_region(memfit_tensors *set, size_t bytes, uint8_t **out);

enum memfit_status mf_set_add_meta(memfit_tensors *set, const char *key, size_t key_len,
                                   const struct memfit_meta_value *value, char *owned);

/*
 * Builds the name and key indices and rejects duplicates; with
 * `check_overlap`, also tensors whose bytes overlap (`.pth` views may share
 * storage, so it does not ask).
 */
enum memfit_status mf_set_finish(memfit_tensors *set, bool check_overlap);

/* The safetensors dtype string of a type ("F32"), or NULL when safetensors cannot hold it. */
const char *mf_safetensors_dtype_name(enum memfit_type type);

/* Byte size of one element of a fixed-size metadata type, 0 for STRING/ARRAY/unknown. */
size_t mf_meta_scalar_bytes(enum memfit_meta_type type);

/* Decodes a fixed-size little-endian scalar of `type` at p into *out. */
void mf_meta_decode_scalar(enum memfit_meta_type type, const uint8_t *p,
                           struct memfit_meta_value *out);

/* Little-endian loads (unaligned). */
static inline uint16_t mf_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t mf_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t mf_le64(const uint8_t *p)
{
    return (uint64_t)mf_le32(p) | ((uint64_t)mf_le32(p + 4) << 32);
}

#endif
