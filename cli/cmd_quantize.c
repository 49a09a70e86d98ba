/*
 * `memfit quantize IN OUT --type T`: rewrites a model file with its weights
 * converted to a float type, a ggml quantized type (GGUF output), a
 * llama.cpp-like Q4_K_M mix, or bitsandbytes NF4 (safetensors output, in the
 * layout bitsandbytes saves, so either side loads the other's files).
 *
 * Memory stays bounded whatever the model size: the input is mapped, each
 * tensor is converted in chunks of 64 Ki-element pieces into one bounded
 * output buffer and written with the streaming writer, and the input pages
 * already converted are released (madvise + posix_fadvise). The pieces of a
 * chunk are shared among threads (created per chunk: a chunk is milliseconds
 * of work, so thread start-up is noise, and src/core has no thread pool).
 * Only NF4 holds one array per tensor: its absmax values (1/16 of the
 * tensor's F32 size), needed whole for double quantization.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "model_common.h"

const char cmd_quantize_help[] =
    "Usage: memfit quantize IN OUT --type TYPE [--keep PATTERN]... [--threads N]\n"
    "                       [--double-quant] [--force]\n"
    "\n"
    "Rewrites a model file (.gguf, .safetensors or .pth with F32/F16/BF16 tensors;\n"
    "quantized GGUF tensors are dequantized, then requantized) with its weights\n"
    "converted to TYPE:\n"
    "  f32, f16, bf16          OUT .safetensors or .gguf\n"
    "  q8_0, q4_0, q4_k, q6_k  OUT .gguf\n"
    "  q4_k_m                  OUT .gguf; Q6_K for the output weight and for attn_v /\n"
    "                          ffn_down of llama.cpp's \"more bits\" layers, Q4_K else\n"
    "  nf4                     OUT .safetensors, bitsandbytes' layout (blocksize 64)\n"
    "1-D tensors and norms stay F32; a tensor whose rows are not a multiple of the\n"
    "type's block gets Q4_0 for Q4_K, Q8_0 for Q6_K (as llama.cpp falls back), or\n"
    "else stays F16. Integer tensors are copied. GGUF metadata is copied\n"
    "(strings only to safetensors) and general.file_type is set; a DINOv2 model\n"
    "gets general.architecture and dinov2.interpolation (the source's default)\n"
    "when it lacks them. The output is\n"
    "written to a temporary file renamed at the end: a failure leaves nothing.\n"
    "\n"
    "Options:\n"
    "  --type TYPE       the target type (required)\n"
    "  --keep PATTERN    keep tensors whose name matches this glob in their type\n"
    "                    (repeatable)\n"
    "  --threads N       worker threads (default: the CPUs this process may use)\n"
    "  --double-quant    nf4: quantize the absmax values too (blocks of 256)\n"
    "  --force           overwrite an existing OUT (never the input)\n"
    "  -h, --help\n";

#define PIECE_ELEMS      ((uint64_t)65536) /* a multiple of every block size (1, 32, 64, 256) */
#define NF4_BLOCK        64u
#define NF4_NESTED_BLOCK 256u
#define T_Q4_K_M         ((enum memfit_type)1000) /* the mix; never a tensor's type */

/* Why a tensor got the type it did (for the summary). */
enum reason { R_TARGET, R_SMALL, R_KEEP, R_BLOCK, R_COPY, R_MIX_MORE, R_COUNT };

struct options {
    const char *in_path, *out_path;
    enum memfit_type target;
    const char **keep;
    size_t n_keep;
    unsigned threads;
    bool double_quant, force;
};

/* One input tensor's plan: the output type and the writer indexes it fills. */
struct plan {
    enum memfit_type out;
    enum reason why;
    size_t w_index; /* the (first) writer tensor */
    char *qstate;   /* nf4: the quant_state JSON (owned) */
};

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

static enum memfit_type choose(const struct options *o, const struct memfit_tensor_info *t,
                               long n_layers, enum reason *why)
{
    for (size_t k = 0; k < o->n_keep; k++)
        if (fnmatch(o->keep[k], t->name, 0) == 0) {
            *why = R_KEEP;
            return t->type;
        }
    if (!is_readable(t->type)) {
        *why = R_COPY;
        return t->type;
    }
    if (t->n_dims < 2 || t->n_elements == (uint64_t)t->shape[t->n_dims - 1] || is_norm(t->name)) {
        *why = R_SMALL;
        return MEMFIT_TYPE_F32;
    }
    *why = R_TARGET;
    enum memfit_type want = o->target;
    if (want == MEMFIT_TYPE_NF4) {
        /* As transformers does: embeddings and the output head stay in float. */
        if (is_embedding(t->name) || is_output(t->name)) {
            *why = R_KEEP;
            return is_float(t->type) ? t->type : MEMFIT_TYPE_F16;
        }
        return want;
    }
    if (want == T_Q4_K_M) {
        want = MEMFIT_TYPE_Q4_K;
        long layer = layer_of(t->name);
        bool v_or_down = name_has(t->name, "attn_v") || name_has(t->name, "ffn_down") ||
                         name_has(t->name, "v_proj") || name_has(t->name, "down_proj");
        if (is_output(t->name) ||
            (v_or_down && (layer < 0 || n_layers <= 0 || more_bits(layer, n_layers)))) {
            want = MEMFIT_TYPE_Q6_K;
            *why = R_MIX_MORE;
        }
    }
    if (!row_fits(t, want)) {
        /* As llama.cpp does for K-quant rows not a multiple of 256 (Qwen1.5-1.8B's
         * ffn_down, 5504 columns): a 32-block type of about the same bits. Q6_K ->
         * Q8_0 as there; Q4_K -> Q4_0 (llama.cpp uses Q5_0, which has no quantizer here). */
        enum memfit_type fallback = want == MEMFIT_TYPE_Q6_K   ? MEMFIT_TYPE_Q8_0
                                    : want == MEMFIT_TYPE_Q4_K ? MEMFIT_TYPE_Q4_0
                                                               : MEMFIT_TYPE_F16;
        *why = R_BLOCK;
        return row_fits(t, fallback) ? fallback : MEMFIT_TYPE_F16;
    }
    return want;
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

/* ---- progress and summary ------------------------------------------------ */

struct progress {
    bool tty;
    uint64_t start_ns, last_ns;
    uint64_t bytes_total, bytes_done;
    size_t tensors_total, tensors_done;
};

static void progress_show(struct progress *p, bool final)
{
    if (!p->tty)
        return;
    uint64_t now = memfit_now_ns();
    if (!final && now - p->last_ns < 100000000ull)
        return;
    p->last_ns = now;
    double secs = (double)(now - p->start_ns) / 1e9;
    double rate = secs > 0 ? (double)p->bytes_done / secs : 0;
    double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 1.0;
    double eta = rate > 0 ? (double)(p->bytes_total - p->bytes_done) / rate : 0;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %zu/%zu tensors  %.1f/%.1f MB  %.0f MB/s  ETA %d:%02d ", bar,
            p->tensors_done, p->tensors_total, (double)p->bytes_done / 1e6,
            (double)p->bytes_total / 1e6, rate / 1e6, (int)eta / 60, (int)eta % 60);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---- the conversion ------------------------------------------------------- */

struct run {
    const struct options *o;
    memfit_tensors *in;
    memfit_writer *w;
    enum memfit_format fmt;
    int in_fd; /* for posix_fadvise; -1 if unavailable */
    struct plan *plans;
    size_t n;
    uint8_t *buf; /* the chunk output buffer */
    uint64_t buf_bytes;
    float *scratch;
    struct progress progress;
    uint64_t out_bytes;
    size_t meta_skipped;
    size_t meta_added; /* DINOv2 keys the input lacked */
};

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

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
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

static long count_layers(memfit_tensors *in)
{
    long n = 0;
    struct memfit_tensor_info t;
    for (size_t i = 0; i < memfit_tensors_count(in); i++) {
        memfit_tensors_get(in, i, &t);
        long l = layer_of(t.name);
        if (l + 1 > n)
            n = l + 1;
    }
    return n;
}

static uint32_t file_type_of(enum memfit_type target)
{
    switch ((int)target) {
    case MEMFIT_TYPE_F32:
        return 0;
    case MEMFIT_TYPE_F16:
        return 1;
    case MEMFIT_TYPE_Q4_0:
        return 2;
    case MEMFIT_TYPE_Q8_0:
        return 7;
    case MEMFIT_TYPE_Q4_K:
        return 14; /* MOSTLY_Q4_K_S: Q4_K throughout */
    case T_Q4_K_M:
        return 15;
    case MEMFIT_TYPE_Q6_K:
        return 18;
    case MEMFIT_TYPE_BF16:
        return 32;
    default:
        return 0;
    }
}

static enum memfit_status plan_all(struct run *r)
{
    enum memfit_status st = cli_copy_meta(r->in, r->w, r->fmt, &r->meta_skipped);
    if (st == MEMFIT_OK)
        st = cli_add_vit_meta(r->in, r->w, &r->meta_added);
    if (st != MEMFIT_OK)
        return st;
    if (r->fmt == MEMFIT_FORMAT_GGUF) {
        struct memfit_meta_value v = {.type = MEMFIT_META_U32, .v.u = file_type_of(r->o->target)};
        if ((st = memfit_writer_set_meta(r->w, "general.file_type", &v)) != MEMFIT_OK)
            return st;
        v.v.u = 2; /* ggml's current quantization version */
        if (!is_float(r->o->target) &&
            (st = memfit_writer_set_meta(r->w, "general.quantization_version", &v)) != MEMFIT_OK)
            return st;
    }
    long n_layers = count_layers(r->in);
    size_t w_index = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct memfit_tensor_info t;
        memfit_tensors_get(r->in, i, &t);
        struct plan *p = &r->plans[i];
        p->out = choose(r->o, &t, n_layers, &p->why);
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
        return cli_write_raw(r->w, p->w_index, t.data, t.n_bytes, r->in_fd, t.file_offset);
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
        uint64_t end = t.n_elements - e < chunk_elems ? t.n_elements : e + chunk_elems;
        struct job j = {
            .t = &t, .out = p->out, .begin = e, .end = end, .out_buf = r->buf, .absmax = absmax};
        atomic_init(&j.next, e);
        atomic_init(&j.status, MEMFIT_OK);
        pthread_mutex_init(&j.error_lock, NULL);
        st = run_job(&j, r->o->threads, r->scratch);
        pthread_mutex_destroy(&j.error_lock);
        uint64_t n_out = out ? (end - e) / out->block_size * out->type_size : ceil_div(end - e, 2);
        if (st == MEMFIT_OK)
            st = memfit_writer_write_tensor(r->w, p->w_index, written, r->buf, (size_t)n_out);
        written += n_out;
        uint64_t in_off = e / in->block_size * in->type_size;
        uint64_t in_len = (end - e) / in->block_size * in->type_size;
        cli_release_input(r->in_fd, (const char *)t.data + in_off, t.file_offset + in_off, in_len);
        r->progress.bytes_done += in_len;
        progress_show(&r->progress, false);
    }
    r->out_bytes += written;
    if (st == MEMFIT_OK && !out)
        st = finish_nf4(r, p, absmax, nb);
    memfit_free(absmax);
    return st;
}

static void print_summary(const struct run *r, double secs)
{
    static const char *const why_text[R_COUNT] = {
        [R_TARGET] = "target type",
        [R_SMALL] = "1-D or norm, kept F32",
        [R_KEEP] = "kept (--keep, or NF4's embeddings/output head)",
        [R_BLOCK] = "row not a multiple of the block: Q4_K -> Q4_0, Q6_K -> Q8_0, else F16",
        [R_COPY] = "not a float type, copied",
        [R_MIX_MORE] = "q4_k_m: more bits (Q6_K)",
    };
    printf("%s: %zu tensors -> %s\n", r->o->out_path, r->n, memfit_format_name(r->fmt));
    /* Tensors per output type, then per reason. */
    enum memfit_type seen[64];
    size_t counts[64], n_seen = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t k = 0;
        while (k < n_seen && seen[k] != r->plans[i].out)
            k++;
        if (k == n_seen && n_seen < 64) {
            seen[n_seen] = r->plans[i].out;
            counts[n_seen++] = 0;
        }
        if (k < n_seen)
            counts[k]++;
    }
    for (size_t k = 0; k < n_seen; k++) {
        const struct memfit_type_info *info = memfit_type_get_info(seen[k]);
        printf("  %-6s %zu tensors\n", info ? info->name : "?", counts[k]);
    }
    for (int why = R_SMALL; why < R_COUNT; why++) {
        size_t n = 0;
        for (size_t i = 0; i < r->n; i++)
            n += r->plans[i].why == (enum reason)why;
        if (!n)
            continue;
        printf("  %zu %s:", n, why_text[why]);
        size_t shown = 0;
        for (size_t i = 0; i < r->n && shown < 4; i++) {
            if (r->plans[i].why != (enum reason)why)
                continue;
            struct memfit_tensor_info t;
            memfit_tensors_get(r->in, i, &t);
            printf(" %s", t.name);
            shown++;
        }
        printf("%s\n", n > shown ? " ..." : "");
    }
    uint64_t in_bytes = r->progress.bytes_total;
    printf("  %.1f MB -> %.1f MB (ratio %.2f) in %.2f s (%.0f MB/s, %u threads)\n",
           (double)in_bytes / 1e6, (double)r->out_bytes / 1e6,
           r->out_bytes ? (double)in_bytes / (double)r->out_bytes : 0.0, secs,
           secs > 0 ? (double)in_bytes / 1e6 / secs : 0.0, r->o->threads);
    if (r->meta_added)
        printf("note: DINOv2 model: %zu metadata entries added (general.architecture, %s)\n",
               r->meta_added, MEMFIT_VIT_META_INTERPOLATION);
    if (r->meta_skipped)
        printf("note: %zu metadata entries skipped (%s holds strings only)\n", r->meta_skipped,
               memfit_format_name(r->fmt));
}

static enum memfit_status quantize(struct run *r)
{
    enum memfit_status st = plan_all(r);
    r->progress.tensors_total = r->n;
    for (size_t i = 0; i < r->n && st == MEMFIT_OK; i++) {
        st = convert_tensor(r, i);
        r->progress.tensors_done++;
        progress_show(&r->progress, false);
    }
    if (st == MEMFIT_OK)
        st = memfit_writer_commit(r->w);
    if (r->progress.tty && r->progress.last_ns)
        progress_show(&r->progress, true);
    return st;
}

/* ---- arguments and checks -------------------------------------------------- */

static unsigned default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static int parse_type(const char *text, enum memfit_type *out)
{
    static const char *const ok[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "nf4"};
    if (strcasecmp(text, "q4_k_m") == 0) {
        *out = T_Q4_K_M;
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcasecmp(text, ok[i]) == 0 && memfit_type_from_name(ok[i], out) == MEMFIT_OK)
            return CLI_EXIT_OK;
    return cli_usage("quantize",
                     "unknown --type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m, nf4)",
                     text);
}

static int check_formats(const struct options *o, enum memfit_format fmt)
{
    bool ggml_quant =
        o->target == T_Q4_K_M || (o->target != MEMFIT_TYPE_NF4 && !is_float(o->target));
    if (fmt != MEMFIT_FORMAT_GGUF && fmt != MEMFIT_FORMAT_SAFETENSORS)
        return cli_usage("quantize", "OUT must end in .gguf or .safetensors: '%s'", o->out_path);
    if (o->target == MEMFIT_TYPE_NF4 && fmt != MEMFIT_FORMAT_SAFETENSORS)
        return cli_usage("quantize",
                         "nf4 is written only to safetensors (bitsandbytes' layout; GGUF has "
                         "no NF4 type): use OUT.safetensors");
    if (ggml_quant && fmt != MEMFIT_FORMAT_GGUF)
        return cli_usage("quantize", "--type %s needs a .gguf OUT (safetensors has no ggml types)",
                         o->target == T_Q4_K_M ? "q4_k_m" : memfit_type_get_info(o->target)->name);
    if (o->double_quant && o->target != MEMFIT_TYPE_NF4)
        return cli_usage("quantize", "--double-quant applies to --type nf4 only");
    return CLI_EXIT_OK;
}

/* Refuses to write over the input (same inode, whatever the path) or an existing OUT. */
static int check_paths(const struct options *o)
{
    struct stat in_st, out_st;
    if (stat(o->in_path, &in_st) != 0)
        return cli_fail("%s: %s", o->in_path, strerror(errno));
    if (stat(o->out_path, &out_st) == 0) {
        if (in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
            return cli_fail("%s is the input file %s: refusing to overwrite the input", o->out_path,
                            o->in_path);
        if (!o->force)
            return cli_fail("%s exists: use --force to overwrite it", o->out_path);
    }
    return CLI_EXIT_OK;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    bool have_type = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--type") == 0 || strcmp(a, "--keep") == 0 || strcmp(a, "--threads") == 0) {
            if (++i >= argc)
                return cli_usage("quantize", "%s needs a value", a);
            if (strcmp(a, "--type") == 0) {
                int rc = parse_type(argv[i], &o->target);
                if (rc != CLI_EXIT_OK)
                    return rc;
                have_type = true;
            } else if (strcmp(a, "--keep") == 0) {
                o->keep[o->n_keep++] = argv[i];
            } else {
                long long n;
                if (!cli_opt_int("quantize", "--threads", argv[i], 1, 256, &n))
                    return CLI_EXIT_USAGE;
                o->threads = (unsigned)n;
            }
        } else if (strcmp(a, "--double-quant") == 0) {
            o->double_quant = true;
        } else if (strcmp(a, "--force") == 0) {
            o->force = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("quantize", "unknown option '%s'", a);
        } else if (!o->in_path) {
            o->in_path = a;
        } else if (!o->out_path) {
            o->out_path = a;
        } else {
            return cli_usage("quantize", "unexpected argument '%s'", a);
        }
    }
    if (!o->in_path || !o->out_path)
        return cli_usage("quantize", "needs IN and OUT");
    if (!have_type)
        return cli_usage("quantize", "needs --type");
    return CLI_EXIT_OK;
}

int cmd_quantize(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_quantize_help))
        return CLI_EXIT_OK;
    struct options o = {.threads = 0};
    o.keep = memfit_calloc((size_t)argc, sizeof(*o.keep));
    if (!o.keep)
        return cli_fail_status(MEMFIT_E_NOMEM);
    int rc = parse_args(argc, argv, &o);
    enum memfit_format fmt =
        o.out_path ? memfit_format_from_path(o.out_path) : MEMFIT_FORMAT_UNKNOWN;
    if (rc == CLI_EXIT_OK)
        rc = check_formats(&o, fmt);
    if (rc == CLI_EXIT_OK)
        rc = check_paths(&o);
    if (rc != CLI_EXIT_OK) {
        memfit_free(o.keep);
        return rc;
    }
    if (!o.threads)
        o.threads = default_threads();
    struct run r = {.o = &o, .fmt = fmt, .in_fd = -1};
    r.progress.tty = cli_isatty(2);
    r.progress.start_ns = memfit_now_ns();
    /* The chunk buffer: 4 F32 bytes per element, at least 2 pieces per thread. */
    r.buf_bytes = PIECE_ELEMS * 4 * (o.threads * 2 > 16 ? o.threads * 2 : 16);
    enum memfit_status st = memfit_tensors_open(o.in_path, NULL, &r.in);
    if (st == MEMFIT_OK) {
        r.n = memfit_tensors_count(r.in);
        r.plans = memfit_calloc(r.n ? r.n : 1, sizeof(*r.plans));
        r.buf = memfit_malloc((size_t)r.buf_bytes);
        r.scratch = memfit_malloc(PIECE_ELEMS * sizeof(float));
        if (!r.plans || !r.buf || !r.scratch)
            st = MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK)
        st = memfit_writer_create(o.out_path, fmt, &r.w);
    if (st == MEMFIT_OK) {
        r.in_fd = open(o.in_path, O_RDONLY | O_CLOEXEC);
        st = quantize(&r);
    }
    if (st == MEMFIT_OK)
        print_summary(&r, (double)(memfit_now_ns() - r.progress.start_ns) / 1e9);
    else
        rc = cli_fail_status(st);
    memfit_writer_destroy(r.w);
    if (r.in_fd >= 0)
        close(r.in_fd);
    for (size_t i = 0; r.plans && i < r.n; i++)
        memfit_free(r.plans[i].qstate);
    memfit_free(r.plans);
    memfit_free(r.buf);
    memfit_free(r.scratch);
    memfit_tensors_close(r.in);
    memfit_free(o.keep);
    return rc;
}
