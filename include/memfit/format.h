/*
 * memfit format: GGUF, safetensors and PyTorch `.pth` files as read-only,
 * memory-mapped tensor sets, and writers for GGUF and safetensors.
 *
 * One API over the three formats. Opening a file maps it whole (PROT_READ,
 * MAP_SHARED) and parses only its header: the cost is O(metadata), never
 * O(file), and no tensor byte is read or copied. Each tensor is a view into
 * the mapping.
 *
 * Shape convention (all formats): `shape[0]` is the OUTERMOST axis and
 * `shape[n_dims-1]` the innermost, contiguous one — numpy/PyTorch order, the
 * order safetensors and `.pth` store. GGUF stores `ne[]` innermost-first
 * (ggml order); the reader reverses it (shape[i] = ne[n_dims-1-i]) and the
 * GGUF writer reverses it back. A Linear weight [out, in] therefore reads
 * as {out, in} from every format, and quantized blocks run along the last
 * axis (shape[n_dims-1] must be a multiple of the block size).
 *
 * Tensors are always contiguous, row-major views; a `.pth` tensor with other
 * strides is rejected at open with E_UNSUPPORTED naming it.
 *
 * Handles are not thread-safe for open/close, but every accessor below only
 * reads, so one open set may be shared by threads once opened.
 */
#ifndef MEMFIT_FORMAT_H
#define MEMFIT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "memfit/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most dimensions a tensor may have (ggml has 4; files may have up to 8). */
#define MEMFIT_TENSOR_MAX_DIMS 8

enum memfit_format {
    MEMFIT_FORMAT_UNKNOWN = 0,
    MEMFIT_FORMAT_GGUF = 1,
    MEMFIT_FORMAT_SAFETENSORS = 2,
    MEMFIT_FORMAT_PTH = 3,
};

/* "gguf", "safetensors", "pth" or "unknown"; never NULL. */
MEMFIT_API const char *memfit_format_name(enum memfit_format format);

/*
 * The format a file name asks for by its extension (".gguf", ".safetensors",
 * ".pth"/".pt"/".bin"), or MEMFIT_FORMAT_UNKNOWN.
 */
MEMFIT_API enum memfit_format memfit_format_from_path(const char *path);

/* An open tensor set. */
typedef struct memfit_tensors memfit_tensors;

struct memfit_tensors_options {
    /* MEMFIT_FORMAT_UNKNOWN (default): detect by magic, then extension. */
    enum memfit_format format;
    /*
     * GGUF: ggml requires each tensor's offset to equal the running sum of
     * the padded sizes before it. By default a file that breaks only that
     * rule (but is in bounds, aligned and without overlap) opens with a
     * warning in the log; with `strict` it is an E_FORMAT error.
     */
    bool strict;
};

/* Fills `opts` with the defaults. */
MEMFIT_API void memfit_tensors_options_default(struct memfit_tensors_options *opts);

/*
 * Opens `path` (opts may be NULL for the defaults) and writes a new set to
 * *out. The format comes from the file's magic bytes (GGUF, zip = `.pth`,
 * safetensors' header) or, failing that, the extension.
 * Failures: E_IO (cannot open/map), E_FORMAT (malformed: the message names
 * the file, the field, the bad value and the limit), E_UNSUPPORTED (a valid
 * file using something memfit does not read: a dtype, a compressed record,
 * a pickle global, the legacy `.pth` format), E_NOMEM. Nothing is leaked and
 * *out is untouched on failure. Close the set with memfit_tensors_close().
 */
MEMFIT_API enum memfit_status memfit_tensors_open(const char *path,
                                                  const struct memfit_tensors_options *opts,
                                                  memfit_tensors **out);

/*
 * Opens a tensor set from the first `head_len` bytes of a `file_bytes`-byte
 * file, without its data: what a model's memory plan needs (names, shapes,
 * types, offsets, metadata) before the file is downloaded. `head` is
 * copied; `format` may be MEMFIT_FORMAT_UNKNOWN (magic, then `name`'s
 * extension); `name` is used in messages and as the set's path.
 *
 * Every check of memfit_tensors_open is made, tensor offsets against
 * `file_bytes`. Reads GGUF (the key/values and tensor infos must be in the
 * head) and safetensors (the 8-byte length and the JSON header); a `.pth`
 * is E_UNSUPPORTED here (its zip directory sits at the end of the file:
 * see memfit_tensors_open_pth_header).
 *
 * When the head is too short to go on, returns MEMFIT_OK with *out = NULL
 * and *out_need_bytes = the head length needed to get further (more than
 * head_len, at most file_bytes): read that much (or more: a GGUF header's
 * size is not known in advance, so grow geometrically) and call again. On
 * success *out is the set and *out_need_bytes 0. A header-only set answers
 * every accessor except tensor data: memfit_tensor_info.data is NULL
 * (memfit_tensors_header_only() tells), so a loader refuses it.
 * Failures: those of memfit_tensors_open, E_MISUSE when head_len >
 * file_bytes; nothing is written then.
 */
MEMFIT_API enum memfit_status memfit_tensors_open_header(const void *head, size_t head_len,
                                                         uint64_t file_bytes,
                                                         enum memfit_format format,
                                                         const char *name, memfit_tensors **out,
                                                         uint64_t *out_need_bytes);

/* What memfit_tensors_open_pth_header needs read next. */
struct memfit_pth_need {
    uint64_t tail_bytes;    /* > the tail given: read the file's last tail_bytes bytes */
    uint64_t record_offset; /* else read [record_offset, +record_bytes) as the record */
    uint64_t record_bytes;
};

/*
 * Opens a header-only tensor set (as memfit_tensors_open_header) from a
 * PyTorch `.pth` (torch.save zip) without its data: `tail` is the last
 * `tail_len` bytes of the `file_bytes`-byte file (the zip's end record,
 * zip64 records and central directory) and `record`, when not NULL, the
 * `record_len` bytes at `record_offset` (the data.pkl member: its local
 * header, name, extra field and stored bytes). Both are only read during
 * the call (the set copies what it keeps); `name` is used in messages and
 * as the set's path.
 *
 * Protocol: call first with the last 64 KiB or so and no record. When
 * more is needed, returns MEMFIT_OK with *out = NULL and *out_need filled:
 * a longer tail (tail_bytes > tail_len), else the record range to read;
 * read it and call again. On success *out is the set (*out_need zeroed).
 *
 * Each tensor's data offset is the one torch.save writes (its records are
 * 64-byte aligned after a local header with a padding extra field), taken
 * from the central directory without reading each member's local header;
 * the data.pkl record is checked to follow that rule. Fails with
 * E_UNSUPPORTED for an archive whose layout differs (re-packed by another
 * zip tool, compressed records): the caller falls back to downloading.
 * Other failures: those of memfit_tensors_open (E_FORMAT naming the file,
 * the field, the value and the limit), E_MISUSE (NULL arguments, tail_len
 * > file_bytes, a record past the file's end), E_NOMEM. Nothing is written
 * on failure.
 */
MEMFIT_API enum memfit_status memfit_tensors_open_pth_header(const void *tail, size_t tail_len,
                                                             const void *record, size_t record_len,
                                                             uint64_t record_offset,
                                                             uint64_t file_bytes, const char *name,
                                                             memfit_tensors **out,
                                                             struct memfit_pth_need *out_need);

/*
 * Writes a stand-in for the file a header-only set was read from: a new
 * sparse file at `path` (created, must not exist) of the file's size
 * holding the bytes the set was read from (a head; for a `.pth`, the tail,
 * the data.pkl record and each member's local header), its tensor data
 * reading as zeros. memfit_tensors_open() of it gives the same tensors
 * (names, types, shapes, offsets), so a model's plan can be computed by the
 * code that plans a local file. E_MISUSE for a set that is not
 * header-only; E_IO, E_NOSPACE (the file is removed then).
 */
MEMFIT_API enum memfit_status memfit_tensors_write_standin(const memfit_tensors *set,
                                                           const char *path);

/*
 * Gives back the memory of tensor `index`'s data once a caller is done with
 * it (a streaming converter): its whole pages leave the process's RSS
 * (madvise MADV_DONTNEED: they read back from the file if touched again)
 * and the file's page cache for its range is dropped (posix_fadvise; pages
 * another mapping uses stay). Best effort, never fails; a tensor that is
 * not a view of the file (an inflated record) or of a header-only set is
 * left alone.
 */
MEMFIT_API void memfit_tensors_release(const memfit_tensors *set, size_t index);

/* True for a set opened with memfit_tensors_open_header (its tensor data is not readable). */
MEMFIT_API bool memfit_tensors_header_only(const memfit_tensors *set);

/* Unmaps the file and frees the set; every pointer it gave becomes invalid. NULL is a no-op. */
MEMFIT_API void memfit_tensors_close(memfit_tensors *set);

MEMFIT_API enum memfit_format memfit_tensors_format(const memfit_tensors *set);

/* The path the set was opened from (owned by the set). */
MEMFIT_API const char *memfit_tensors_path(const memfit_tensors *set);

/* Size of the file in bytes (the whole file's, for a header-only set). */
MEMFIT_API uint64_t memfit_tensors_file_bytes(const memfit_tensors *set);

/* GGUF version (2 or 3); 0 for the other formats. */
MEMFIT_API uint32_t memfit_tensors_version(const memfit_tensors *set);

/* Number of tensors. */
MEMFIT_API size_t memfit_tensors_count(const memfit_tensors *set);

/*
 * One tensor. Pointers are borrowed from the set and valid until it is
 * closed. `data` points into the read-only mapping: never write through it.
 */
struct memfit_tensor_info {
    const char *name;
    enum memfit_type type;
    uint32_t n_dims;
    int64_t shape[MEMFIT_TENSOR_MAX_DIMS]; /* outermost first; unused entries are 1 */
    uint64_t n_elements;
    uint64_t n_bytes;
    uint64_t file_offset; /* of the first byte, from the start of the file; UINT64_MAX
                             when the data is not stored as-is in the file (a compressed
                             .pth record, inflated into memory the set owns) */
    const void *data;
};

/*
 * Describes tensor `index` (in file order: GGUF tensor-info order,
 * safetensors data-offset order, `.pth` pickle order) into *out.
 * E_RANGE when index >= count.
 */
MEMFIT_API enum memfit_status memfit_tensors_get(const memfit_tensors *set, size_t index,
                                                 struct memfit_tensor_info *out);

/*
 * Finds a tensor by exact name (O(log n)); E_NOT_FOUND naming it otherwise.
 * `out_index` may be NULL.
 */
MEMFIT_API enum memfit_status memfit_tensors_find(const memfit_tensors *set, const char *name,
                                                  struct memfit_tensor_info *out,
                                                  size_t *out_index);

/* ---- Composite sets ---------------------------------------------------- */
/*
 * A set assembled from other sets: their tensors under new names (bytes used
 * in place) and the metadata of one of them, for a model stored as several
 * files (a Hugging Face repository: safetensors shards and JSON). `path`
 * names the whole (a directory) in messages; `format` is what
 * memfit_tensors_format() will say. memfit_tensors_file_bytes() is the sum
 * of the adopted sets'. Build it with begin, adopt each part (the composite
 * owns it from then on, even when adopt fails), compose_meta /
 * compose_tensor, then finish (the name index; duplicate names fail with
 * E_FORMAT); close it with memfit_tensors_close (which closes the parts).
 * On a failure close the unfinished set.
 */
MEMFIT_API enum memfit_status
memfit_tensors_compose_begin(const char *path, enum memfit_format format, memfit_tensors **out);
MEMFIT_API enum memfit_status memfit_tensors_compose_adopt(memfit_tensors *set,
                                                           memfit_tensors *part);
/* Copies every metadata entry of `from` (an adopted part: values stay in its mapping). */
MEMFIT_API enum memfit_status memfit_tensors_compose_meta(memfit_tensors *set,
                                                          const memfit_tensors *from);
/* Adds tensor `index` of `from` (an adopted part) under `name`. */
MEMFIT_API enum memfit_status memfit_tensors_compose_tensor(memfit_tensors *set, const char *name,
                                                            const memfit_tensors *from,
                                                            size_t index);
MEMFIT_API enum memfit_status memfit_tensors_compose_finish(memfit_tensors *set);

/* ---- bitsandbytes NF4 ---------------------------------------------------- */
/*
 * The NF4 matrix stored under `name` the way bitsandbytes'
 * Linear4bit._save_to_state_dict writes it: `name` U8 packed codes,
 * `name.absmax` (F32, or U8 with double quantization plus
 * `name.nested_absmax` F32 and `name.nested_quant_map` F32[256]),
 * optionally `name.quant_map` F32[16], and `name.quant_state.bitsandbytes__nf4`,
 * a U8 tensor of JSON: quant_type, blocksize, shape [rows, cols] (and
 * nested_blocksize, nested_offset). Every size is checked against the shape;
 * *out points into the set's mapping (valid until it is closed) and has
 * passed memfit_nf4_matrix_check. E_NOT_FOUND when `name` has no NF4 quant
 * state, E_UNSUPPORTED for FP4 or a quant_map other than NF4's, E_FORMAT
 * naming the tensor and field for anything inconsistent.
 */
MEMFIT_API enum memfit_status memfit_tensors_nf4(const memfit_tensors *set, const char *name,
                                                 struct memfit_nf4_matrix *out);

/* ---- Metadata ---------------------------------------------------------- */

/* Value types: GGUF's ids. safetensors' __metadata__ values are all STRING. */
enum memfit_meta_type {
    MEMFIT_META_U8 = 0,
    MEMFIT_META_I8 = 1,
    MEMFIT_META_U16 = 2,
    MEMFIT_META_I16 = 3,
    MEMFIT_META_U32 = 4,
    MEMFIT_META_I32 = 5,
    MEMFIT_META_F32 = 6,
    MEMFIT_META_BOOL = 7,
    MEMFIT_META_STRING = 8,
    MEMFIT_META_ARRAY = 9,
    MEMFIT_META_U64 = 10,
    MEMFIT_META_I64 = 11,
    MEMFIT_META_F64 = 12,
};

/* "u8", "i32", "string", "array", ...; "?" for an unknown id. */
MEMFIT_API const char *memfit_meta_type_name(enum memfit_meta_type type);

/*
 * A metadata value. Scalars are decoded. A string is `str.len` bytes at
 * `str.data`, NOT NUL-terminated (GGUF strings live in the mapping). An
 * array holds `count` elements of `elem_type` encoded as in the file
 * (little-endian, packed) starting at `raw`; read them with
 * memfit_meta_array_get() or memfit_meta_array_next(). Every value was
 * bounds-checked at open, so reading one cannot fail.
 */
struct memfit_meta_value {
    enum memfit_meta_type type;
    union {
        uint64_t u; /* U8, U16, U32, U64, BOOL (0/1) */
        int64_t i;  /* I8, I16, I32, I64 */
        double f;   /* F32, F64 */
        struct {
            const char *data;
            uint64_t len;
        } str;
        struct {
            enum memfit_meta_type elem_type;
            uint64_t count;
            const void *raw;
            uint64_t raw_bytes;
        } array;
    } v;
};

/* Number of metadata entries (GGUF key/values; safetensors __metadata__; 0 for .pth). */
MEMFIT_API size_t memfit_tensors_meta_count(const memfit_tensors *set);

/*
 * Entry `index`: its key (a NUL-terminated string owned by the set) and value.
 * E_RANGE when index >= count. Either out pointer may be NULL.
 */
MEMFIT_API enum memfit_status memfit_tensors_meta_get(const memfit_tensors *set, size_t index,
                                                      const char **out_key,
                                                      struct memfit_meta_value *out_value);

/* The value of `key`; E_NOT_FOUND naming the key when absent. */
MEMFIT_API enum memfit_status memfit_tensors_meta_find(const memfit_tensors *set, const char *key,
                                                       struct memfit_meta_value *out);

/*
 * Element `index` of an array value. O(1) for fixed-size elements; O(index)
 * for strings and nested arrays (walk them with memfit_meta_array_next).
 * E_RANGE when index >= count, E_MISUSE when `array` is not an array.
 */
MEMFIT_API enum memfit_status memfit_meta_array_get(const struct memfit_meta_value *array,
                                                    uint64_t index, struct memfit_meta_value *out);

/*
 * Walks an array in order: start with *cursor = 0; each call writes the
 * element at *cursor into *out and advances the cursor. Returns false (and
 * writes nothing) after the last element.
 */
MEMFIT_API bool memfit_meta_array_next(const struct memfit_meta_value *array, uint64_t *cursor,
                                       struct memfit_meta_value *out);

/*
 * The value as an unsigned integer (any integer type holding a non-negative
 * value, or BOOL). E_RANGE for a negative value, E_MISUSE for other types.
 */
MEMFIT_API enum memfit_status memfit_meta_value_u64(const struct memfit_meta_value *value,
                                                    uint64_t *out);

/* The value as a double (any integer or float type). E_MISUSE for others. */
MEMFIT_API enum memfit_status memfit_meta_value_f64(const struct memfit_meta_value *value,
                                                    double *out);

/* ---- Writers ----------------------------------------------------------- */

/*
 * A streaming writer for GGUF (v3) and safetensors. Memory stays bounded by
 * the header: tensor data goes straight to the file at precomputed offsets.
 *
 *   memfit_writer_create(path, format, &w);
 *   memfit_writer_set_meta(w, "general.architecture", &string_value);  (any number)
 *   memfit_writer_add_tensor(w, name, type, n_dims, shape);            (every tensor)
 *   memfit_writer_write_tensor(w, index, 0, data, n_bytes);            (each, any order,
 *                                                                       in chunks if wanted)
 *   memfit_writer_commit(w);                                           (fsync + rename)
 *   memfit_writer_destroy(w);
 *
 * The file is written to a temporary file beside `path` and renamed over it
 * only by a successful commit; destroying an uncommitted writer removes the
 * temporary file. GGUF tensors keep the order they were added, each aligned
 * to `general.alignment` (32 unless set as a u32 meta key). safetensors
 * tensors are laid out like the reference writer's: by element size
 * (largest first), then name; the header JSON has sorted keys and is padded
 * with spaces to a multiple of 8.
 */
typedef struct memfit_writer memfit_writer;

/* Starts a file of `format` (GGUF or SAFETENSORS) at `path`. E_IO when the temp file cannot be
 * made. */
MEMFIT_API enum memfit_status memfit_writer_create(const char *path, enum memfit_format format,
                                                   memfit_writer **out);

/*
 * Adds (or replaces) a metadata entry; the value (strings and arrays
 * included) is copied. safetensors takes STRING values only (E_UNSUPPORTED
 * otherwise). E_MISUSE after the first tensor write.
 */
MEMFIT_API enum memfit_status memfit_writer_set_meta(memfit_writer *w, const char *key,
                                                     const struct memfit_meta_value *value);

/* Shorthand for a STRING entry. */
MEMFIT_API enum memfit_status memfit_writer_set_meta_string(memfit_writer *w, const char *key,
                                                            const char *value);

/*
 * ggml limits tensor names to 63 bytes. A longer name is stored in GGUF
 * shortened by a fixed table of abbreviations of known models' long name
 * parts (SAM's "cross_attn_token_to_image" -> "t2i", ...), applied in order
 * until it fits; loaders look such a tensor up under the same short name.
 * Writes the short name into buf and returns true when it fits in 63 bytes
 * (and in `size`); false otherwise. Names already short are not asked for.
 */
MEMFIT_API bool memfit_gguf_short_name(const char *name, char *buf, size_t size);

/*
 * Declares a tensor (shape outermost-first, see the top of this header).
 * E_UNSUPPORTED when the format cannot hold `type` (safetensors: quantized
 * types; GGUF: U8, BOOL, NF4), E_EXISTS on a duplicate name, E_FORMAT when
 * the innermost dimension is not a multiple of the type's block, E_RANGE on
 * size overflow, E_MISUSE after the first tensor write.
 */
MEMFIT_API enum memfit_status memfit_writer_add_tensor(memfit_writer *w, const char *name,
                                                       enum memfit_type type, uint32_t n_dims,
                                                       const int64_t *shape);

/*
 * Writes `n_bytes` of tensor `index`'s data, starting at byte `offset` of the
 * tensor. The chunks of one tensor must come in order (offset equal to what
 * was already written). The first call writes the header.
 * E_RANGE past the tensor's size, E_IO / E_NOSPACE on a write error.
 */
MEMFIT_API enum memfit_status memfit_writer_write_tensor(memfit_writer *w, size_t index,
                                                         uint64_t offset, const void *data,
                                                         size_t n_bytes);

/*
 * Checks every tensor was written in full, flushes, fsyncs and renames the
 * file into place. E_MISUSE naming an incomplete tensor; E_IO on failure
 * (the temporary file is then removed by destroy).
 */
MEMFIT_API enum memfit_status memfit_writer_commit(memfit_writer *w);

/* Frees the writer, removing its temporary file if it was not committed. NULL is a no-op. */
MEMFIT_API void memfit_writer_destroy(memfit_writer *w);

#ifdef __cplusplus
}
#endif

#endif
