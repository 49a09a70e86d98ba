/*
 * bench_matvec: LLM token generation is a string of matrix-vector products
 * whose speed is set by how fast the weights stream from RAM. This program
 * builds the matrices of a Qwen1.5-1.8B-shaped model (per layer q, k, v, o
 * 2048x2048, gate and up 5504x2048, down 2048x5504; `layers` of them, by
 * default 4, about 200 M weights: far beyond the last-level cache) in one
 * weight type, quantizes one activation vector per matrix input once, and
 * times the products with the rows split across a memfit thread pool, as
 * the engine does (mf_vec_dot_rows over each thread's rows). Figures: GB/s of weight bytes read,
 * and the tokens/s that rate would give for the whole model (24 layers plus the 151936-row output
 * matrix, the token embedding being a row lookup), best of several passes.
 *
 * "nf4" is bitsandbytes' NF4 as a load_in_4bit checkpoint stores it (blocks of
 * 64, double-quantized absmax with nested blocks of 256: 0.516 bytes a weight),
 * run through memfit_nf4_matvec_rows as the engine runs it.
 *
 * K-quant rows must be a multiple of 256 elements, which 5504 is not: for
 * Q4_K and Q6_K the down matrix is taken as 5504x2048 instead (the same
 * bytes; the real model stores that tensor in a 32-block type).
 *
 * Usage: bench_matvec [--layers N] [--threads N[,N...]] [--types t1,t2,...] (default all but nf4)
 *                     [--scalar] (also time the scalar kernels, 1 thread)
 *                     [--one-row] (vec_dot row by row instead of mf_vec_dot_rows)
 *                     [--bandwidth] (also the machine's read bandwidth: a 1 GiB buffer summed
 *                                    with 16-byte loads, split across each thread count; the
 *                                    denominator of "% of bandwidth" for decode)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "memfit/memfit.h"
#include "tensor/kernels.h"

#define N_EMBD  2048
#define N_FF    5504
#define N_VOCAB 151936
#define N_LAYER 24
#define PASSES  5

struct shape {
    size_t rows, n;
};

/* One layer's matrices (rows x n) in the order the forward uses them. */
static const struct shape layer_shapes[] = {
    {N_EMBD, N_EMBD}, {N_EMBD, N_EMBD}, {N_EMBD, N_EMBD}, {N_EMBD, N_EMBD},
    {N_FF, N_EMBD},   {N_FF, N_EMBD},   {N_EMBD, N_FF},
};
#define N_SHAPES (sizeof(layer_shapes) / sizeof(layer_shapes[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random bytes; then every fp16 that the block layout uses as a scale is
 * overwritten with a small positive value, so sums stay finite. */
static void fill(enum memfit_type type, uint8_t *w, size_t bytes)
{
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = next_rand();
        memcpy(w + i, &r, 8);
    }
    const struct memfit_type_info *info = memfit_type_get_info(type);
    int offs[2] = {-1, -1};
    switch (type) {
    case MEMFIT_TYPE_F16: {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < bytes / 2; i++)
            h[i] = memfit_fp32_to_fp16((float)((int)(next_rand() % 2001) - 1000) * 2e-5f);
        return;
    }
    case MEMFIT_TYPE_Q8_0:
    case MEMFIT_TYPE_Q4_0:
        offs[0] = 0;
        break;
    case MEMFIT_TYPE_Q4_K:
        offs[0] = 0, offs[1] = 2;
        break;
    case MEMFIT_TYPE_Q6_K:
        offs[0] = 208;
        break;
    default:
        break;
    }
    uint16_t scale = memfit_fp32_to_fp16(0.002f);
    for (size_t b = 0; b < bytes / info->type_size; b++)
        for (int k = 0; k < 2; k++)
            if (offs[k] >= 0)
                memcpy(w + b * info->type_size + offs[k], &scale, 2);
}

struct matrix {
    struct shape s;
    size_t row_bytes; /* NF4: the codes' (n / 2) */
    uint8_t *w;       /* NF4: the codes, then one absmax byte per 64 weights */
    struct memfit_nf4_matrix nf4;
    float *nested; /* NF4: the nested absmax */
};

/* The nested map all NF4 matrices share (bitsandbytes' dynamic map). */
static float nf4_map[256];

/* NF4 bytes of a rows x n matrix: codes and absmax bytes. */
static size_t nf4_bytes(struct shape s)
{
    return s.rows * (s.n / 2 + s.n / 64);
}

/* Random codes and absmax bytes, nested absmax near 0.01 (blocks of 64, nested 256). */
static bool nf4_fill(struct matrix *m)
{
    size_t nb = m->s.rows * (m->s.n / 64);
    m->nested = memfit_malloc((nb / 256 + 1) * sizeof(float));
    if (!m->nested)
        return false;
    fill(MEMFIT_TYPE_I8, m->w, nf4_bytes(m->s));
    for (size_t i = 0; i <= nb / 256; i++)
        m->nested[i] = 0.01f + 1e-5f * (float)(next_rand() % 1000);
    m->nf4 = (struct memfit_nf4_matrix){.codes = m->w,
                                        .rows = m->s.rows,
                                        .cols = m->s.n,
                                        .blocksize = 64,
                                        .double_quant = true,
                                        .absmax = m->w + m->s.rows * (m->s.n / 2),
                                        .nested_absmax = m->nested,
                                        .nested_map = nf4_map,
                                        .nested_blocksize = 256,
                                        .offset = 0.02f};
    return memfit_nf4_matrix_check(&m->nf4) == MEMFIT_OK;
}

static bool one_row; /* --one-row: vec_dot per row, no multi-row kernel */

struct job {
    const struct mf_type_traits *t;
    const struct matrix *m;
    const uint8_t *act;
    float *y;
};

static void rows_fn(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    (void)thread;
    const struct job *j = ctx;
    if (j->m->nested) {
        memfit_nf4_matvec_rows(&j->m->nf4, begin, end, j->act, j->y + begin);
        return;
    }
    if (one_row) {
        for (uint64_t r = begin; r < end; r++)
            j->y[r] = j->t->vec_dot(j->m->s.n, j->m->w + r * j->m->row_bytes, j->act);
        return;
    }
    mf_vec_dot_rows(j->t, j->m->s.n, j->m->w + begin * j->m->row_bytes, j->m->row_bytes, j->act,
                    j->y + begin, (size_t)(end - begin));
}

static size_t type_bytes(enum memfit_type type, size_t n)
{
    uint64_t b = 0;
    memfit_type_bytes(type, n, &b);
    return (size_t)b;
}

/* Best seconds per pass over all matrices. */
static double time_passes(memfit_threadpool *pool, const struct mf_type_traits *t,
                          const struct matrix *mats, size_t n_mats, uint8_t *const acts[2],
                          float *y)
{
    double best = 1e30;
    for (int p = 0; p < PASSES; p++) {
        uint64_t t0 = memfit_now_ns();
        for (size_t i = 0; i < n_mats; i++) {
            struct job j = {t, &mats[i], acts[mats[i].s.n == N_EMBD ? 0 : 1], y};
            memfit_threadpool_parallel_for(pool, mats[i].s.rows, rows_fn, &j);
        }
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        best = s < best ? s : best;
    }
    return best;
}

/* ---- Read bandwidth ---- */

#define BW_BYTES ((size_t)1 << 30)

struct bw_job {
    const uint8_t *buf;
    uint64_t sums[64]; /* per thread, 8 apart so no two threads share a line */
};

/* Sums 4 KiB chunks [begin, end) of the buffer: four independent 16-byte lanes per 64 bytes. */
static void bw_fn(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct bw_job *j = ctx;
    const uint8_t *p = j->buf + begin * 4096, *e = j->buf + end * 4096;
#if defined(__x86_64__)
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (; p < e; p += 64) {
        a0 = _mm_add_epi64(a0, _mm_loadu_si128((const __m128i *)p));
        a1 = _mm_add_epi64(a1, _mm_loadu_si128((const __m128i *)(p + 16)));
        a2 = _mm_add_epi64(a2, _mm_loadu_si128((const __m128i *)(p + 32)));
        a3 = _mm_add_epi64(a3, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    uint64_t lanes[2];
    _mm_storeu_si128((__m128i *)lanes, _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3)));
    j->sums[(thread % 8) * 8] += lanes[0] + lanes[1];
#else
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (; p < e; p += 32) {
        const uint64_t *q = (const uint64_t *)p;
        s0 += q[0], s1 += q[1], s2 += q[2], s3 += q[3];
    }
    j->sums[(thread % 8) * 8] += s0 + s1 + s2 + s3;
#endif
}

/* Prints the best of PASSES read rates of a 1 GiB buffer for each thread count. */
static int bandwidth(char thread_list[][16], int n_threads)
{
    uint8_t *buf = memfit_malloc(BW_BYTES);
    if (!buf) {
        fprintf(stderr, "bench_matvec: %s\n", memfit_last_error());
        return 1;
    }
    for (size_t i = 0; i < BW_BYTES; i += 8) {
        uint64_t r = next_rand();
        memcpy(buf + i, &r, 8);
    }
    struct bw_job j = {.buf = buf};
    for (int k = 0; k < n_threads; k++) {
        unsigned nt = (unsigned)strtoul(thread_list[k], NULL, 10);
        memfit_threadpool *pool = NULL;
        if (nt > 1 && memfit_threadpool_create(nt, &pool) != MEMFIT_OK) {
            fprintf(stderr, "bench_matvec: %s\n", memfit_last_error());
            memfit_free(buf);
            return 1;
        }
        double best = 1e30;
        for (int p = 0; p < PASSES; p++) {
            uint64_t t0 = memfit_now_ns();
            memfit_threadpool_parallel_for(pool, BW_BYTES / 4096, bw_fn, &j);
            double s = (double)(memfit_now_ns() - t0) / 1e9;
            best = s < best ? s : best;
        }
        printf("read bandwidth: %u thread%s %.2f GB/s\n", nt, nt > 1 ? "s" : "",
               (double)BW_BYTES / best / 1e9);
        memfit_threadpool_destroy(pool);
    }
    printf("(bandwidth checksum %llu)\n", (unsigned long long)(j.sums[0] + j.sums[8]));
    memfit_free(buf);
    return 0;
}

static int parse_list(const char *s, char out[][16], int max)
{
    int k = 0;
    while (*s && k < max) {
        size_t len = strcspn(s, ",");
        if (len >= 16)
            return -1;
        memcpy(out[k], s, len);
        out[k++][len] = 0;
        s += len + (s[len] == ',');
    }
    return k;
}

int main(int argc, char **argv)
{
    unsigned layers = 4;
    char thread_list[8][16] = {"1", "2"},
         type_list[8][16] = {"f16", "q8_0", "q4_0", "q4_k", "q6_k"};
    int n_threads = 2, n_types = 5;
    bool scalar = false, bw = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc)
            layers = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            n_threads = parse_list(argv[++i], thread_list, 8);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            n_types = parse_list(argv[++i], type_list, 8);
        else if (!strcmp(argv[i], "--one-row"))
            one_row = true;
        else if (!strcmp(argv[i], "--scalar"))
            scalar = true;
        else if (!strcmp(argv[i], "--bandwidth"))
            bw = true;
        else {
            fprintf(stderr, "usage: bench_matvec [--layers N] [--threads 1,2] [--types "
                            "f16,q8_0,q4_0,q4_k,q6_k,nf4] [--scalar] [--one-row] "
                            "[--bandwidth]\n");
            return 2;
        }
    }
    if (layers == 0 || n_threads <= 0 || n_types <= 0) {
        fprintf(stderr, "bench_matvec: bad --layers, --threads or --types\n");
        return 2;
    }
    printf("bench_matvec: %u Qwen1.5-1.8B-shaped layers, kernels %s, best of %d passes\n", layers,
           memfit_tensor_isa(), PASSES);
    if (bw && bandwidth(thread_list, n_threads) != 0)
        return 1;
    printf("%-6s %4s %9s %9s %9s %12s\n", "type", "thr", "MB/pass", "ms/pass", "GB/s", "model t/s");
    float *x = memfit_malloc(N_FF * sizeof(float));
    float *y = memfit_malloc(N_VOCAB * sizeof(float));
    uint8_t *acts[2] = {memfit_malloc(N_FF * 4), memfit_malloc(N_FF * 4)};
    size_t n_mats = layers * N_SHAPES;
    struct matrix *mats = memfit_calloc(n_mats, sizeof(*mats));
    if (!x || !y || !acts[0] || !acts[1] || !mats) {
        fprintf(stderr, "bench_matvec: %s\n", memfit_last_error());
        return 1;
    }
    memfit_nf4_dynamic_map(nf4_map);
    for (int i = 0; i < N_FF; i++)
        x[i] = (float)((int)(next_rand() % 2001) - 1000) * 1e-3f;
    float sink = 0;
    for (int t = 0; t < n_types; t++) {
        enum memfit_type type;
        if (memfit_type_from_name(type_list[t], &type) != MEMFIT_OK) {
            fprintf(stderr, "bench_matvec: unknown type %s\n", type_list[t]);
            return 2;
        }
        bool nf4 = type == MEMFIT_TYPE_NF4;
        const struct memfit_type_info *info = memfit_type_get_info(type);
        const struct mf_type_traits *tr = mf_type_traits(nf4 ? MEMFIT_TYPE_Q8_0 : type);
        size_t total = 0;
        for (size_t i = 0; i < n_mats; i++) {
            struct shape s = layer_shapes[i % N_SHAPES];
            if (!nf4 && s.n % info->block_size != 0)
                s = (struct shape){s.n, s.rows};
            mats[i].s = s;
            mats[i].row_bytes = nf4 ? s.n / 2 : type_bytes(type, s.n);
            size_t bytes = nf4 ? nf4_bytes(s) : s.rows * mats[i].row_bytes;
            mats[i].w = memfit_malloc(bytes);
            if (!mats[i].w || (nf4 && !nf4_fill(&mats[i]))) {
                fprintf(stderr, "bench_matvec: %s\n", memfit_last_error());
                return 1;
            }
            if (!nf4)
                fill(type, mats[i].w, bytes);
            total += bytes;
        }
        const struct mf_type_traits *at = mf_type_traits(tr->vec_dot_type);
        at->from_float(x, acts[0], N_EMBD);
        at->from_float(x, acts[1], N_FF);
        size_t layer_bytes = total / layers;
        /* NF4: the output matrix stays F16, as load_in_4bit keeps lm_head */
        double model = (double)layer_bytes * N_LAYER +
                       (double)type_bytes(nf4 ? MEMFIT_TYPE_F16 : type, N_EMBD) * N_VOCAB;
        for (int k = 0; k < n_threads + (scalar && !nf4 ? 1 : 0); k++) {
            bool sc = k == n_threads;
            unsigned nt = sc ? 1 : (unsigned)strtoul(thread_list[k], NULL, 10);
            memfit_threadpool *pool = NULL;
            if (nt > 1 && memfit_threadpool_create(nt, &pool) != MEMFIT_OK) {
                fprintf(stderr, "bench_matvec: %s\n", memfit_last_error());
                return 1;
            }
            double s =
                time_passes(pool, sc ? mf_type_traits_scalar(type) : tr, mats, n_mats, acts, y);
            sink += y[0];
            double gbs = (double)total / s / 1e9;
            printf("%-6s %4s %9.1f %9.2f %9.2f %12.1f\n", info->name, sc ? "1sc" : thread_list[k],
                   (double)total / 1e6, s * 1e3, gbs, gbs * 1e9 / model);
            fflush(stdout);
            memfit_threadpool_destroy(pool);
        }
        for (size_t i = 0; i < n_mats; i++) {
            memfit_free(mats[i].w);
            memfit_free(mats[i].nested);
            mats[i].nested = NULL;
        }
    }
    printf("(checksum %g)\n", (double)sink);
    memfit_free(mats);
    memfit_free(acts[0]);
    memfit_free(acts[1]);
    memfit_free(x);
    memfit_free(y);
    return 0;
}
