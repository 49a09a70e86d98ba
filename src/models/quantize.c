/*
 * memfit_quantize_file: rewrites a model file with its weights converted to a
 * float type, a ggml quantized type (GGUF output), a llama.cpp-like Q4_K_M
 * mix, or bitsandbytes NF4 (safetensors output, in the layout bitsandbytes
 * saves, so either side loads the other's files); and the one rule that
 * picks each tensor's type, which `memfit inspect` estimates with.
 *
 * Memory stays bounded whatever the model size: the input is mapped, each
 * tensor is converted in chunks of 64 Ki-element pieces into one bounded
 * output buffer and written with the streaming writer, and the input pages
 * already converted are released (madvise + posix_fadvise). The pieces of a
 * chunk are shared among threads (created per chunk: a chunk is milliseconds
 * of work, so thread start-up is noise). Only NF4 holds one array per
 * tensor: its absmax values (1/16 of the tensor's F32 size), needed whole for
 * double quantization.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memfit/format.h"
#include "memfit/models.h"
#include "models/rewrite.h"

#define PIECE_ELEMS      ((uint64_t)65536) /* a multiple of every block size (1, 32, 64, 256) */
#define NF4_BLOCK        64u
#define NF4_NESTED_BLOCK 256u

/* What each target means: its tensor type (Q4_K for the mix, NF4's codes) and
 * GGUF's general.file_type (llama_ftype). */
static const struct {
    const char *name;
    enum memfit_type type;
    uint32_t file_type;
} targets[MEMFIT_QUANTIZE_TARGET_COUNT] = {
    [MEMFIT_QUANTIZE_F32] = {"f32", MEMFIT_TYPE_F32, 0},
    [MEMFIT_QUANTIZE_F16] = {"f16", MEMFIT_TYPE_F16, 1},
    [MEMFIT_QUANTIZE_BF16] = {"bf16", MEMFIT_TYPE_BF16, 32},
    [MEMFIT_QUANTIZE_Q8_0] = {"q8_0", MEMFIT_TYPE_Q8_0, 7},
    [MEMFIT_QUANTIZE_Q4_0] = {"q4_0", MEMFIT_TYPE_Q4_0, 2},
    [MEMFIT_QUANTIZE_Q4_K] = {"q4_k", MEMFIT_TYPE_Q4_K, 14}, /* MOSTLY_Q4_K_S: Q4_K throughout */
    [MEMFIT_QUANTIZE_Q6_K] = {"q6_k", MEMFIT_TYPE_Q6_K, 18},
    [MEMFIT_QUANTIZE_Q4_K_M] = {"q4_k_m", MEMFIT_TYPE_Q4_K, 15},
    [MEMFIT_QUANTIZE_NF4] = {"nf4", MEMFIT_TYPE_NF4, 0},
};

static bool target_valid(enum memfit_quantize_target t)
{
    return (unsigned)t < MEMFIT_QUANTIZE_TARGET_COUNT;
}

const char *memfit_quantize_target_name(enum memfit_quantize_target target)
{
    return target_valid(target) ? targets[target].name : "?";
}

enum memfit_status memfit_quantize_target_parse(const char *text, enum memfit_quantize_target *out)
{
    if (!text || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_quantize_target_parse: NULL argument");
    for (int t = 0; t < MEMFIT_QUANTIZE_TARGET_COUNT; t++)
        if (strcasecmp(text, targets[t].name) == 0) {
            *out = (enum memfit_quantize_target)t;
            return MEMFIT_OK;
        }
    return memfit_fail(MEMFIT_E_INVALID,
                       "unknown quantization type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, "
                       "q4_k_m, nf4)",
                       text);
}

/* ---- choosing types ---------------------------------------------------- */

static bool is_float(enum memfit_type t)
{
    return t == MEMFIT_TYPE_F32 || t == MEMFIT_TYPE_F16 || t == MEMFIT_TYPE_BF16;
}

/* A type we can turn into floats: the float types and the readable ggml quants. */
static bool is_readable(enum memfit_type t)
{
    const struct memfit_type_info *info = memfit_type_get_info(t);
    float probe[256];
    uint8_t zero[512] = {0};
    if (is_float(t))
        return true;
    if (!info || !info->is_quantized || t == MEMFIT_TYPE_NF4 || info->block_size > 256 ||
        info->type_size > sizeof(zero))
        return false;
    return memfit_type_dequantize_row(t, zero, probe, info->block_size) == MEMFIT_OK;
}

static bool name_has(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

static bool is_norm(const char *name)
{
    return name_has(name, "norm") || name_has(name, "ln_");
}

/*
 * Tables a model reads as floats rather than multiplies as a matrix:
 * position embeddings and relative-position tables, learned tokens and
 * prompt embeddings, and SAM's small (transposed) convolutions. Quantizing
 * them saves little and the loader would convert them back to F32.
 */
static bool is_table(const char *name)
{
    static const char *const parts[] = {
        "pos_embed",         "rel_pos_",    "positional_",       "iou_token",
        "mask_tokens",       "point_embed", "not_a_point_embed", "no_mask_embed",
        "mask_downscaling.", "mask_embed.", "output_upscaling.", "upscale_conv",
    };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (name_has(name, parts[i]))
            return true;
    return false;
}

static bool is_output(const char *name)
{
    return strcmp(name, "output.weight") == 0 || strcmp(name, "lm_head.weight") == 0 ||
           name_has(name, ".lm_head.weight");
}

static bool is_embedding(const char *name)
{
    return name_has(name, "token_embd") || name_has(name, "embed_tokens") ||
           name_has(name, "wte") || name_has(name, "word_embeddings");
}

/* The layer number in "blk.N." / "layers.N." / "h.N.", or -1. */
static long layer_of(const char *name)
{
    static const char *const marks[] = {"blk.", "layers.", "h."};
    for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
        const char *p = strstr(name, marks[m]);
        if (p && (p == name || p[-1] == '.') && p[strlen(marks[m])] >= '0' &&
            p[strlen(marks[m])] <= '9') {
            char *end;
            long v = strtol(p + strlen(marks[m]), &end, 10);
            if (*end == '.' || *end == '\0')
                return v;
        }
    }
    return -1;
}

/* llama.cpp's use_more_bits(i, n). */
static bool more_bits(long i, long n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool row_fits(const struct memfit_tensor_info *t, enum memfit_type type)
{
    const struct memfit_type_info *info = memfit_type_get_info(type);
    int64_t row = t->n_dims ? t->shape[t->n_dims - 1] : 1;
    return info && row % info->block_size == 0;
}

uint32_t memfit_quantize_layer_count(const memfit_tensors *set)
{
    long n = 0;
    struct memfit_tensor_info t;
    for (size_t i = 0; set && i < memfit_tensors_count(set); i++) {
        if (memfit_tensors_get(set, i, &t) != MEMFIT_OK)
            continue;
        long l = layer_of(t.name);
        if (l + 1 > n)
            n = l + 1;
    }
    return n > (long)UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static enum memfit_type choose(const struct memfit_tensor_info *t,
                               enum memfit_quantize_target target, uint32_t n_layers,
                               enum memfit_quantize_reason *why)
{
    if (!is_readable(t->type)) {
        *why = MEMFIT_QUANTIZE_REASON_COPY;
        return t->type;
    }
    if (t->n_dims < 2 || t->n_elements == (uint64_t)t->shape[t->n_dims - 1] || is_norm(t->name) ||
        is_table(t->name)) {
        *why = MEMFIT_QUANTIZE_REASON_SMALL;
        return MEMFIT_TYPE_F32;
    }
    *why = MEMFIT_QUANTIZE_REASON_TARGET;
    enum memfit_type want = targets[target].type;
    if (target == MEMFIT_QUANTIZE_NF4) {
        /* As transformers does: embeddings and the output head stay in float. */
        if (is_embedding(t->name) || is_output(t->name)) {
            *why = MEMFIT_QUANTIZE_REASON_KEEP;
            return is_float(t->type) ? t->type : MEMFIT_TYPE_F16;
        }
        return want;
    }
    if (target == MEMFIT_QUANTIZE_Q4_K_M) {
        long layer = layer_of(t->name);
        bool v_or_down = name_has(t->name, "attn_v") || name_has(t->name, "ffn_down") ||
                         name_has(t->name, "v_proj") || name_has(t->name, "down_proj");
        if (is_output(t->name) ||
            (v_or_down && (layer < 0 || n_layers == 0 || more_bits(layer, (long)n_layers)))) {
            want = MEMFIT_TYPE_Q6_K;
            *why = MEMFIT_QUANTIZE_REASON_MORE_BITS;
        }
    }
    if (!row_fits(t, want)) {
        /* As llama.cpp does for K-quant rows not a multiple of 256 (Qwen1.5-1.8B's
         * ffn_down, 5504 columns): a 32-block type of about the same bits. Q6_K ->
         * Q8_0 as there; Q4_K -> Q4_0 (llama.cpp uses Q5_0, which has no quantizer here). */
        enum memfit_type fallback = want == MEMFIT_TYPE_Q6_K   ? MEMFIT_TYPE_Q8_0
                                    : want == MEMFIT_TYPE_Q4_K ? MEMFIT_TYPE_Q4_0
                                                               : MEMFIT_TYPE_F16;
        *why = MEMFIT_QUANTIZE_REASON_BLOCK;
        return row_fits(t, fallback) ? fallback : MEMFIT_TYPE_F16;
    }
    return want;
}

enum memfit_type memfit_quantize_tensor_type(const struct memfit_tensor_info *t,
                                             enum memfit_quantize_target target, uint32_t n_layers,
                                             enum memfit_quantize_reason *why)
{
    enum memfit_quantize_reason ignored;
    if (!t || !target_valid(target))
        return t ? t->type : MEMFIT_TYPE_F32;
    return choose(t, target, n_layers, why ? why : &ignored);
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

uint64_t memfit_quantize_tensor_bytes(const struct memfit_tensor_info *t,
                                      enum memfit_quantize_target target, uint32_t n_layers)
{
    enum memfit_type type = memfit_quantize_tensor_type(t, target, n_layers, NULL);
    uint64_t bytes;
    if (!t || type == t->type)
        return t ? t->n_bytes : 0;
    if (type == MEMFIT_TYPE_NF4) {
        uint64_t nb = ceil_div(t->n_elements, NF4_BLOCK);
        return ceil_div(t->n_elements, 2) + nb * sizeof(float);
    }
    return memfit_type_bytes(type, t->n_elements, &bytes) == MEMFIT_OK ? bytes : t->n_bytes;
}

static const char *torch_dtype(enum memfit_type t)
{
    return t == MEMFIT_TYPE_F32 ? "float32" : t == MEMFIT_TYPE_BF16 ? "bfloat16" : "float16";
}

/* ---- conversion workers ------------------------------------------------- */

/* One chunk of one tensor: elements [begin, end), cut into pieces among threads. */
struct job {
    const struct memfit_tensor_info *t;
    enum memfit_type out;
    uint64_t begin, end;
    uint8_t *out_buf;   /* the chunk's output bytes (codes for NF4) */
    float *absmax;      /* nf4: the tensor's absmax array */
    atomic_ullong next; /* the next piece's first element */
    atomic_int status;
    char error[256];
    pthread_mutex_t error_lock;
};

static void job_fail(struct job *j, enum memfit_status st)
{
    pthread_mutex_lock(&j->error_lock);
    if (atomic_load(&j->status) == MEMFIT_OK) {
        snprintf(j->error, sizeof(j->error), "%s: %s", j->t->name, memfit_last_error());
        atomic_store(&j->status, st);
    }
    pthread_mutex_unlock(&j->error_lock);
}

static void run_pieces(struct job *j, float *scratch)
{
    const struct memfit_type_info *in = memfit_type_get_info(j->t->type);
    const struct memfit_type_info *out =
        j->out == MEMFIT_TYPE_NF4 ? NULL : memfit_type_get_info(j->out);
    for (;;) {
        uint64_t e0 = atomic_fetch_add(&j->next, PIECE_ELEMS);
        if (e0 >= j->end || atomic_load(&j->status) != MEMFIT_OK)
            return;
        uint64_t n = j->end - e0 < PIECE_ELEMS ? j->end - e0 : PIECE_ELEMS;
        const uint8_t *src = (const uint8_t *)j->t->data + e0 / in->block_size * in->type_size;
        enum memfit_status st = memfit_type_dequantize_row(j->t->type, src, scratch, n);
        if (st == MEMFIT_OK && out) {
            uint8_t *dst = j->out_buf + (e0 - j->begin) / out->block_size * out->type_size;
            st = memfit_type_quantize_row(j->out, scratch, dst, n);
        } else if (st == MEMFIT_OK) {
            st = memfit_nf4_quantize(scratch, n, NF4_BLOCK, j->out_buf + (e0 - j->begin) / 2,
                                     j->absmax + e0 / NF4_BLOCK);
        }
        if (st != MEMFIT_OK) {
            job_fail(j, st);
            return;
        }
    }
}

static void *worker(void *arg)
{
    struct job *j = arg;
    float *scratch = memfit_malloc(PIECE_ELEMS * sizeof(float));
    if (!scratch)
        job_fail(j, MEMFIT_E_NOMEM);
    else
        run_pieces(j, scratch);
    memfit_free(scratch);
    return NULL;
}

/* Converts the chunk with `threads` threads (the caller is one of them). */
static enum memfit_status run_job(struct job *j, unsigned threads, float *scratch)
{
    pthread_t tid[256];
    unsigned started = 0;
    for (unsigned i = 1; i < threads && i < 256; i++) {
        if (pthread_create(&tid[started], NULL, worker, j) != 0)
            break; /* fewer threads is still correct */
        started++;
    }
    run_pieces(j, scratch);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (atomic_load(&j->status) != MEMFIT_OK)
        return memfit_fail((enum memfit_status)atomic_load(&j->status), "%s", j->error);
    return MEMFIT_OK;
}

/* ---- the conversion ------------------------------------------------------- */

/* One input tensor's plan: the output type and the writer indexes it fills. */
struct plan {
    enum memfit_type out;
    enum memfit_quantize_reason why;
    size_t w_index; /* the (first) writer tensor */
    char *qstate;   /* nf4: the quant_state JSON (owned) */
};

struct run {
    const struct memfit_quantize_options *o;
    memfit_tensors *in;
    memfit_writer *w;
    enum memfit_format fmt;
    unsigned threads;
    int in_fd; /* for posix_fadvise; -1 if unavailable */
    struct plan *plans;
    size_t n;
    uint8_t *buf; /* the chunk output buffer */
    uint64_t buf_bytes;
    float *scratch;
    struct memfit_quantize_progress progress;
    uint64_t out_bytes;
    size_t meta_skipped;
    size_t meta_added; /* DINOv2 keys the input lacked */
};

static void report_progress(const struct run *r)
{
    if (r->o->progress)
        r->o->progress(&r->progress, r->o->progress_user);
}

static bool cancelled(const struct run *r)
{
    return r->o->cancel && __atomic_load_n(r->o->cancel, __ATOMIC_RELAXED) != 0;
}

static enum memfit_status add_u8(memfit_writer *w, const char *base, const char *suffix,
                                 enum memfit_type type, int64_t n)
{
    char *name = memfit_asprintf("%s%s", base, suffix);
    if (!name)
        return MEMFIT_E_NOMEM;
    int64_t shape[1] = {n};
    enum memfit_status st = memfit_writer_add_tensor(w, name, type, 1, shape);
    memfit_free(name);
    return st;
}

/* Declares NF4 tensor `t`'s bitsandbytes tensors (weight, absmax, quant_map, nested stats,
 * quant_state) at writer indexes p->w_index onwards. The JSON's nested_offset is known only
 * after the data pass, so it gets a fixed-width placeholder ("% .9e": a space is JSON whitespace)
 * patched in place by finish_nf4. */
static enum memfit_status add_nf4(struct run *r, const struct memfit_tensor_info *t, struct plan *p)
{
    uint64_t nb = ceil_div(t->n_elements, NF4_BLOCK);
    int64_t shape[2] = {(int64_t)ceil_div(t->n_elements, 2), 1};
    enum memfit_status st = memfit_writer_add_tensor(r->w, t->name, MEMFIT_TYPE_U8, 2, shape);
    if (st == MEMFIT_OK)
        st = add_u8(r->w, t->name, ".absmax", r->o->double_quant ? MEMFIT_TYPE_U8 : MEMFIT_TYPE_F32,
                    (int64_t)nb);
    if (st == MEMFIT_OK)
        st = add_u8(r->w, t->name, ".quant_map", MEMFIT_TYPE_F32, 16);
    if (st == MEMFIT_OK && r->o->double_quant)
        st = add_u8(r->w, t->name, ".nested_absmax", MEMFIT_TYPE_F32,
                    (int64_t)ceil_div(nb, NF4_NESTED_BLOCK));
    if (st == MEMFIT_OK && r->o->double_quant)
        st = add_u8(r->w, t->name, ".nested_quant_map", MEMFIT_TYPE_F32, 256);
    if (st != MEMFIT_OK)
        return st;
    /* The quant_state JSON, as bitsandbytes' json.dumps writes it. */
    char dims[MEMFIT_TENSOR_MAX_DIMS * 24] = "";
    size_t used = 0;
    for (uint32_t d = 0; d < t->n_dims; d++)
        used += (size_t)snprintf(dims + used, sizeof(dims) - used, "%s%lld", d ? ", " : "",
                                 (long long)t->shape[d]);
    const char *dtype = torch_dtype(t->type);
    if (r->o->double_quant)
        p->qstate = memfit_asprintf(
            "{\"quant_type\": \"nf4\", \"blocksize\": %u, \"dtype\": \"%s\", \"shape\": [%s], "
            "\"nested_blocksize\": %u, \"nested_dtype\": \"float32\", \"nested_offset\": "
            "% .9e}",
            NF4_BLOCK, dtype, dims, NF4_NESTED_BLOCK, 0.0);
    else
        p->qstate = memfit_asprintf(
            "{\"quant_type\": \"nf4\", \"blocksize\": %u, \"dtype\": \"%s\", \"shape\": [%s]}",
            NF4_BLOCK, dtype, dims);
    if (!p->qstate)
        return MEMFIT_E_NOMEM;
    return add_u8(r->w, t->name, ".quant_state.bitsandbytes__nf4", MEMFIT_TYPE_U8,
                  (int64_t)strlen(p->qstate));
}

/* True when a keep pattern matches the tensor's name. */
static bool kept(const struct memfit_quantize_options *o, const char *name)
{
    for (size_t k = 0; k < o->n_keep; k++)
        if (o->keep[k] && fnmatch(o->keep[k], name, 0) == 0)
            return true;
    return false;
}

static enum memfit_status plan_all(struct run *r)
{
    enum memfit_status st = memfit_rewrite_copy_meta(r->in, r->w, r->fmt, &r->meta_skipped);
    if (st == MEMFIT_OK)
        st = memfit_rewrite_add_vit_meta(r->in, r->w, &r->meta_added);
    if (st != MEMFIT_OK)
        return st;
    if (r->fmt == MEMFIT_FORMAT_GGUF) {
        struct memfit_meta_value v = {.type = MEMFIT_META_U32,
                                      .v.u = targets[r->o->target].file_type};
        if ((st = memfit_writer_set_meta(r->w, "general.file_type", &v)) != MEMFIT_OK)
            return st;
        v.v.u = 2; /* ggml's current quantization version */
        if (r->o->target > MEMFIT_QUANTIZE_BF16 &&
            (st = memfit_writer_set_meta(r->w, "general.quantization_version", &v)) != MEMFIT_OK)
            return st;
    }
    uint32_t n_layers = memfit_quantize_layer_count(r->in);
    size_t w_index = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct memfit_tensor_info t;
        memfit_tensors_get(r->in, i, &t);
        struct plan *p = &r->plans[i];
        p->why = MEMFIT_QUANTIZE_REASON_KEEP;
        p->out = kept(r->o, t.name) ? t.type : choose(&t, r->o->target, n_layers, &p->why);
        p->w_index = w_index;
        if (p->out == MEMFIT_TYPE_NF4) {
            st = add_nf4(r, &t, p);
            w_index += r->o->double_quant ? 6 : 4;
        } else {
            st = memfit_writer_add_tensor(r->w, t.name, p->out, t.n_dims, t.shape);
            w_index++;
        }
        if (st != MEMFIT_OK)
            return st;
        r->progress.bytes_total += t.n_bytes;
    }
    return MEMFIT_OK;
}

static enum memfit_status write_f32s(struct run *r, size_t index, const float *v, uint64_t n)
{
    r->out_bytes += n * sizeof(float);
    return memfit_writer_write_tensor(r->w, index, 0, v, (size_t)(n * sizeof(float)));
}

/* Writes NF4's side tensors from the tensor's absmax array. */
static enum memfit_status finish_nf4(struct run *r, struct plan *p, float *absmax, uint64_t nb)
{
    size_t at = p->w_index + 1;
    enum memfit_status st;
    if (!r->o->double_quant) {
        st = write_f32s(r, at++, absmax, nb);
    } else {
        uint64_t nn = ceil_div(nb, NF4_NESTED_BLOCK);
        uint8_t *q = memfit_malloc(nb ? nb : 1);
        float *nested = memfit_malloc(nn * sizeof(float) + 1);
        float offset = 0;
        st = q && nested ? memfit_nf4_pack_absmax(absmax, nb, q, nested, &offset) : MEMFIT_E_NOMEM;
        if (st == MEMFIT_OK) {
            st = memfit_writer_write_tensor(r->w, at++, 0, q, (size_t)nb);
            r->out_bytes += nb;
        }
        if (st == MEMFIT_OK) {
            /* Patch the fixed-width placeholder of nested_offset in place. */
            char num[32];
            snprintf(num, sizeof(num), "% .9e", (double)offset);
            char *slot = strstr(p->qstate, "\"nested_offset\": ") + strlen("\"nested_offset\": ");
            memcpy(slot, num, strlen(num));
        }
        memfit_free(q);
        if (st == MEMFIT_OK)
            st = write_f32s(r, at + 1, nested, nn); /* nested_absmax comes after quant_map */
        memfit_free(nested);
    }
    if (st == MEMFIT_OK)
        st = write_f32s(r, at++, memfit_nf4_codebook(), 16);
    if (st == MEMFIT_OK && r->o->double_quant) {
        float map[256];
        memfit_nf4_dynamic_map(map);
        at++; /* nested_absmax, written above */
        st = write_f32s(r, at++, map, 256);
    }
    if (st == MEMFIT_OK) {
        st = memfit_writer_write_tensor(r->w, at, 0, p->qstate, strlen(p->qstate));
        r->out_bytes += strlen(p->qstate);
    }
    return st;
}

static enum memfit_status convert_tensor(struct run *r, size_t i)
{
    struct memfit_tensor_info t;
    memfit_tensors_get(r->in, i, &t);
    struct plan *p = &r->plans[i];
    if (p->out == t.type) {
        r->out_bytes += t.n_bytes;
        r->progress.bytes_done += t.n_bytes;
        return memfit_rewrite_write_raw(r->w, p->w_index, t.data, t.n_bytes, r->in_fd,
                                        t.file_offset);
    }
    const struct memfit_type_info *in = memfit_type_get_info(t.type);
    const struct memfit_type_info *out =
        p->out == MEMFIT_TYPE_NF4 ? NULL : memfit_type_get_info(p->out);
    float *absmax = NULL;
    uint64_t nb = ceil_div(t.n_elements, NF4_BLOCK);
    if (!out && !(absmax = memfit_malloc(nb * sizeof(float) + 1)))
        return MEMFIT_E_NOMEM;
    uint64_t chunk_elems = r->buf_bytes / 4 / PIECE_ELEMS * PIECE_ELEMS;
    enum memfit_status st = MEMFIT_OK;
    uint64_t written = 0;
    for (uint64_t e = 0; e < t.n_elements && st == MEMFIT_OK; e += chunk_elems) {
        if (cancelled(r)) {
            st = memfit_fail(MEMFIT_E_CANCELLED, "%s: quantization cancelled", t.name);
            break;
        }
        uint64_t end = t.n_elements - e < chunk_elems ? t.n_elements : e + chunk_elems;
        struct job j = {
            .t = &t, .out = p->out, .begin = e, .end = end, .out_buf = r->buf, .absmax = absmax};
        atomic_init(&j.next, e);
        atomic_init(&j.status, MEMFIT_OK);
        pthread_mutex_init(&j.error_lock, NULL);
        st = run_job(&j, r->threads, r->scratch);
        pthread_mutex_destroy(&j.error_lock);
        uint64_t n_out = out ? (end - e) / out->block_size * out->type_size : ceil_div(end - e, 2);
        if (st == MEMFIT_OK)
            st = memfit_writer_write_tensor(r->w, p->w_index, written, r->buf, (size_t)n_out);
        written += n_out;
        uint64_t in_off = e / in->block_size * in->type_size;
        uint64_t in_len = (end - e) / in->block_size * in->type_size;
        mf_release_input(r->in_fd, (const char *)t.data + in_off, t.file_offset + in_off, in_len);
        r->progress.bytes_done += in_len;
        report_progress(r);
    }
    r->out_bytes += written;
    if (st == MEMFIT_OK && !out)
        st = finish_nf4(r, p, absmax, nb);
    memfit_free(absmax);
    return st;
}

static enum memfit_status quantize(struct run *r)
{
    enum memfit_status st = plan_all(r);
    r->progress.tensors_total = r->n;
    if (st == MEMFIT_OK)
        report_progress(r);
    for (size_t i = 0; i < r->n && st == MEMFIT_OK; i++) {
        if (cancelled(r))
            return memfit_fail(MEMFIT_E_CANCELLED, "quantization cancelled");
        st = convert_tensor(r, i);
        r->progress.tensors_done++;
        report_progress(r);
    }
    return st;
}

/* ---- the entry point ------------------------------------------------------- */

void memfit_quantize_options_default(struct memfit_quantize_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->target = MEMFIT_QUANTIZE_Q8_0;
    opts->format = MEMFIT_FORMAT_UNKNOWN;
}

/* Refuses the combinations of target and format neither format can hold. */
static enum memfit_status check_options(const struct memfit_quantize_options *o,
                                        enum memfit_format fmt, const char *out)
{
    if (!target_valid(o->target))
        return memfit_fail(MEMFIT_E_INVALID, "quantization target %d unknown", (int)o->target);
    if (fmt != MEMFIT_FORMAT_GGUF && fmt != MEMFIT_FORMAT_SAFETENSORS)
        return memfit_fail(MEMFIT_E_INVALID, "OUT must end in .gguf or .safetensors: '%s'", out);
    if (o->target == MEMFIT_QUANTIZE_NF4 && fmt != MEMFIT_FORMAT_SAFETENSORS)
        return memfit_fail(MEMFIT_E_INVALID,
                           "nf4 is written only to safetensors (bitsandbytes' layout; GGUF has "
                           "no NF4 type): use OUT.safetensors");
    if (o->target > MEMFIT_QUANTIZE_BF16 && o->target != MEMFIT_QUANTIZE_NF4 &&
        fmt != MEMFIT_FORMAT_GGUF)
        return memfit_fail(MEMFIT_E_INVALID,
                           "--type %s needs a .gguf OUT (safetensors has no ggml types)",
                           targets[o->target].name);
    if (o->double_quant && o->target != MEMFIT_QUANTIZE_NF4)
        return memfit_fail(MEMFIT_E_INVALID, "--double-quant applies to --type nf4 only");
    return MEMFIT_OK;
}

/* Refuses to write over the input (same inode, whatever the path) or an existing OUT. */
static enum memfit_status check_paths(const char *in, const char *out, bool overwrite)
{
    struct stat in_st, out_st;
    if (stat(in, &in_st) != 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", in,
                           strerror(errno));
    if (stat(out, &out_st) == 0) {
        if (in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
            return memfit_fail(MEMFIT_E_PERMISSION,
                               "%s is the input file %s: refusing to overwrite the input", out, in);
        if (!overwrite)
            return memfit_fail(MEMFIT_E_EXISTS, "%s exists", out);
    }
    return MEMFIT_OK;
}

/* The report of a finished run: the tensors and their names in one allocation. */
static enum memfit_status make_report(const struct run *r, struct memfit_quantize_report *out)
{
    size_t names = 0;
    struct memfit_tensor_info t;
    for (size_t i = 0; i < r->n; i++) {
        memfit_tensors_get(r->in, i, &t);
        names += strlen(t.name) + 1;
    }
    struct memfit_quantize_tensor *tensors = memfit_malloc(r->n * sizeof(*tensors) + names + 1);
    if (!tensors)
        return MEMFIT_E_NOMEM;
    char *at = (char *)(tensors + r->n);
    for (size_t i = 0; i < r->n; i++) {
        memfit_tensors_get(r->in, i, &t);
        size_t len = strlen(t.name) + 1;
        memcpy(at, t.name, len);
        tensors[i] = (struct memfit_quantize_tensor){
            .name = at, .from = t.type, .to = r->plans[i].out, .why = r->plans[i].why};
        at += len;
    }
    *out = (struct memfit_quantize_report){
        .format = r->fmt,
        .n_tensors = r->n,
        .tensors = tensors,
        .in_bytes = r->progress.bytes_total,
        .out_bytes = r->out_bytes,
        .n_threads = r->threads,
        .n_meta_skipped = r->meta_skipped,
        .n_meta_added = r->meta_added,
    };
    return MEMFIT_OK;
}

void memfit_quantize_report_free(struct memfit_quantize_report *report)
{
    if (!report)
        return;
    memfit_free(report->tensors);
    *report = (struct memfit_quantize_report){0};
}

enum memfit_status memfit_quantize_file(const char *in, const char *out,
                                        const struct memfit_quantize_options *opts,
                                        struct memfit_quantize_report *report)
{
    if (!in || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_quantize_file: NULL path");
    struct memfit_quantize_options defaults;
    if (!opts) {
        memfit_quantize_options_default(&defaults);
        opts = &defaults;
    }
    uint64_t start_ns = memfit_now_ns();
    struct run r = {.o = opts, .in_fd = -1};
    r.fmt = opts->format != MEMFIT_FORMAT_UNKNOWN ? opts->format : memfit_format_from_path(out);
    enum memfit_status st = check_options(opts, r.fmt, out);
    if (st == MEMFIT_OK)
        st = check_paths(in, out, opts->overwrite);
    if (st != MEMFIT_OK)
        return st;
    r.threads = opts->n_threads ? opts->n_threads : memfit_cpu_count();
    /* The chunk buffer: 4 F32 bytes per element, at least 2 pieces per thread. */
    r.buf_bytes = PIECE_ELEMS * 4 * (r.threads * 2 > 16 ? r.threads * 2 : 16);
    st = memfit_tensors_open(in, NULL, &r.in);
    if (st == MEMFIT_OK) {
        r.n = memfit_tensors_count(r.in);
        r.plans = memfit_calloc(r.n ? r.n : 1, sizeof(*r.plans));
        r.buf = memfit_malloc((size_t)r.buf_bytes);
        r.scratch = memfit_malloc(PIECE_ELEMS * sizeof(float));
        if (!r.plans || !r.buf || !r.scratch)
            st = MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK)
        st = memfit_writer_create(out, r.fmt, &r.w);
    if (st == MEMFIT_OK) {
        r.in_fd = open(in, O_RDONLY | O_CLOEXEC);
        st = quantize(&r);
    }
    /* The report is made before the commit: once OUT exists, nothing can fail. */
    struct memfit_quantize_report made = {0};
    if (st == MEMFIT_OK && report)
        st = make_report(&r, &made);
    if (st == MEMFIT_OK)
        st = memfit_writer_commit(r.w);
    if (st == MEMFIT_OK && report) {
        made.seconds = (double)(memfit_now_ns() - start_ns) / 1e9;
        *report = made;
    } else {
        memfit_quantize_report_free(&made);
    }
    memfit_writer_destroy(r.w);
    if (r.in_fd >= 0)
        close(r.in_fd);
    for (size_t i = 0; r.plans && i < r.n; i++)
        memfit_free(r.plans[i].qstate);
    memfit_free(r.plans);
    memfit_free(r.buf);
    memfit_free(r.scratch);
    memfit_tensors_close(r.in);
    return st;
}
